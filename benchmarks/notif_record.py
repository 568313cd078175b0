"""CPU of notif_worker's event record per event, in the worker's process (``time.process_time``), on an
embedded PostgreSQL of its own: NotifyHandlers.notify with the real repository and push provider, no
SMTP (a mailer that sends nothing) and no Redis (a publisher that does nothing), so only the use case,
the encoder and the one statement are measured.  Three workloads: new bookings (version 1), copies of
events already applied (a redelivery), and pairs arriving out of order (version 2 parked, then version 1
applying both).

``python -m benchmarks.notif_record [EVENTS]`` (default 1000 per workload, after 300 to warm up).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from notif_worker.adapters.codecs import encode_clinic_event
from notif_worker.adapters.push import InboxPush
from notif_worker.adapters.repository import NotifRepository
from notif_worker.adapters.tables import SCHEMA
from notif_worker.domain import BookingNotice, FeedRow
from notif_worker.handlers import NotifyHandlers
from petpro.db import Database
from petpro.migrations import migrate
from petpro.settings import PORT_OFFSETS, BackingSettings, StackSettings
from petpro_dev.devstack import Stack, infra
from petpro_dev.devstack.process import port_in_use


class NoMail:
    async def send(self, notice: BookingNotice) -> None:
        return None


async def no_publish(clinic_id: uuid.UUID, row: FeedRow) -> None:
    return None


def notice(clinic: uuid.UUID, booking: str, kind: str = "created", version: int = 1) -> BookingNotice:
    now = datetime.now(UTC)
    start = now + timedelta(days=5)
    return BookingNotice(
        uuid.uuid4(), now, booking, clinic, "Vet Mitte", "Europe/Berlin", "Check-up", start,
        start + timedelta(minutes=30), "Rex", "SPECIES_DOG", uuid.uuid4(), "o@example.test", "Olga",
        4500, "EUR", kind=kind, version=version,
    )  # fmt: skip


async def measure(events: list[tuple[BookingNotice, str]], notify: Callable[..., Awaitable[None]]) -> float:
    started = time.process_time()
    for n, topic in events:
        await notify(n, topic, n.event_id.bytes)
    return (time.process_time() - started) * 1000 / len(events)


async def run(url: str, count: int) -> dict[str, float]:
    db = Database(url, SCHEMA, app_name="bench-notif-record", pool_size=4)
    _, read = db.repositories(NotifRepository)
    handlers = NotifyHandlers(read, NoMail(), InboxPush(), encode_clinic_event, no_publish)
    clinics = [uuid.uuid4() for _ in range(20)]
    by_payload: dict[bytes, BookingNotice] = {}

    async def notify(n: BookingNotice, topic: str, payload: bytes) -> None:
        by_payload[payload] = n
        await handlers.notify(n, topic, payload, lambda _topic, p: by_payload[p])

    def created(k: int) -> list[tuple[BookingNotice, str]]:
        return [(notice(clinics[i % 20], str(uuid.uuid4())), "booking.created") for i in range(k)]

    results: dict[str, float] = {}
    try:
        await measure(created(300), notify)  # warm-up
        results["new booking (version 1)"] = await measure(created(count), notify)
        copies = created(count)
        await measure(copies, notify)
        results["copy of an applied event"] = await measure(copies, notify)
        pairs: list[tuple[BookingNotice, str]] = []
        for first, topic in created(count // 2):
            second = notice(first.clinic_id, first.booking_id, "rescheduled", 2)
            pairs += [(second, "booking.rescheduled"), (first, topic)]
        results["out of order (per event)"] = await measure(pairs, notify)
    finally:
        await db.close()
    return results


def free_port_base() -> int:
    """A port base none of whose stack ports is in use (never another stack's: it would be adopted)."""
    for base in range(29400, 32400, 200):
        if not any(port_in_use("127.0.0.1", base + offset) for offset in PORT_OFFSETS.values()):
            return base
    raise RuntimeError("no free port range for the benchmark's stack")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    home = tempfile.mkdtemp(prefix="petpro-bench-notif-")
    os.chmod(home, 0o755)  # as root PostgreSQL runs as a system user, which must enter it
    backing = BackingSettings(**dict.fromkeys(BackingSettings.model_fields))  # embedded, whatever the env
    stack = Stack(StackSettings(home=home, port_base=free_port_base()), infra(), backing=backing)
    try:
        stack.up()
        url = stack.env()["DATABASE_URL"]
        migrate("notif_worker", url)
        for name, ms in asyncio.run(run(url, count)).items():
            print(f"{name:28s} {ms:.3f} ms CPU/event")
    finally:
        stack.down(purge=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
