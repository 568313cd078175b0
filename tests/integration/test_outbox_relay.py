"""The kit's outbox relay against real PostgreSQL and the real broker: rows written in a transaction
are published with CloudEvents headers and marked sent only after the broker acknowledged them; while
the broker is unreachable they stay unsent; ``NOTIFY outbox`` wakes an idle relay."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata
from sqlalchemy import text

from petpro import events
from petpro.db import Database
from petpro.outbox import OutboxRelay
from petpro_dev.devstack import Stack

pytestmark = pytest.mark.integration

OUTBOX_DDL = """
CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    topic varchar(200) NOT NULL,
    key varchar(200) NOT NULL,
    event_type varchar(200) NOT NULL,
    payload bytea NOT NULL,
    traceparent varchar(64) NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    attempts integer NOT NULL DEFAULT 0
)"""
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def outbox_db(devstack: Stack) -> AsyncIterator[tuple[Database, str, str]]:
    """A schema of its own with the outbox table every service has (same columns as the migrations),
    and a topic of its own."""
    env = devstack.env()
    schema = f"relay_{uuid.uuid4().hex[:12]}"
    topic = f"relay-test-{uuid.uuid4().hex[:12]}"
    admin_db = Database(env["DATABASE_URL"], "public", pool_size=1)
    async with admin_db.unit_of_work() as s:
        await s.execute(text(f"CREATE SCHEMA {schema}"))
        await s.execute(text(f"SET search_path TO {schema}"))
        await s.execute(text(OUTBOX_DDL))
    await admin_db.close()
    admin = KafkaAdminClient(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"].split(","))
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    db = Database(env["DATABASE_URL"], schema, pool_size=2)
    try:
        yield db, topic, env["KAFKA_BOOTSTRAP_SERVERS"]
    finally:
        await db.close()


async def _add(db: Database, topic: str, n: int, *, notify: bool = False) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    async with db.unit_of_work() as s:
        for i, event_id in enumerate(ids):
            await s.execute(
                text(
                    "INSERT INTO outbox (event_id, topic, key, event_type, payload, traceparent)"
                    " VALUES (:id, :topic, :key, 'dev.petpro.test.v1', :payload, :tp)"
                ),
                {
                    "id": event_id,
                    "topic": topic,
                    "key": f"k{i}",
                    "payload": f"p{i}".encode(),
                    "tp": TRACEPARENT,
                },
            )
        if notify:
            await s.execute(text("NOTIFY outbox"))
    return ids


async def _unsent(db: Database) -> int:
    async with db.reader() as conn:
        return (await conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))).scalar_one()


def _consume(bootstrap: str, topic: str, n: int) -> list:  # type: ignore[type-arg]
    """The first ``n`` messages of the topic (fewer only if none arrives for two minutes)."""
    c = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=120_000,
    )
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        out = []
        for m in c:
            out.append(m)
            if len(out) == n:
                break
        return out
    finally:
        c.close()


async def test_published_with_cloudevents_headers_then_marked_sent(outbox_db):
    db, topic, bootstrap = outbox_db
    ids = await _add(db, topic, 3)
    relay = OutboxRelay(db, lambda: events.producer(bootstrap, "relay-test"), source="/petpro/test")
    try:
        assert await relay.publish_batch() == 3
        assert await relay.publish_batch() == 0  # nothing left: sent rows are never re-sent
    finally:
        await asyncio.to_thread(relay._close_producer)
    assert await _unsent(db) == 0

    messages = await asyncio.to_thread(_consume, bootstrap, topic, 3)
    assert [(m.key, m.value) for m in messages] == [
        (b"k0", b"p0"),
        (b"k1", b"p1"),
        (b"k2", b"p2"),
    ]  # id order
    headers = events.header_map(messages[0].headers)
    assert (headers["ce_id"], headers["ce_type"], headers["ce_source"], headers["ce_specversion"]) == (
        str(ids[0]),
        "dev.petpro.test.v1",
        "/petpro/test",
        "1.0",
    )
    # the trace goes on: the stored request's trace id, sampled; the span id is the relay's PRODUCER span
    # when the process records spans (an SDK provider installed) or the stored one when it does not
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, flags) == tuple(TRACEPARENT.split("-")[i] for i in (0, 1, 3))
    assert len(span_id) == 16 and int(span_id, 16) != 0
    assert datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00")).tzinfo == UTC


async def test_a_multi_record_batch_is_not_mistaken_for_a_broker_loss(outbox_db):
    """The broker's end offset after a batch of five is checked against what it acknowledged: no loss
    is seen and nothing is re-published (tansu reports the end offset as the last batch's first
    offset + 1, so comparing with the batch's last offset would replay the rows for ever)."""
    db, topic, bootstrap = outbox_db
    await _add(db, topic, 5)
    relay = OutboxRelay(
        db,
        lambda: events.producer(bootstrap, "relay-test"),
        source="/petpro/test",
        end_offsets=lambda tps: events.end_offsets(bootstrap, tps),
    )
    try:
        assert await relay.publish_batch() == 5
        assert relay._acked == {(topic, 0): 0}  # the batch's first offset
        assert await relay.check_broker() == 0
    finally:
        await asyncio.to_thread(relay._close_producer)
    assert await _unsent(db) == 0


async def test_a_slow_broker_check_does_not_hold_up_publishing(outbox_db):
    """The broker check (an end-offset read, a broker round trip) runs beside the publishing: rows
    committed while it is stuck are published all the same.  It used to run inline before every
    batch, and each check held the events committed meanwhile back (the fan-out delay's p99)."""
    db, topic, bootstrap = outbox_db
    reader = events.EndOffsets(bootstrap)
    entered, release = threading.Event(), threading.Event()

    def stuck_end_offsets(parts: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        entered.set()
        release.wait(120)
        return reader(parts)

    relay = OutboxRelay(
        db,
        lambda: events.producer(bootstrap, "relay-test"),
        source="/petpro/test",
        end_offsets=stuck_end_offsets,
        check_seconds=0.05,
        lag_interval_seconds=0.05,
        idle_poll_seconds=0.05,
    )
    task = asyncio.create_task(relay.run())
    try:
        await _add(db, topic, 1)
        await asyncio.wait_for(asyncio.to_thread(entered.wait, 60), 90)  # acknowledged, then checked: stuck
        await _add(db, topic, 2)
        # published while the check is still stuck
        messages = await asyncio.to_thread(_consume, bootstrap, topic, 3)
        assert [m.value for m in messages] == [b"p0", b"p0", b"p1"]
        assert not release.is_set() and entered.is_set()
    finally:
        release.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(reader.close)


async def test_end_offsets_reader_keeps_its_consumer_and_sees_new_records(outbox_db):
    db, topic, bootstrap = outbox_db
    reader = events.EndOffsets(bootstrap)
    relay = OutboxRelay(db, lambda: events.producer(bootstrap, "relay-test"), source="/petpro/test")
    try:
        assert await asyncio.to_thread(reader, [(topic, 0), ("no-such-topic", 0)]) == {(topic, 0): 0}
        consumer = reader._consumer
        await _add(db, topic, 1)
        assert await relay.publish_batch() == 1
        assert await asyncio.to_thread(reader, [(topic, 0)]) == {(topic, 0): 1}
        assert reader._consumer is consumer  # one connection for every check
    finally:
        await asyncio.to_thread(relay._close_producer)
        await asyncio.to_thread(reader.close)


async def test_rows_stay_unsent_while_the_broker_is_unreachable(outbox_db, port_bases):
    db, topic, bootstrap = outbox_db
    await _add(db, topic, 2)
    dead = f"127.0.0.1:{port_bases.allocate() + 199}"  # a free port of a range nobody listens on
    broken = OutboxRelay(
        db,
        lambda: events.producer(dead, "relay-test", api_version=(2, 5), max_block_ms=500),
        source="/petpro/test",
    )
    with pytest.raises(Exception):  # noqa: B017 — whatever kafka-python raises, the rows must stay
        await broken.publish_batch()
    await asyncio.to_thread(broken._close_producer)
    assert await _unsent(db) == 2

    relay = OutboxRelay(db, lambda: events.producer(bootstrap, "relay-test"), source="/petpro/test")
    try:
        assert await relay.publish_batch() == 2
    finally:
        await asyncio.to_thread(relay._close_producer)
    assert await _unsent(db) == 0


class ObservedRelay(OutboxRelay):
    """The relay, telling the test when a batch is done."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.batch_done = asyncio.Event()

    async def publish_batch(self) -> int:
        n = await super().publish_batch()
        self.batch_done.set()
        return n


async def test_notify_wakes_an_idle_relay(outbox_db, devstack: Stack):
    db, topic, bootstrap = outbox_db
    relay = ObservedRelay(
        db,
        lambda: events.producer(bootstrap, "relay-test"),
        source="/petpro/test",
        listen_dsn=devstack.env()["DATABASE_URL"],
        idle_poll_seconds=3600,
    )
    # the channel is the database's: another service's rows (its schema in the payload) do not wake it
    assert relay.wakes_for(db.schema) and relay.wakes_for("") and not relay.wakes_for("someone_else")
    task = asyncio.create_task(relay.run())

    async def notify_until_woken() -> None:  # (LISTEN may not be established yet: say it again)
        while True:
            async with db.unit_of_work() as s:
                await s.execute(text(f"NOTIFY outbox, '{db.schema}'"))  # (as the services say it)
            await asyncio.sleep(0.2)

    nudger: asyncio.Task[None] | None = None
    try:
        await relay.batch_done.wait()  # the first batch found nothing: idle for an hour now
        [event_id] = await _add(db, topic, 1)  # without NOTIFY: nothing would publish it for an hour
        nudger = asyncio.create_task(notify_until_woken())
        [m] = await asyncio.to_thread(_consume, bootstrap, topic, 1)
        assert events.header_map(m.headers)["ce_id"] == str(event_id)
    finally:
        for t in (nudger, task):
            if t is not None:
                t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_group_lag_counts_every_record_of_a_multi_record_batch(outbox_db):
    """A group that committed nothing lags by every record the relay published, also when they went
    in one batch (tansu's end offset falls short of it by the batch's size less one)."""
    db, topic, bootstrap = outbox_db
    await _add(db, topic, 5)
    relay = OutboxRelay(db, lambda: events.producer(bootstrap, "relay-test"), source="/petpro/test")
    try:
        assert await relay.publish_batch() == 5
    finally:
        await asyncio.to_thread(relay._close_producer)
    group = f"lag-test-{uuid.uuid4().hex[:8]}"
    assert await asyncio.to_thread(events.group_lag, bootstrap, group, topic) == 5

    def commit(offset: int) -> None:
        c = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=group, enable_auto_commit=False)
        try:
            c.commit({TopicPartition(topic, 0): OffsetAndMetadata(offset, "", -1)})
        finally:
            c.close(autocommit=False)

    await asyncio.to_thread(commit, 3)
    assert await asyncio.to_thread(events.group_lag, bootstrap, group, topic) == 2


class StuckOnce(OutboxRelay):
    """The relay, its first batch held in the broker's hands until the test releases it."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.entered, self.release = threading.Event(), threading.Event()

    def _produce(self, rows) -> None:  # type: ignore[no-untyped-def]
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(120)
        super()._produce(rows)


async def test_a_notify_during_a_batch_is_not_lost(outbox_db, devstack: Stack):
    """A row committed (and NOTIFYed) while the relay publishes a batch its claim did not see is
    published right after that batch, not at the next poll (an hour here): the wake is kept."""
    db, topic, bootstrap = outbox_db
    relay = StuckOnce(
        db,
        lambda: events.producer(bootstrap, "relay-test"),
        source="/petpro/test",
        listen_dsn=devstack.env()["DATABASE_URL"],
        idle_poll_seconds=3600,
    )
    task = asyncio.create_task(relay.run())
    try:
        await _add(db, topic, 1)  # claimed by the first batch, which then waits in the broker
        await asyncio.wait_for(asyncio.to_thread(relay.entered.wait, 60), 90)
        while not relay._listening:  # noqa: ASYNC110 (a flag, no event to wait on; LISTEN connects beside the first batch)
            await asyncio.sleep(0.05)
        await _add(db, topic, 1, notify=True)
        await asyncio.sleep(0.5)  # the NOTIFY reaches the relay while its batch is still out
        relay.release.set()
        messages = await asyncio.to_thread(_consume, bootstrap, topic, 2)
        assert [m.value for m in messages] == [b"p0", b"p0"]
    finally:
        relay.release.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
