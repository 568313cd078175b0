"""The booking events consumer's flow control with a fake KafkaConsumer: records start as they
arrive (a slow one holds up nothing else), one key's records stay in order across polls, offsets are
committed per partition only up to the oldest record still in flight, the fetch wait is short
only while events flow, and a stop finishes and commits the events already started."""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import TopicPartition

from notif_worker.adapters.consumer import BookingEventsConsumer
from notif_worker.domain import BookingNotice
from petpro_api.booking.v1 import events_pb2

TOPIC = "booking.created"


class Record:
    def __init__(self, partition: int, offset: int, key: bytes, booking_id: str) -> None:
        self.topic, self.partition, self.offset, self.key, self.headers = TOPIC, partition, offset, key, []
        at = Timestamp(seconds=int(datetime(2030, 1, 7, 9, tzinfo=UTC).timestamp()))
        self.value = events_pb2.BookingCreated(
            event_id=str(uuid.uuid4()),
            occurred_at=at,
            booking_id=booking_id,
            clinic_id=str(uuid.uuid4()),
            slot_start_time=at,
            slot_end_time=at,
            owner=events_pb2.BookingCreated.Owner(user_id=str(uuid.uuid4()), email="o@example.test"),
        ).SerializeToString()


class Fetcher:
    def __init__(self) -> None:
        self.config = {"fetch_max_wait_ms": 500}


class FakeConsumer:
    """poll() hands out queued batches; commit() reports each commit; the fetch wait of every poll is kept."""

    def __init__(self) -> None:
        self.batches: queue.Queue[list[Record]] = queue.Queue()
        self.commits: queue.Queue[dict[Any, Any]] = queue.Queue()
        self._fetcher = Fetcher()
        self.polled: queue.Queue[int] = queue.Queue()  # the fetch wait each poll ran with
        self.closed = False
        self.owned: set[int] = set()  # the partitions of the records handed out (a test may revoke some)
        self.positions: dict[int, int] = {}  # what position() answers (none by default)

    def poll(self, timeout_ms: int) -> dict[str, list[Record]]:
        self.polled.put(self._fetcher.config["fetch_max_wait_ms"])
        try:
            batch = self.batches.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            return {}
        self.owned |= {r.partition for r in batch}
        return {"tp": batch}

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.put({(tp.partition): om.offset for tp, om in offsets.items()})

    config = {"group_id": "notif-worker"}

    def assignment(self) -> set[Any]:
        return {TopicPartition(TOPIC, p) for p in self.owned}

    def highwater(self, tp: Any) -> None:
        return None

    def position(self, tp: Any, timeout_ms: int | None = None) -> int | None:
        return self.positions.get(tp.partition)

    def partitions_for_topic(self, topic: str) -> None:
        return None

    def close(self, autocommit: bool = False) -> None:
        self.closed = True


class Handlers:
    """notify() finishes at once, except for bookings named in ``hold`` (released by the test)."""

    def __init__(self) -> None:
        self.hold: dict[str, asyncio.Event] = {}
        self.done: list[str] = []
        self.finished: asyncio.Queue[str] = asyncio.Queue()

    async def notify(
        self, n: BookingNotice, topic: str = "", payload: bytes = b"", decode: Any = None
    ) -> None:
        if n.booking_id in self.hold:
            await self.hold[n.booking_id].wait()
        self.done.append(n.booking_id)
        await self.finished.put(n.booking_id)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def running() -> Iterator[tuple[BookingEventsConsumer, FakeConsumer, Handlers, Clock]]:  # type: ignore[misc]
    consumer, handlers, clock = FakeConsumer(), Handlers(), Clock()
    worker = BookingEventsConsumer(
        handlers,
        lambda: consumer,
        lambda: None,
        "dlq",  # type: ignore[arg-type]
        idle_after_seconds=5,
        clock=clock,
    )
    task = asyncio.create_task(worker.run())
    yield worker, consumer, handlers, clock
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def next_commit(consumer: FakeConsumer) -> dict[int, int]:
    return await asyncio.to_thread(consumer.commits.get, timeout=30)


async def next_poll(consumer: FakeConsumer) -> int:
    return await asyncio.to_thread(consumer.polled.get, timeout=30)


