"""Two notif_worker replicas on one stack (same database, consumer group, Redis, SMTP), as the chart runs
them: reminders falling due together and lifecycle changes arriving while both run, one replica
SIGKILLed in the middle.  Every reminder and every change notification exists exactly once — email by
Message-ID, push as one inbox entry, one clinic feed entry per event."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from petpro_dev.devstack import ExtraReplica, Stack
from tests.e2e.conftest import HAPPY_PAWS, Api, User, confirmed_booking, eventually, mails_to
from tests.e2e.test_lifecycle import staff_token
from tests.e2e.test_notifications import feed

pytestmark = pytest.mark.e2e


@pytest.fixture
def replica(mesh: Stack) -> Iterator[ExtraReplica]:
    """A second notif_worker (own gRPC and metrics ports, the stack's environment), SIGKILLed at the end
    if the test has not killed it already."""
    r = ExtraReplica(mesh, "notif")
    try:
        yield r
    finally:
        r.kill()


async def feed_cursor(api: Api) -> int:
    async with await psycopg.AsyncConnection.connect(api.stack.env()["DATABASE_URL"], autocommit=True) as db:
        cur = await db.execute(
            "SELECT coalesce(max(cursor), 0) FROM notif.clinic_events WHERE clinic_id = %s", (HAPPY_PAWS,)
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def test_two_replicas_one_killed_send_every_reminder_and_change_exactly_once(
    api: Api, replica: ExtraReplica
):
    start_cursor = await feed_cursor(api)
    reminded: list[tuple[User, str]] = []  # reminders fall due at once
    changed: list[tuple[User, str]] = []  # rescheduled, then cancelled
    for i in range(8):  # 4+ days ahead: both reminders (48 h, 2 h before) lie ahead whatever the time of day
        owner, _, booking_id = await confirmed_booking(api, min_days=4)
        (reminded if i % 2 == 0 else changed).append((owner, booking_id))

    async def scheduled(booking_id: str) -> bool:
        return len(await api.reminders(booking_id)) == 2

    for _, booking_id in reminded + changed:
        await eventually(lambda bid=booking_id: scheduled(bid), timeout=60)
    await eventually(replica.ready, timeout=90)
    await eventually(replica.assigned, timeout=90)  # both replicas share the group's partitions now

    def reminder_mails(owner: User) -> list:  # type: ignore[type-arg]
        return [m for m in mails_to(api.stack, owner.email) if m.subject.startswith("Reminder:")]

    async def change(owner: User, booking_id: str) -> None:
        r = await api.reschedule(owner, booking_id, await api.unique_slot(min_days=4))
        assert r.status_code == 200, r.text
        r = await api.cancel(owner, booking_id, "two replicas")
        assert r.status_code == 200, r.text

    for _, booking_id in reminded:
        assert await api.make_reminders_due(booking_id) == 2
    changes = asyncio.gather(*(change(o, b) for o, b in changed))
    # one replica dies while both are sending: reminders (SKIP LOCKED claims) and change events (group)
    await eventually(lambda: asyncio.sleep(0, any(reminder_mails(o) for o, _ in reminded)), interval=0.01)
    handled = await replica.consumed()
    replica.kill()
    print(f"the second replica handled {handled:.0f} events before its SIGKILL")
    await changes

    async def all_sent() -> bool:
        states = [s for _, bid in reminded for _, _, s in await api.reminders(bid)]
        return states == ["SENT"] * (2 * len(reminded))

    await eventually(all_sent, timeout=90)

    def subjects(owner: User) -> Counter[str]:
        """Distinct messages (by Message-ID) per kind of subject."""
        by_id = {m.message["Message-ID"]: m.subject.split(":")[0] for m in mails_to(api.stack, owner.email)}
        return Counter(by_id.values())

    async def changes_mailed() -> bool:
        return all(
            subjects(o)["Booking cancelled"] >= 1 and subjects(o)["Booking moved"] >= 1 for o, _ in changed
        )

    await eventually(changes_mailed, timeout=90)

    async def inbox(owner: User) -> Counter[str]:
        r = await api.c.get("/v1/me/notifications", headers=owner.auth, params={"page_size": 100})
        return Counter(n["data"]["type"] for n in r.json()["notifications"])

    async def pushed() -> bool:
        return all([(await inbox(o))["booking.cancelled"] >= 1 for o, _ in changed])

    await eventually(pushed, timeout=90)
    token = (await staff_token(api))["Authorization"].split()[1]
    ours = {bid for _, bid in reminded + changed}
    seen: list = []  # type: ignore[type-arg]

    async def whole_feed() -> bool:
        after = seen[-1].cursor if seen else start_cursor
        seen.extend(await feed(api, token, HAPPY_PAWS, after, 500, timeout=1))
        got = Counter(e.booking.booking_id for e in seen if e.booking.booking_id in ours)
        return all(got[bid] >= 3 for _, bid in changed) and all(got[bid] >= 1 for _, bid in reminded)

    await eventually(whole_feed, timeout=60)

    for owner, _ in reminded:
        assert subjects(owner) == {"Booking confirmed": 1, "Reminder": 2}, subjects(owner)
        assert await inbox(owner) == {"booking.created": 1, "booking.reminder": 2}
    for owner, booking_id in changed:
        assert subjects(owner) == {"Booking confirmed": 1, "Booking moved": 1, "Booking cancelled": 1}, (
            subjects(owner)
        )
        assert await inbox(owner) == {"booking.created": 1, "booking.rescheduled": 1, "booking.cancelled": 1}
        assert {s for _, _, s in await api.reminders(booking_id)} == {"DROPPED"}
    versions = {bid: [e.booking.version for e in seen if e.booking.booking_id == bid] for bid in ours}
    # created, rescheduled, cancelled: in order, once each
    assert {bid: versions[bid] for _, bid in changed} == {bid: [1, 2, 3] for _, bid in changed}
    assert all(versions[bid] == [1] for _, bid in reminded)
    assert len({e.cursor for e in seen}) == len(seen)  # no feed entry twice
