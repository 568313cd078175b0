"""Two notif_worker replicas on one stack (same database, consumer group, Redis, SMTP), as the chart runs
them: reminders falling due together and lifecycle changes arriving while both run, one replica
SIGKILLed in the middle.  Every reminder and every change notification exists exactly once — email by
Message-ID, push as one inbox entry, one clinic feed entry per event."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from petpro_dev.devstack import Stack, checks
from petpro_dev.devstack.checks import NotReady
from petpro_dev.devstack.process import open_log
from tests.e2e.conftest import HAPPY_PAWS, Api, User, confirmed_booking, eventually, mails_to
from tests.e2e.test_lifecycle import staff_token
from tests.e2e.test_notifications import feed

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """A second ``python -m notif_worker`` with the stack's environment and its own gRPC and metrics
    ports, logging to ``logs/notif-replica.log`` under the stack's home."""

    def __init__(self, stack: Stack) -> None:
        self.grpc_port, self.metrics_port = free_port(), free_port()
        env = stack.ctx.child_env({"NOTIF_GRPC_PORT": str(self.grpc_port),
                                   "NOTIF_METRICS_PORT": str(self.metrics_port)})
        self.log = stack.ctx.log_path("notif-replica")
        with open_log(self.log, "start: second notif_worker replica") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "notif_worker"], env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    async def ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            await asyncio.to_thread(checks.grpc_health, self.address())
        except NotReady:
            return False
        return True

    async def assigned(self) -> bool:
        """It has joined the consumer group and holds partitions (its lag gauge has series)."""
        async with httpx.AsyncClient(timeout=5) as c:
            text = (await c.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        return "kafka_consumer_lag_messages{" in text

    async def consumed(self) -> float:
        """Events this replica has handled so far (its ``events_consumed_total``), for the report."""
        async with httpx.AsyncClient(timeout=5) as c:
            text = (await c.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("events_consumed_total{"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def replica(mesh: Stack) -> Iterator[Replica]:
    r = Replica(mesh)
    try:
        yield r
    finally:
        r.kill()


async def feed_cursor(api: Api) -> int:
    async with await psycopg.AsyncConnection.connect(api.stack.env()["DATABASE_URL"], autocommit=True) as db:
        cur = await db.execute("SELECT coalesce(max(cursor), 0) FROM notif.clinic_events WHERE clinic_id = %s",
                               (HAPPY_PAWS,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def test_two_replicas_one_killed_send_every_reminder_and_change_exactly_once(api: Api, replica: Replica):
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
        return all(subjects(o)["Booking cancelled"] >= 1 and subjects(o)["Booking moved"] >= 1 for o, _ in changed)

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
        assert subjects(owner) == {"Booking confirmed": 1, "Booking moved": 1, "Booking cancelled": 1}, \
            subjects(owner)
        assert await inbox(owner) == {"booking.created": 1, "booking.rescheduled": 1, "booking.cancelled": 1}
        assert {s for _, _, s in await api.reminders(booking_id)} == {"DROPPED"}
    versions = {bid: [e.booking.version for e in seen if e.booking.booking_id == bid] for bid in ours}
    # created, rescheduled, cancelled: in order, once each
    assert {bid: versions[bid] for _, bid in changed} == {bid: [1, 2, 3] for _, bid in changed}
    assert all(versions[bid] == [1] for _, bid in reminded)
    assert len({e.cursor for e in seen}) == len(seen)  # no feed entry twice