async def test_a_slow_record_holds_up_neither_other_keys_nor_the_next_poll(running):
    _, consumer, handlers, clock = running
    handlers.hold["slow"] = asyncio.Event()
    consumer.batches.put([Record(0, 0, b"a", "slow"), Record(0, 1, b"b", "fast")])
    assert await asyncio.wait_for(handlers.finished.get(), 30) == "fast"
    consumer.batches.put([Record(1, 0, b"c", "next-poll")])  # a later poll, while "slow" is in flight
    assert await asyncio.wait_for(handlers.finished.get(), 30) == "next-poll"
    # partition 1 is committed; partition 0 not past "slow" (offset 0), though offset 1 is done
    assert await next_commit(consumer) == {1: 1}
    clock.now += 1  # commits are at most one per commit_every_seconds
    handlers.hold["slow"].set()
    assert await asyncio.wait_for(handlers.finished.get(), 30) == "slow"
    assert await next_commit(consumer) == {0: 2}


async def test_offsets_are_committed_at_most_once_per_interval_and_none_is_lost(running):
    _, consumer, handlers, clock = running
    consumer.batches.put([Record(0, 0, b"a", "a")])
    await asyncio.wait_for(handlers.finished.get(), 30)
    assert await next_commit(consumer) == {0: 1}
    consumer.batches.put([Record(0, 1, b"b", "b")])
    consumer.batches.put([Record(1, 0, b"c", "c")])
    for _ in range(2):
        await asyncio.wait_for(handlers.finished.get(), 30)
    for _ in range(3):  # polls go on; the clock has not moved: nothing is committed yet
        await next_poll(consumer)
    assert consumer.commits.empty()
    clock.now += 1
    assert await next_commit(consumer) == {0: 2, 1: 1}  # both, in one commit


async def test_an_offset_finished_after_its_partition_moved_is_never_committed(running):
    """A rebalance moved partition 0 away while its record was in flight: committing that record's
    offset would set the group's offset back behind what the new owner already did (for ever, while no
    new event comes); the new owner reads it again from the group's offset instead."""
    _, consumer, handlers, clock = running
    handlers.hold["moved"] = asyncio.Event()
    consumer.batches.put([Record(0, 4, b"a", "moved")])
    await next_poll(consumer)
    await next_poll(consumer)  # in flight
    consumer.owned.discard(0)  # the group gave partition 0 to another replica
    consumer.batches.put([Record(1, 0, b"b", "stays")])
    assert await asyncio.wait_for(handlers.finished.get(), 30) == "stays"
    handlers.hold["moved"].set()
    assert await asyncio.wait_for(handlers.finished.get(), 30) == "moved"
    clock.now += 1
    assert await next_commit(consumer) == {1: 1}
    for _ in range(3):
        await next_poll(consumer)
    clock.now += 1
    for _ in range(3):
        await next_poll(consumer)
    assert consumer.commits.empty()  # partition 0's offset 5 was dropped, not kept for later


async def test_the_positions_of_owned_idle_partitions_are_committed_again(running):
    """Every recommit interval the owned partitions with nothing in flight have their position
    committed again: an offset another member set back (an older release's replica during a rolling
    upgrade) comes forward again without a new event."""
    worker, consumer, handlers, clock = running
    consumer.batches.put([Record(0, 4, b"a", "a")])
    await asyncio.wait_for(handlers.finished.get(), 30)
    clock.now += 1
    assert await next_commit(consumer) == {0: 5}
    consumer.positions[0] = 5
    clock.now = worker.recommit_every - 0.5  # (the interval runs from the start) not yet
    for _ in range(3):
        await next_poll(consumer)
    assert consumer.commits.empty()
    clock.now = worker.recommit_every
    assert await next_commit(consumer) == {0: 5}


async def test_one_keys_records_stay_in_order_across_polls(running):
    _, consumer, handlers, _ = running
    handlers.hold["first"] = asyncio.Event()
    consumer.batches.put([Record(0, 0, b"same", "first")])
    consumer.batches.put([Record(0, 1, b"same", "second"), Record(0, 2, b"other", "other")])
    assert await asyncio.wait_for(handlers.finished.get(), 30) == "other"
    assert "second" not in handlers.done  # waits for its key's earlier record
    handlers.hold["first"].set()
    assert [await asyncio.wait_for(handlers.finished.get(), 30) for _ in range(2)] == ["first", "second"]


async def test_the_fetch_wait_is_short_only_while_events_flow(running):
    worker, consumer, handlers, clock = running
    assert await next_poll(consumer) == worker.idle_wait  # idle: the broker may hold the fetch long
    consumer.batches.put([Record(0, 0, b"a", "one")])
    await asyncio.wait_for(handlers.finished.get(), 30)
    waits = [await next_poll(consumer) for _ in range(3)]  # polls after the record: short waits
    assert waits[-1] == worker.busy_wait
    clock.now += 5  # no record for idle_after_seconds: back to the long wait
    waits = [await next_poll(consumer) for _ in range(3)]
    assert waits[-1] == worker.idle_wait


