"""notif_worker's consumer against a broker of its own that restarts with memory storage (the dev
broker, as in the chaos suite), with an event still being delivered: the broker comes back with the
topic recreated and empty, the consumer's group and committed offsets are gone, and the events
published after the restart (fewer than the consumer's old position) must still be delivered.  tansu
answers a fetch past the end with no records, not OFFSET_OUT_OF_RANGE, so a position of the old log
would wait for ever; here kafka-python's rejoin resets it, and the worker's topic-id check (unit test
``test_a_recreated_topic_is_read_again_from_its_beginning``) covers a position that survives.

Which client reaches the restarted broker first decides the topic's shape: the consumer's metadata
request auto-creates it with tansu's default of 4 partitions (kafka-python 3.0.12 sends
allow_auto_topic_creation=True whatever the consumer's setting), else the stack's provisioning makes it
with 6.  With 4, the worker once sought partitions 4 and 5 (gone) to the beginning and its lag gauge
then waited in ``position()`` for their reset, 30 s a partition, without polling: nothing was delivered
for over a minute (unit tests ``test_a_topic_recreated_with_fewer_partitions_...`` and
``test_the_lag_gauge_never_waits_for_an_offset_reset``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from kafka.admin import KafkaAdminClient, NewTopic

from notif_worker.adapters.consumer import BookingEventsConsumer
from notif_worker.domain import BookingNotice
from petpro import events
from petpro_api.booking.v1 import events_pb2
from petpro_dev.devstack import kafka, process

pytestmark = pytest.mark.integration

TOPIC = "booking.created"


def booking_created(booking_id: str) -> bytes:
    at = Timestamp(seconds=int(datetime(2030, 1, 7, 9, tzinfo=UTC).timestamp()))
    return events_pb2.BookingCreated(
        event_id=str(uuid.uuid4()),
        occurred_at=at,
        booking_id=booking_id,
        clinic_id=str(uuid.uuid4()),
        slot_start_time=at,
        slot_end_time=at,
        owner=events_pb2.BookingCreated.Owner(user_id=str(uuid.uuid4()), email="o@example.test"),
    ).SerializeToString()


class Delivered:
    """Delivers at once, except the booking named ``held``: that one waits for ``release``."""

    def __init__(self) -> None:
        self.ids: asyncio.Queue[str] = asyncio.Queue()
        self.held, self.release = "", asyncio.Event()

    async def notify(
        self, n: BookingNotice, topic: str = "", payload: bytes = b"", decode: Any = None
    ) -> None:
        if n.booking_id == self.held:
            await self.release.wait()
        await self.ids.put(n.booking_id)


def create_topic(bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        with contextlib.suppress(Exception):  # the consumer's metadata request may have created it
            admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()


def publish(bootstrap: str, ids: list[str]) -> None:
    p = events.producer(bootstrap, "restart-test")
    try:
        for i in ids:  # one batch each: the log's end moves past the consumer's position only slowly
            p.send(TOPIC, key=i.encode(), value=booking_created(i)).get(timeout=10)
    finally:
        p.close(timeout=2)


async def received(delivered: Delivered, n: int) -> list[str]:
    return [await asyncio.wait_for(delivered.ids.get(), 60) for _ in range(n)]


async def test_events_published_after_a_broker_restart_that_lost_the_log_are_delivered(make_stack):
    stack = make_stack([kafka.component()])
    stack.up()
    bootstrap = stack.env()["KAFKA_BOOTSTRAP_SERVERS"]
    await asyncio.to_thread(create_topic, bootstrap)
    delivered = Delivered()
    worker = BookingEventsConsumer(
        delivered,
        lambda: events.consumer(bootstrap, "restart-test", TOPIC),  # type: ignore[arg-type]
        lambda: events.producer(bootstrap, "restart-test-dlq"),
        "dlq",
        commit_every_seconds=0,
    )
    task = asyncio.create_task(worker.run())
    try:
        # the last event is still being delivered when the broker goes: it finishes (and its offset,
        # one of the old log, is committed) once the broker is back, as under steady load
        before = [f"before-{i}" for i in range(10)]
        delivered.held = before[-1]
        await asyncio.to_thread(publish, bootstrap, before)
        assert sorted(await received(delivered, 9)) == sorted(before[:-1])

        pid = stack.pid("kafka")
        assert pid
        os.kill(pid, signal.SIGTERM)
        assert await asyncio.to_thread(process.wait_exit, pid, 30)
        await asyncio.to_thread(stack.up, ["kafka"])  # empty: memory storage
        await asyncio.to_thread(create_topic, bootstrap)
        delivered.release.set()
        assert await received(delivered, 1) == [before[-1]]

        after = [f"after-{i}" for i in range(3)]  # fewer than the consumer's position (10)
        await asyncio.to_thread(publish, bootstrap, after)
        assert sorted(await received(delivered, 3)) == sorted(after)
        assert task.done() is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
