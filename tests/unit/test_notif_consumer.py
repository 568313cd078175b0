"""notif_worker's consumer loop with fakes of the Kafka consumer and the handlers: a stop (SIGTERM
cancels the background task) lets the events already being delivered finish and commits them, so
the replica that takes the partitions over does not deliver them again."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from notif_worker.worker import BookingCreatedConsumer
from petpro_api.booking.v1 import booking_pb2, events_pb2


@dataclass
class Record:
    value: bytes
    key: bytes = b"k"
    topic: str = "booking.created"
    partition: int = 0
    offset: int = 0
    headers: tuple = ()


def event() -> bytes:
    e = events_pb2.BookingCreated(
        event_id=str(uuid.uuid4()), booking_id=str(uuid.uuid4()), clinic_id=str(uuid.uuid4()),
        clinic_name="Happy Paws", clinic_time_zone="UTC",
    )
    e.owner.user_id = str(uuid.uuid4())
    e.owner.email = "ann@example.com"
    e.pet.species = booking_pb2.SPECIES_DOG
    return e.SerializeToString()


class FakeConsumer:
    """One batch, then nothing; records what was committed."""

    def __init__(self, records: list[Record]) -> None:
        self.batches = [{"tp": records}]
        self.commits = 0
        self.closed = False

    def poll(self, timeout_ms: int) -> dict[str, list[Record]]:
        return self.batches.pop() if self.batches else {}

    def commit(self) -> None:
        self.commits += 1

    def close(self, autocommit: bool = False) -> None:
        self.closed = True


class BlockingHandlers:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.delivered: list[Any] = []

    async def notify(self, notice: Any) -> None:
        self.started.set()
        await self.release.wait()  # an email on its way
        self.delivered.append(notice.event_id)


async def test_stop_finishes_the_started_batch_and_commits_it() -> None:
    fake = FakeConsumer([Record(event())])
    handlers = BlockingHandlers()
    consumer = BookingCreatedConsumer(handlers, lambda: fake, lambda: None, "booking.created.dlq")  # type: ignore[arg-type]
    task = asyncio.create_task(consumer.run())
    await handlers.started.wait()

    task.cancel()  # what grpc_server's stop() does to background tasks on SIGTERM
    await asyncio.sleep(0)
    assert not task.done() and fake.commits == 0  # still delivering, nothing committed yet
    handlers.release.set()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert len(handlers.delivered) == 1
    assert fake.commits == 1  # committed before leaving the group
    assert fake.closed