class BlockingHandlers:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.delivered: list[Any] = []

    async def notify(self, notice: Any, topic: str = "", payload: bytes = b"", decode: Any = None) -> None:
        self.started.set()
        await self.release.wait()  # an email on its way
        self.delivered.append(notice.event_id)


async def test_stop_finishes_the_started_events_and_commits_them() -> None:
    """A stop (SIGTERM cancels the background task) lets the events already being delivered finish
    and commits them, so the replica that takes the partitions over does not deliver them again."""
    fake, handlers = FakeConsumer(), BlockingHandlers()
    consumer = BookingEventsConsumer(handlers, lambda: fake, lambda: None, "booking.created.dlq")  # type: ignore[arg-type]
    fake.batches.put([Record(0, 0, b"k", "one")])
    task = asyncio.create_task(consumer.run())
    await handlers.started.wait()

    task.cancel()  # what grpc_server's stop() does to background tasks on SIGTERM
    await asyncio.sleep(0)
    assert not task.done() and fake.commits.empty()  # still delivering, nothing committed yet
    handlers.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(handlers.delivered) == 1
    assert fake.commits.get_nowait() == {0: 1}  # committed before leaving the group
    assert fake.closed


async def test_a_run_after_a_crash_starts_clean_and_delivers_again() -> None:
    """An event that failed outright (not even dead-lettered: the broker was down) ends the run, and
    the kit starts it again: the new run must not trip over the dead run's failed event (before, it
    raised it again at once, for ever) and delivers what its new consumer reads."""

    class FailOnce(Handlers):
        async def notify(
            self, n: BookingNotice, topic: str = "", payload: bytes = b"", decode: Any = None
        ) -> None:
            if n.booking_id == "bad":
                raise ConnectionError("broker refused the connection")
            await super().notify(n, topic, payload, decode)

    handlers = FailOnce()
    first, second = FakeConsumer(), FakeConsumer()
    consumers = iter([first, second])
    worker = BookingEventsConsumer(handlers, lambda: next(consumers), lambda: None, "dlq")  # type: ignore[arg-type]
    first.batches.put([Record(0, 0, b"k", "bad")])
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(worker.run(), timeout=30)
    assert first.closed

    second.batches.put([Record(0, 0, b"k", "good")])  # redelivered from the committed offset
    task = asyncio.create_task(worker.run())
    try:
        assert await asyncio.wait_for(handlers.finished.get(), timeout=30) == "good"
        assert await next_commit(second) == {0: 1}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Cluster:
    def __init__(self) -> None:
        self.id = uuid.uuid4()

    def topic_id(self, topic: str) -> uuid.UUID:
        return self.id


class RecreatingConsumer(FakeConsumer):
    """A topic the broker can recreate (``_cluster.id`` changes) with ``partitions`` of its own."""

    def __init__(self, assigned: set[int] | None = None, partitions: set[int] | None = None) -> None:
        super().__init__()
        self._cluster = Cluster()
        self.seeks: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.assigned = {0} if assigned is None else assigned
        self.partitions = {0} if partitions is None else partitions

    def assignment(self) -> set[Any]:
        return {TopicPartition(TOPIC, p) for p in self.assigned}

    def partitions_for_topic(self, topic: str) -> set[int]:  # type: ignore[override]
        return self.partitions

    def highwater(self, tp: Any) -> None:
        return None

    def seek_to_beginning(self, *partitions: Any) -> None:
        self.seeks.put(partitions)


def recreating_worker(consumer: FakeConsumer, handlers: Handlers, clock: Clock) -> BookingEventsConsumer:
    return BookingEventsConsumer(
        handlers,
        lambda: consumer,
        lambda: None,
        "dlq",  # type: ignore[arg-type]
        clock=clock,
        commit_every_seconds=0,
    )


