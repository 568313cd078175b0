"""petpro.subscriber: one record at a time, its offset committed only after the handler returned, a
failing record retried (never skipped), an undecodable one skipped, in partition order."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from petpro.subscriber import Subscriber

TP = TopicPartition("account.deleted", 0)


@dataclass
class Record:
    offset: int
    headers: list[tuple[str, bytes]]
    value: bytes
    topic: str = TP.topic
    partition: int = 0
    key: bytes = b"k"


@dataclass
class FakeConsumer:
    records: list[Record]
    commits: list[int] = field(default_factory=list)
    polled: bool = False
    all_committed: threading.Event = field(default_factory=threading.Event)

    def poll(self, timeout_ms: int = 0, max_records: int = 0) -> dict[TopicPartition, list[Record]]:
        if self.polled:
            return {}
        self.polled = True
        return {TP: list(self.records)}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets[TP].offset)
        if len(self.commits) == len(self.records):
            self.all_committed.set()

    def close(self, autocommit: bool = False) -> None:
        pass


def record(offset: int, event_id: str | None) -> Record:
    headers = [("ce_id", event_id.encode())] if event_id else []
    return Record(offset, headers, f"payload-{offset}".encode())


async def test_each_record_once_in_order_retried_until_done_and_committed_after():
    first, third = uuid.uuid4(), uuid.uuid4()
    consumer = FakeConsumer([record(0, str(first)), record(1, None), record(2, str(third))])
    seen: list[tuple[uuid.UUID, bytes, list[int]]] = []
    failures = {third: 2}  # the third record's handler fails twice (a peer down), then succeeds

    async def handle(event_id: uuid.UUID, payload: bytes) -> None:
        seen.append((event_id, payload, list(consumer.commits)))
        if failures.get(event_id):
            failures[event_id] -= 1
            raise RuntimeError("database unavailable")

    sub = Subscriber("test", handle, lambda: consumer, retry_initial_seconds=0, retry_max_seconds=0)
    task = asyncio.create_task(sub.run())
    assert await asyncio.to_thread(consumer.all_committed.wait, 10)
    task.cancel()
    assert consumer.commits == [1, 2, 3]
    assert [(e, p) for e, p, _ in seen] == [
        (first, b"payload-0"),
        (third, b"payload-2"),
        (third, b"payload-2"),
        (third, b"payload-2"),
    ]
    # nothing committed before its handler returned; the undecodable record (no ce_id) is skipped
    assert [c for _, _, c in seen] == [[], [1, 2], [1, 2], [1, 2]]
