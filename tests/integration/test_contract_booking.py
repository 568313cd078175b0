"""Booking's repository contract (tests/contracts/booking_repository.py) against the SQL adapter on the
embedded PostgreSQL, migrated to head in a schema of this module's own: the same migrations as the
``booking`` schema, but no booking service of a mesh in the same session sweeps, claims or bumps
anything there; nothing is truncated (fresh ids in every test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy import text

from booking_svc.adapters.repository import BookingRepository
from booking_svc.adapters.tables import SCHEMA
from booking_svc.adapters.watch import CHANNEL, parse
from booking_svc.domain import ReservationState
from booking_svc.ports import OutboxEvent, ReservationNews, UnitOfWork
from petpro.db import Database
from petpro.migrations import alembic_config
from petpro_dev.devstack import Stack
from tests.contracts.booking_repository import (
    BlockedWaiter,
    BookingRepositoryContract,
    OutboxReader,
    Relay,
    SchedulingContract,
    new_hold,
)
from tests.contracts.staff_ops import StaffOpsContract

pytestmark = pytest.mark.integration

APP_NAME = "booking-contract"


@pytest.fixture(scope="module")
async def database(devstack: Stack) -> AsyncIterator[Database]:
    url = devstack.env()["DATABASE_URL"]
    cfg = alembic_config("booking_svc", url)
    cfg.attributes["schema"] = schema = f"booking_contract_{uuid.uuid4().hex[:12]}"
    await asyncio.to_thread(command.upgrade, cfg, "head")
    db = Database(url, schema, app_name=APP_NAME, pool_size=4)
    # the tables name their schema (``booking.pets``): point them at this one; the hot statements
    # (plain SQL) follow the search path, which Database sets to it
    db.engine.sync_engine.update_execution_options(schema_translate_map={SCHEMA: schema})
    try:
        yield db
    finally:
        await db.close()


class TestPostgresBookingRepository(BookingRepositoryContract, SchedulingContract, StaffOpsContract):
    @pytest.fixture
    def uow(self, database: Database) -> UnitOfWork:
        return database.repositories(BookingRepository)[0]

    @pytest.fixture
    def read(self, database: Database) -> UnitOfWork:
        return database.repositories(BookingRepository)[1]

    @pytest.fixture
    def relayed(self, database: Database) -> Relay:
        async def relay() -> None:
            async with database.reader() as conn:
                await conn.execute(text("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL"))

        return relay

    @pytest.fixture
    def outbox(self, database: Database) -> OutboxReader:
        async def rows(event_ids: list[uuid.UUID]) -> list[OutboxEvent]:
            async with database.reader() as conn:
                found = await conn.execute(
                    text(
                        "SELECT event_id, topic, key, event_type, payload, traceparent FROM outbox"
                        " WHERE event_id = ANY(:ids) ORDER BY id"
                    ),
                    {"ids": event_ids},
                )
                return [OutboxEvent(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in found]

        return rows

    @pytest.fixture
    def blocked(self, database: Database) -> BlockedWaiter:
        async def on_a_lock(task: asyncio.Task[Any]) -> None:
            """Until one of this module's connections waits for a lock (or the task is done): nothing to
            await in PostgreSQL for that, so the activity view is polled."""
            while not task.done():
                async with database.reader() as conn:
                    waiting = await conn.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE application_name = :app AND wait_event_type = 'Lock'"
                        ),
                        {"app": APP_NAME},
                    )
                if waiting:
                    return
                await asyncio.sleep(0.01)

        return on_a_lock

    async def test_a_state_change_is_signalled_with_what_it_changed_to(
        self, database: Database, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        """Migration 0013's trigger: a committed state change NOTIFYs ``booking_reservation_change`` with
        the lock id, the state, the payment and the booking committed with it (ConfirmBooking inserts
        it in the same statement as the state: the AFTER trigger sees it), as the long-poll answers
        from it; 0011's channel still gets the lock id alone (the previous release listens there)."""
        _, svc = await self.catalog(uow, capacity=2)
        pet, pet2 = await self.pets(uow, 2)
        url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            await conn.execute("LISTEN booking_reservation_state")
            booking = await self.booked(uow, svc, pet)
            [held] = await self.held(read, new_hold(svc, pet2), capacity=2)
            await self.set_state(uow, held.lock_id, ReservationState.EXPIRED)
            ours = (str(booking.lock_id), str(held.lock_id))
            notes: list[tuple[str, str]] = []
            async for n in conn.notifies(timeout=5):  # (other tests' services may signal meanwhile)
                if n.payload.startswith(ours):
                    notes.append((n.channel, n.payload))
                if len(notes) == 4:
                    break
        assert notes == [
            ("booking_reservation_state", str(booking.lock_id)),
            (CHANNEL, f"{booking.lock_id}|CONFIRMED|{booking.payment_id}|{booking.id}"),
            ("booking_reservation_state", str(held.lock_id)),
            (CHANNEL, f"{held.lock_id}|EXPIRED||"),
        ]
        assert parse(notes[1][1]) == (
            str(booking.lock_id),
            ReservationNews(ReservationState.CONFIRMED, booking.payment_id, booking.id),
        )