async def test_a_recreated_topic_is_read_again_from_its_beginning() -> None:
    """The broker came back with the topic recreated (a new topic id; the dev broker restarted with
    memory storage): the consumer seeks its partitions to the beginning, and the offset of an event of
    the old log that finishes afterwards is never committed into the new one (it would skip the new
    log's first events on the next start)."""
    consumer, handlers, clock = RecreatingConsumer(), Handlers(), Clock()
    handlers.hold["old-in-flight"] = asyncio.Event()
    task = asyncio.create_task(recreating_worker(consumer, handlers, clock).run())
    try:
        consumer.batches.put([Record(0, 7, b"a", "old-in-flight")])
        await next_poll(consumer)
        await next_poll(consumer)  # the record is in flight and the topic's id was measured
        assert consumer.seeks.empty()

        consumer._cluster.id = uuid.uuid4()  # the broker restarted: same name, new topic
        clock.now += 2  # the next measure is due
        seeked = await asyncio.to_thread(consumer.seeks.get, timeout=30)
        assert seeked == (TopicPartition(TOPIC, 0),)

        handlers.hold["old-in-flight"].set()  # the old log's event finishes now
        assert await asyncio.wait_for(handlers.finished.get(), 30) == "old-in-flight"
        consumer.batches.put([Record(0, 0, b"b", "new-0"), Record(0, 1, b"c", "new-1")])
        assert sorted([await asyncio.wait_for(handlers.finished.get(), 30) for _ in range(2)]) == [
            "new-0",
            "new-1",
        ]
        assert await next_commit(consumer) == {0: 2}  # the new log's offset; 8 (old log) never committed
        assert consumer.commits.empty()
    finally:
        handlers.hold["old-in-flight"].set()  # a stop finishes what is in flight
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_topic_recreated_with_fewer_partitions_is_read_again_from_those_it_has() -> None:
    """The dev broker came back and auto-created the topic with its default 4 partitions for a client
    that asked for it before the stack made it with 6: only the partitions the new topic has are
    sought (a reset of one it does not have never completes); the rebalance the change starts takes
    the others away."""
    consumer, handlers, clock = RecreatingConsumer(assigned={0, 5}), Handlers(), Clock()
    task = asyncio.create_task(recreating_worker(consumer, handlers, clock).run())
    try:
        consumer.batches.put([Record(5, 3, b"a", "old")])
        assert await asyncio.wait_for(handlers.finished.get(), 30) == "old"
        consumer._cluster.id = uuid.uuid4()
        clock.now += 2
        assert await asyncio.to_thread(consumer.seeks.get, timeout=30) == (TopicPartition(TOPIC, 0),)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_topic_recreated_before_any_measure_saw_it_assigned_is_still_noticed() -> None:
    """The broker was lost right after the first records came, before a lag measure ever saw the
    partitions assigned: the topic's id taken when the records came is the baseline."""
    consumer, handlers, clock = RecreatingConsumer(assigned=set()), Handlers(), Clock()
    task = asyncio.create_task(recreating_worker(consumer, handlers, clock).run())
    try:
        await next_poll(consumer)  # the first measure: nothing assigned yet
        consumer.batches.put([Record(0, 7, b"a", "old")])
        assert await asyncio.wait_for(handlers.finished.get(), 30) == "old"
        consumer._cluster.id = uuid.uuid4()  # lost and recreated before the next measure
        consumer.assigned = {0}
        clock.now += 2
        assert await asyncio.to_thread(consumer.seeks.get, timeout=30) == (TopicPartition(TOPIC, 0),)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_lag_gauge_never_waits_for_an_offset_reset() -> None:
    """kafka-python's ``position()`` waits for a pending offset reset up to request_timeout_ms (one
    of a partition the broker no longer has never completes): the gauge reads the position without
    waiting, and the loop goes on polling and delivering."""
    released = threading.Event()

    class ResettingConsumer(RecreatingConsumer):
        def highwater(self, tp: Any) -> int:  # type: ignore[override]
            return 10

        def position(self, tp: Any, timeout_ms: int | None = None) -> int | None:
            if timeout_ms != 0:
                released.wait(60)  # as kafka-python does for a reset that cannot complete
            return None

    consumer, handlers, clock = ResettingConsumer(), Handlers(), Clock()
    task = asyncio.create_task(recreating_worker(consumer, handlers, clock).run())
    try:
        await next_poll(consumer)
        clock.now += 2  # a measure is due after the next poll
        consumer.batches.put([Record(0, 0, b"a", "first")])
        assert await asyncio.wait_for(handlers.finished.get(), 30) == "first"
        clock.now += 2
        consumer.batches.put([Record(0, 1, b"b", "second")])
        assert await asyncio.wait_for(handlers.finished.get(), 5) == "second"
    finally:
        released.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(
    "error", ["RebalanceInProgressError", "CommitFailedError", "CoordinatorNotAvailableError"]
)
async def test_a_failed_commit_is_retried_with_the_same_offsets(error: str) -> None:
    """A commit refused during or after a rebalance (or with the coordinator moving) neither ends the
    run nor loses the offsets: they go with the next commit.  Before, RebalanceInProgressError crashed
    the consumer (the multi-host rehearsal under a CPU burner), and the offsets of a refused commit were
    dropped: with no later event on that partition its lag stayed above 0 for ever."""
    from kafka import errors

    class RefusesOnce(FakeConsumer):
        def __init__(self) -> None:
            super().__init__()
            self.refused = 0

        def commit(self, offsets: dict[Any, Any]) -> None:
            if not self.refused:
                self.refused += 1
                raise getattr(errors, error)()
            super().commit(offsets)

    consumer, handlers, clock = RefusesOnce(), Handlers(), Clock()
    worker = BookingEventsConsumer(
        handlers,
        lambda: consumer,
        lambda: None,
        "dlq",  # type: ignore[arg-type]
        clock=clock,
        commit_every_seconds=1,
    )
    task = asyncio.create_task(worker.run())
    try:
        consumer.batches.put([Record(0, 0, b"a", "only")])
        assert await asyncio.wait_for(handlers.finished.get(), 30) == "only"

        async def committed() -> None:  # time passes (the clock, polled); no new event arrives
            while consumer.commits.empty():
                clock.now += 1
                await next_poll(consumer)

        await asyncio.wait_for(committed(), 30)
        assert consumer.refused == 1 and consumer.commits.get_nowait() == {0: 1}
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class PausingConsumer(FakeConsumer):
    """A FakeConsumer that owns a partition of a second topic too and can pause: each poll reports
    the partitions paused while it ran."""

    OTHER = TopicPartition("booking.cancelled", 0)

    def __init__(self) -> None:
        super().__init__()
        self._paused: set[Any] = set()
        self.paused_at_poll: queue.Queue[set[Any]] = queue.Queue()

    def assignment(self) -> set[Any]:
        return super().assignment() | {self.OTHER}

    def pause(self, *tps: Any) -> None:
        self._paused |= set(tps)

    def resume(self, *tps: Any) -> None:
        self._paused -= set(tps)

    def paused(self) -> set[Any]:
        return set(self._paused)

    def poll(self, timeout_ms: int) -> dict[str, list[Record]]:
        self.paused_at_poll.put(set(self._paused))
        return super().poll(timeout_ms)


