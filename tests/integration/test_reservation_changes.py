"""GetReservation's long-poll signal on the embedded PostgreSQL: a ``NOTIFY booking_reservation_change``
with a lock id and what it changed to (what migration 0013's trigger sends at the commit of a state
change: tests/integration/test_contract_booking.py; the e2e ``test_booking_flow`` drives the trigger
through the mesh) wakes the watches of that reservation in every replica listening (two adapters
here), and only those, with that news; a transaction that rolls back signals nothing; closing the
adapter ends every wait (and says nothing: read again)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from booking_svc.adapters.watch import CHANNEL, PgReservationChanges
from booking_svc.domain import ReservationState
from booking_svc.ports import ReservationNews
from petpro_dev.devstack import Stack

pytestmark = pytest.mark.integration

PAYMENT, BOOKING = uuid.uuid4(), uuid.uuid4()


@pytest.fixture
async def replicas(devstack: Stack) -> AsyncIterator[tuple[str, list[PgReservationChanges]]]:
    url = devstack.env()["DATABASE_URL"]
    two = [PgReservationChanges(url), PgReservationChanges(url)]
    tasks = [asyncio.create_task(c.run()) for c in two]
    try:
        yield url, two
    finally:
        for c, t in zip(two, tasks, strict=True):
            await c.close()
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t


async def notify(url: str, lock_id: uuid.UUID, *, commit: bool = True, booking: uuid.UUID = BOOKING) -> None:
    async with await psycopg.AsyncConnection.connect(url) as db:
        await db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{lock_id}|CONFIRMED|{PAYMENT}|{booking}"))
        await (db.commit() if commit else db.rollback())


async def test_a_committed_change_wakes_that_reservations_watches_in_every_replica(replicas) -> None:  # type: ignore[no-untyped-def]
    url, (one, two) = replicas
    await asyncio.gather(one.listening.wait(), two.listening.wait())
    lock, other = uuid.uuid4(), uuid.uuid4()
    async with one.watch(lock) as a, two.watch(lock) as b, one.watch(other) as c:
        waits = [asyncio.create_task(w.changed(30)) for w in (a, b)]
        await notify(url, uuid.uuid4(), commit=False)  # rolled back: no signal
        await notify(url, lock)
        assert await asyncio.gather(*waits) == [True, True]
        news = ReservationNews(ReservationState.CONFIRMED, PAYMENT, BOOKING)
        assert (a.news(), b.news()) == (news, news)
        assert a.news() is None  # taken once
        assert not await c.changed(0.2)  # another reservation's watch was not woken


async def test_closing_ends_every_wait(replicas) -> None:  # type: ignore[no-untyped-def]
    _, (one, _) = replicas
    await one.listening.wait()
    async with one.watch(uuid.uuid4()) as w:
        waiting = asyncio.create_task(w.changed(30))
        await asyncio.sleep(0)
        await one.close()
        assert await waiting and w.ended
        assert w.news() is None
