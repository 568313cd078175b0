"""A broker that loses what it acknowledged (memory storage restarted) loses no notification: the
outbox relay notices the broker's end offsets fall below what it was acknowledged and re-publishes
the recent rows; the consumer drops the ones it already processed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import Api, confirmed_booking, eventually, mails_to

pytestmark = pytest.mark.e2e


async def _gone(pid: int) -> bool:
    """Exited (a zombie child of the test process counts as exited)."""
    try:
        stat = await asyncio.to_thread(Path(f"/proc/{pid}/stat").read_text)
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def test_events_acknowledged_then_lost_by_the_broker_are_published_again(api: Api):
    notif = api.stack.pid("notif")
    assert notif
    os.kill(notif, signal.SIGTERM)  # nobody consumes: the event lives only in the broker
    await eventually(lambda: _gone(notif), timeout=60)
    try:
        owner, _, booking_id = await confirmed_booking(api)

        async def sent() -> bool:  # the relay published it and the broker acknowledged it …
            async with await psycopg.AsyncConnection.connect(api.stack.env()["DATABASE_URL"]) as db:
                cur = await db.execute(
                    "SELECT sent_at IS NOT NULL FROM booking.outbox WHERE key = %s", (booking_id,)
                )
                row = await cur.fetchone()
                return bool(row and row[0])

        await eventually(sent, timeout=120)
        kafka = api.stack.pid("kafka")
        assert kafka
        os.kill(kafka, signal.SIGKILL)  # … and now the broker loses it
        await eventually(lambda: _gone(kafka), timeout=120)
        await asyncio.to_thread(api.stack.up, ["kafka"])
    finally:
        await asyncio.to_thread(api.stack.up, ["notif"])

    async def mailed():  # type: ignore[no-untyped-def]
        return mails_to(api.stack, owner.email)

    try:
        mails = await eventually(mailed, timeout=90)
    except AssertionError:
        for name in ("booking", "notif"):
            print(f"--- {name} log\n" + api.stack.log_path(name).read_text()[-4000:])
        raise
    assert [m.message["X-PetPro-Booking-Id"] for m in mails] == [booking_id]