async def test_a_quiet_topic_is_paused_while_events_flow_and_fetched_again_now_and_then():
    consumer, handlers, clock = PausingConsumer(), Handlers(), Clock()
    worker = BookingEventsConsumer(
        handlers,
        lambda: consumer,
        lambda: None,
        "dlq",  # type: ignore[arg-type]
        idle_after_seconds=5,
        clock=clock,
        quiet_fetch_every_seconds=1.0,
        quiet_fetch_window_seconds=0.1,
    )
    task = asyncio.create_task(worker.run())

    async def paused_at_next_polls() -> set[Any]:
        # the state the next polls ran with, once the loop saw the clock (two polls: one may have
        # started before the clock moved)
        for _ in range(2):
            paused = await asyncio.to_thread(consumer.paused_at_poll.get, timeout=30)
        return paused

    try:
        assert await paused_at_next_polls() == set()  # idle: nothing is paused
        consumer.batches.put([Record(0, 0, b"a", "one")])
        await asyncio.wait_for(handlers.finished.get(), 30)
        clock.now = 4.0
        consumer.batches.put([Record(0, 1, b"b", "two")])
        await asyncio.wait_for(handlers.finished.get(), 30)
        clock.now = 6.0  # busy; booking.cancelled had no record for idle_after_seconds: quiet
        assert await paused_at_next_polls() == set()  # its first window: fetched once more
        clock.now = 6.5
        assert await paused_at_next_polls() == {PausingConsumer.OTHER}  # then paused
        clock.now = 7.05
        assert await paused_at_next_polls() == set()  # fetched again a second later
        clock.now = 7.5
        assert await paused_at_next_polls() == {PausingConsumer.OTHER}
        consumer.batches.put([Record(0, 2, b"c", "three")])  # the busy topic itself is never paused
        await asyncio.wait_for(handlers.finished.get(), 30)
        clock.now = 30.0  # no event for idle_after_seconds: idle, nothing paused
        assert await paused_at_next_polls() == set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
