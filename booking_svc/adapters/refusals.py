"""The database side of ReserveSlot's early refusal (``ports.RefusalRecheck``): one read-only statement
of index lookups, on a connection of its own in autocommit mode (no pool checkout, no SQLAlchemy: a
refusal must cost less than half a success).  Whether the slot is still full is read every time
(live holds at the slot's start against the service's capacity), so a hold that lapsed, was cancelled
or moved anywhere frees the slot for the very next caller."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import psycopg

from booking_svc.adapters.tables import SCHEMA
from booking_svc.ports import RefusalFacts
from petpro import telemetry
from petpro.db import transaction_pooling

RECHECK = """
SELECT EXISTS (SELECT 1 FROM {SCHEMA}.reservations WHERE owner_user_id = %(owner)s AND request_id = %(request_id)s),
  (SELECT version FROM {SCHEMA}.catalog_state WHERE id = 1), p.owner_user_id, p.species,
  (SELECT count(*) FROM {SCHEMA}.reservations r
    WHERE r.service_id = %(service_id)s AND r.during @> %(start)s::timestamptz
      AND (r.state = 'CONFIRMED' OR (r.state = 'HELD' AND r.expires_at > now())))
  >= (SELECT capacity FROM {SCHEMA}.services WHERE id = %(service_id)s)
  -- a service that needs providers or resources is full when they are taken, whatever its capacity:
  -- never refused early (its refusals depend on which provider, room and pet a request names)
  AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.service_providers WHERE service_id = %(service_id)s)
  AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.service_needs WHERE service_id = %(service_id)s)
FROM (SELECT 1) AS one LEFT JOIN {SCHEMA}.pets p ON p.id = %(pet_id)s
"""


class SqlRecheck:
    """``RECHECK`` on one connection, opened at the first call and again after a failure (the caller
    then takes the full path).  psycopg runs one statement at a time on it; each is a few index
    lookups."""

    def __init__(self, url: str, app_name: str = "booking_svc-refusals", schema: str = SCHEMA) -> None:
        self.url = url
        self.app_name = app_name
        self.sql = RECHECK.replace("{SCHEMA}", schema)  # (schema-qualified: no search path to rely on)
        self._conn: psycopg.AsyncConnection | None = None
        self._connecting = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection:
        async with self._connecting:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    application_name=self.app_name,
                    # behind a transaction pooler: no server-side prepared statements
                    prepare_threshold=None if transaction_pooling() else 5,
                )
            return self._conn

    async def __call__(
        self, owner: uuid.UUID, request_id: str, pet_id: uuid.UUID, service_id: uuid.UUID, start: datetime
    ) -> RefusalFacts:
        conn = self._conn if self._conn is not None and not self._conn.closed else await self._connection()
        params = {
            "owner": owner,
            "request_id": request_id,
            "pet_id": pet_id,
            "service_id": service_id,
            "start": start,
        }
        try:
            with telemetry.sql_span("SELECT"):
                cur = await conn.execute(self.sql, params)
            row = await cur.fetchone()
        except Exception:
            await self.close()
            raise
        assert row is not None
        return RefusalFacts(bool(row[0]), int(row[1]), row[2], row[3], bool(row[4]))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
