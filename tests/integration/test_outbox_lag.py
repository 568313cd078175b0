"""The outbox lag gauges against a real PostgreSQL: unpublished rows and the age of the oldest one,
zero once the rows are sent.  (A scratch schema with the booking outbox's shape, so no running relay
picks the rows up.)"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from petpro import telemetry
from petpro.db import Database
from petpro.outbox import OutboxRelay
from petpro_dev.devstack import Stack

pytestmark = pytest.mark.integration


async def test_lag_counts_unsent_rows_and_the_oldest_age(mesh: Stack):
    schema = f"lag_{uuid.uuid4().hex[:8]}"
    db = Database(mesh.env()["DATABASE_URL"], schema, app_name="lag-test", pool_size=1)
    try:
        async with db.unit_of_work() as s:
            await s.execute(text(f"CREATE SCHEMA {schema}"))
            await s.execute(text(f"CREATE TABLE {schema}.outbox (LIKE booking.outbox INCLUDING ALL)"))
        relay = OutboxRelay(db, lambda: None, source="/test")  # type: ignore[arg-type, return-value]
        assert await relay.measure_lag() == (0, 0.0)
        assert telemetry.OUTBOX_PENDING._value.get() == 0

        async with db.unit_of_work() as s:
            for age in (90, 30):
                await s.execute(
                    text(
                        "INSERT INTO outbox (event_id, topic, key, event_type, payload, created_at)"
                        " VALUES (:id, 't', 'k', 'e', '\\x00', now() - make_interval(secs => :age))"
                    ),
                    {"id": uuid.uuid4(), "age": age},
                )
            await s.execute(
                text(
                    "INSERT INTO outbox (event_id, topic, key, event_type, payload, created_at, sent_at)"
                    " VALUES (:id, 't', 'k', 'e', '\\x00', now() - interval '1 hour', now())"
                ),
                {"id": uuid.uuid4()},
            )
        pending, oldest = await relay.measure_lag()
        assert pending == 2 and 90 <= oldest < 3600  # the sent row does not count
        assert telemetry.OUTBOX_PENDING._value.get() == 2
        assert telemetry.OUTBOX_OLDEST_AGE._value.get() == oldest

        async with db.unit_of_work() as s:
            await s.execute(text("UPDATE outbox SET sent_at = now()"))
        assert await relay.measure_lag() == (0, 0.0)
    finally:
        async with db.unit_of_work() as s:
            await s.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        await db.close()
