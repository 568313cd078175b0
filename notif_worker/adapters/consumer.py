"""The booking events consumer: the five booking lifecycle topics (booking.created, .cancelled,
.rescheduled, .completed, .no-show) in one Kafka consumer group → NotifyHandlers, commit after
processing, poison or persistently failing events → the dead-letter topic (with the error), never
blocking."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from opentelemetry.trace import StatusCode

from notif_worker.adapters.codecs import decode_event
from notif_worker.domain import BookingNotice, ChannelFailed, PoisonEvent
from petpro import events, telemetry

log = logging.getLogger("notif_worker.consumer")


class EventHandler(Protocol):
    """What the consumer hands each record to (NotifyHandlers.notify; adapters never import handlers)."""

    async def notify(
        self,
        n: BookingNotice,
        topic: str = ...,
        payload: bytes = ...,
        decode: Callable[[str, bytes], BookingNotice] | None = ...,
    ) -> None: ...


ConsumerRecord = Any  # kafka-python's ConsumerRecord (untyped): topic, partition, offset, key, value, headers


class _Joined(ConsumerRebalanceListener):
    """Sets ``joined`` (on the loop) when the group gave this consumer its partitions (none, too)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, joined: asyncio.Event) -> None:
        self.loop, self.joined = loop, joined

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:  # (kafka-python's IO thread)
        self.loop.call_soon_threadsafe(self.joined.set)


class BookingEventsConsumer:
    """Records are processed as they arrive, not batch by batch: each poll's records start at once
    (the records of one key strictly in order, across polls too, so two copies of one event never
    race each other's delivery claims), the next poll does not wait for them (an SMTP send holds up
    nothing else), and each partition's offset is committed up to its oldest record still in flight.

    The fetch wait adapts: kafka-python asks the broker to hold an empty fetch for
    ``fetch_max_wait_ms``; a real Kafka answers as soon as data arrives, the bundled broker waits it
    out.  While events flow the consumer asks for ``busy_fetch_wait_ms`` (low latency); after
    ``idle_after_seconds`` without one it goes back to the long wait (an idle worker costs nothing).

    A topic the broker recreated (a new topic id: the dev broker restarted with memory storage, or an
    operator deleted and created it) is read again from its beginning: the position and the offsets
    still to commit belong to the old log, and the new one holds the events the outbox relays re-publish
    (the deliveries' claims drop the ones already delivered).  Nothing in the loop waits on the broker
    beyond a poll or a commit: the lag gauge reads positions without waiting for an offset reset.

    A stop (the background task cancelled on SIGTERM) lets the events already started finish and
    commits them before leaving the group, so the replica taking the partitions over does not deliver
    them again.

    Only partitions this replica owns are committed.  In a rolling upgrade the group rebalances while
    records are in flight: an offset finished after its partition moved, committed anyway, set the
    group's offset back behind what the new owner had already done, and nothing moved it forward again
    while no new event came (the lag stayed for ever).  And every ``recommit_every_seconds`` the
    positions of the owned partitions with nothing in flight are committed again (what auto-commit
    does), which heals an offset set back by anyone else, e.g. an older release's replica.

    While events flow, the partitions of the topics that had none for ``idle_after_seconds`` (a quiet
    topic: in a booking rush, every lifecycle topic but the one taking the rush) are paused, and
    resumed for ``quiet_fetch_window_seconds`` every ``quiet_fetch_every_seconds``: the bundled broker
    answers every partition of every fetch, and with 5 topics of 6 partitions the empty ones were a
    quarter of the consumer's CPU in the booking flow (a fetch every 25 ms).  An event of a quiet
    topic waits that much longer (at most ``quiet_fetch_every_seconds`` and a poll); the first one
    makes its topic busy again.  A paused partition keeps its position and offsets (what a fetch
    brought while it was paused is handed out once it is resumed); an idle worker pauses nothing."""

    def __init__(
        self,
        handlers: EventHandler,
        consumer_factory: Callable[[], KafkaConsumer],
        producer_factory: Callable[[], KafkaProducer],
        dlq_topic: str,
        *,
        concurrency: int = 16,
        busy_fetch_wait_ms: int = 25,
        idle_fetch_wait_ms: int = 500,
        idle_after_seconds: float = 2.0,
        max_in_flight: int | None = None,
        clock: Callable[[], float] | None = None,
        dlq_measure_seconds: float = 15.0,
        commit_every_seconds: float = 0.25,
        recommit_every_seconds: float = 5.0,
        joining: events.EarlyJoin | None = None,
        quiet_fetch_every_seconds: float | None = 1.0,
        quiet_fetch_window_seconds: float = 0.1,
    ) -> None:
        self.handlers = handlers
        self.consumer_factory = consumer_factory
        # a consumer already on its way into the group (``python -m notif_worker`` starts it before
        # importing the worker): the first run takes it over, a run after a crash makes its own
        self.joining = joining
        self.producer_factory = producer_factory
        self.dlq_topic = dlq_topic
        self.concurrency = concurrency
        self.busy_wait = busy_fetch_wait_ms
        self.idle_wait = idle_fetch_wait_ms
        self.idle_after = idle_after_seconds
        self.max_in_flight = max_in_flight or 4 * concurrency  # read ahead of the workers, bounded
        self.clock = clock
        self._dlq: KafkaProducer | None = None
        self._sem = asyncio.Semaphore(concurrency)
        self._tails: dict[bytes | None, asyncio.Task[None]] = {}  # key → its latest record's task
        self._pending: dict[TopicPartition, deque[tuple[int, asyncio.Task[None]]]] = {}
        self.dlq_measure_seconds = dlq_measure_seconds
        self.commit_every = commit_every_seconds
        self.recommit_every = recommit_every_seconds
        self.quiet_every = quiet_fetch_every_seconds  # None: no topic is ever paused
        self.quiet_window = quiet_fetch_window_seconds
        self._last_record: dict[str, float] = {}  # topic → when a poll last brought one of its records
        self._dlq_measured = float("-inf")
        self._topic_ids: dict[str, Any] = {}  # topic → the id it had when last measured
        # set once the group has given this consumer its partitions: the replica's readiness, so a
        # rolling update does not stop the next replica while the group is still rebalancing (the dev
        # broker never finished a rebalance whose leader left in the middle of it)
        self.joined = asyncio.Event()

    async def wait_joined(self) -> None:
        await self.joined.wait()

    async def run(self) -> None:
        # a run after a crash (the kit starts a crashed task again: its consumer died with the broker)
        # lets what the last run started finish, then starts clean: its uncommitted records come again
        # from the committed offsets (the claims make a copy send nothing twice).  Left in place, a
        # finished-with-error task of the dead run held back-pressure full and the loop never polled.
        stale = [t for q in self._pending.values() for _, t in q]
        if stale:
            await asyncio.gather(*stale, return_exceptions=True)
        self._pending, self._tails = {}, {}
        in_group = False
        if self.joining is not None:
            joining, self.joining = self.joining, None
            consumer, in_group = await asyncio.to_thread(joining.take)
        else:
            consumer = await asyncio.to_thread(self.consumer_factory)
        topics = consumer.subscription() if hasattr(consumer, "subscription") else None
        if topics:
            listener = _Joined(asyncio.get_running_loop(), self.joined)
            await asyncio.to_thread(consumer.subscribe, topics=sorted(topics), listener=listener)
            if in_group:  # its group gave it its partitions before this run: no rebalance to wait for
                self.joined.set()
        else:  # no group subscription (a test double): nothing to wait for
            self.joined.set()
        clock = self.clock or asyncio.get_running_loop().time
        busy_until = measured = committed = float("-inf")
        recommitted = clock()
        failing = False  # the last commit failed (logged once per streak)
        fetch_wait = events.set_fetch_wait(consumer, self.idle_wait)
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}  # finished, not committed yet
        # quiet topics are paused only on a consumer that can pause (not on a test double without it)
        pausable = all(hasattr(consumer, m) for m in ("pause", "resume", "paused", "assignment"))
        quiet_fetched = busy_since = float("-inf")
        try:
            while True:
                offsets.update(self._committable())
                if clock() - recommitted >= self.recommit_every:
                    recommitted = clock()
                    offsets.update(await asyncio.to_thread(self._at_rest, consumer))
                # at most one commit (a broker round trip) per commit_every while events flow: a
                # commit after every 10 ms poll cost more than the events; a crash redelivers at
                # most that much more, and the deliveries' claims make a copy send nothing twice
                if offsets and clock() - committed >= self.commit_every:
                    # the interval runs from the start of a commit: read after the broker's answer, the
                    # clock could already count time the next commit should have had
                    committed = clock()
                    try:  # after processing: at-least-once
                        await asyncio.to_thread(self._commit_owned, consumer, offsets)
                        offsets, failing = {}, False
                    except KafkaError as exc:
                        # a rebalance in progress or just done, the coordinator moving or unreachable:
                        # the offsets stay and go with the next commit, after the next poll completed
                        # the rebalance (dropped, a partition kept by this replica would show its last
                        # events as lag for ever; a partition that moved is redone by its new owner)
                        (log.debug if failing else log.warning)("offset commit failed, retrying: %r", exc)
                        failing = True
                in_flight = sum(len(q) for q in self._pending.values())
                if in_flight >= self.max_in_flight:  # back-pressure: let some finish first
                    # only a partition's oldest record finishing frees a place (the ones after it
                    # stay until it is committable): waiting for any record spun, for as long as the
                    # oldest ran, through every record already finished behind it, each turn
                    # hooking a callback on all of them (~3 % of the worker's CPU under load)
                    heads = [q[0][1] for q in self._pending.values() if q and not q[0][1].done()]
                    if heads:
                        await asyncio.wait(heads, return_when=asyncio.FIRST_COMPLETED)
                    continue
                now = clock()
                busy = now < busy_until
                want = self.busy_wait if busy else self.idle_wait
                if fetch_wait is not None and want != fetch_wait:
                    fetch_wait = events.set_fetch_wait(consumer, want)
                # a topic with no record since this moment is quiet (None: none is, e.g. when idle)
                quiet_since: float | None = None
                if busy and self.quiet_every is not None and pausable:
                    if now - quiet_fetched >= self.quiet_every:
                        quiet_fetched = now  # the quiet topics are fetched again for a window
                    if now - quiet_fetched >= self.quiet_window:
                        quiet_since = now - self.idle_after
                # shorter polls while work is in flight, so its offsets are committed promptly: one
                # commit interval (a poll returns as soon as records come; each call that runs out
                # costs kafka-python a round of coordinator and fetcher bookkeeping: polls of 100 ms
                # cost ~48 ms of CPU a second against ~31 ms for 250 ms on an idle topic, the bundled
                # broker holding each fetch for busy_fetch_wait_ms)
                wait_ms = max(100, int(self.commit_every * 1000)) if in_flight else 500
                if pausable:
                    batch = await asyncio.to_thread(
                        self._poll_paced, consumer, wait_ms, quiet_since, busy_since
                    )
                else:
                    batch = await asyncio.to_thread(consumer.poll, timeout_ms=wait_ms)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    now = clock()
                    if now >= busy_until:
                        busy_since = now  # a topic with no record since is quiet after idle_after
                    busy_until = now + self.idle_after
                    read = {r.topic for r in records}
                    for topic in read:
                        self._last_record[topic] = now
                    self._remember_topic_ids(consumer, read)
                for record in records:
                    self._start(record)
                if clock() - measured >= 1.0:  # the lag gauges: once a second, not after every short poll
                    measured = clock()
                    recreated = await asyncio.to_thread(self._measure, consumer)
                    if recreated:
                        await self._read_again(consumer, recreated, offsets)
        except asyncio.CancelledError:
            # stopping (SIGTERM): finish the events already started and commit them, or the replica
            # that takes the partitions over would deliver them a second time
            await asyncio.gather(*(t for q in self._pending.values() for _, t in q), return_exceptions=True)
            offsets.update(self._committable())
            if offsets:
                try:
                    await asyncio.to_thread(self._commit_owned, consumer, offsets)
                except KafkaError as exc:  # leaving anyway: the partitions' next owner redoes them
                    log.warning("offset commit on stop failed: %r", exc)
            raise
        finally:
            await asyncio.to_thread(self._close, consumer)

    def _poll_paced(
        self, consumer: KafkaConsumer, timeout_ms: int, quiet_since: float | None, busy_since: float
    ) -> Any:
        """A poll with the owned partitions of the topics without a record since ``quiet_since`` (a
        topic without any: since ``busy_since``) paused and every other one resumed (in the poll's
        thread: pause and resume are the consumer's own state, read by its fetches).  Only owned
        partitions are paused or resumed (a rebalance gives the new ones unpaused)."""
        owned = consumer.assignment()
        paused = consumer.paused() & owned
        want = set()
        if quiet_since is not None:
            last = self._last_record
            want = {tp for tp in owned if last.get(tp.topic, busy_since) <= quiet_since}
        if paused - want:
            consumer.resume(*(paused - want))
        if want - paused:
            consumer.pause(*(want - paused))
        return consumer.poll(timeout_ms=timeout_ms)

    @staticmethod
    def _commit_owned(consumer: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit the offsets of the partitions this replica still owns; the others' belong to their
        new owner, which reads them again from the group's offset (the claims drop the copies)."""
        owned = consumer.assignment()
        mine = {tp: om for tp, om in offsets.items() if tp in owned}
        if mine:
            consumer.commit(mine)

    def _at_rest(self, consumer: KafkaConsumer) -> dict[TopicPartition, OffsetAndMetadata]:
        """The position of each owned partition with nothing in flight: everything before it is done."""
        out = {}
        for tp in consumer.assignment():
            if self._pending.get(tp):
                continue
            try:
                position = consumer.position(tp, timeout_ms=0)
            except KafkaError as exc:  # an offset reset pending: nothing to say about it yet
                log.debug("position of %s not read: %r", tp, exc)
                continue
            if position is not None:
                out[tp] = OffsetAndMetadata(position, "", -1)
        return out

    def _start(self, record: ConsumerRecord) -> None:
        previous = self._tails.get(record.key)
        task = asyncio.create_task(self._in_order(previous, record))
        self._tails[record.key] = task
        task.add_done_callback(lambda t: self._forget(record.key, t))
        tp = TopicPartition(record.topic, record.partition)
        self._pending.setdefault(tp, deque()).append((record.offset, task))

    def _forget(self, key: bytes | None, task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]

    async def _in_order(self, previous: asyncio.Task[None] | None, record: ConsumerRecord) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        async with self._sem:
            await self._process(record)

    def _committable(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """Per partition, the offset after its longest finished prefix (the next record to read)."""
        out = {}
        for tp, queue in self._pending.items():
            last = None
            while queue and queue[0][1].done():
                offset, task = queue[0]
                error = None if task.cancelled() else task.exception()
                if error is not None:  # not even dead-lettered (the DLQ is down): stop, uncommitted
                    raise error
                queue.popleft()
                last = offset
            if last is not None:
                out[tp] = OffsetAndMetadata(last + 1, "", -1)
        return out

    async def _process(self, record: ConsumerRecord) -> None:
        # a CONSUMER span continuing the trace of the event's traceparent header (the outbox publish)
        with telemetry.consumer_span(
            record.topic, record.headers, partition=record.partition, offset=record.offset, key=record.key
        ) as span:
            try:
                notice = decode_event(record.topic, record.value)
                span.set_attribute("petpro.booking_id", notice.booking_id)
                await self.handlers.notify(notice, record.topic, record.value, decode_event)
                telemetry.EVENTS_CONSUMED.labels(record.topic, "processed").inc()
            except (PoisonEvent, ChannelFailed) as exc:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, str(exc))
                log.error(
                    "dead-lettering event", extra={"fields": {"offset": record.offset, "error": str(exc)}}
                )
                await asyncio.to_thread(self._dead_letter, record, exc)
                telemetry.EVENTS_CONSUMED.labels(record.topic, "dead_lettered").inc()
                self._dlq_measured = float("-inf")  # the DLQ grew: measure it after this batch

    def _remember_topic_ids(self, consumer: KafkaConsumer, topics: set[str]) -> None:
        """The id of each topic records were just read from, if none is known yet: the baseline a
        recreation is told by.  Taken from the records too, not only from the once-a-second measure: a
        broker lost right after the first records came (before a measure saw the partitions assigned)
        left no baseline, and the recreated topic went unnoticed."""
        for topic, tid in events.topic_ids(consumer, topics).items():
            self._topic_ids.setdefault(topic, tid)

    async def _read_again(
        self,
        consumer: KafkaConsumer,
        partitions: list[TopicPartition],
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> None:
        """Read recreated topics' partitions from their beginning; what is in flight from the old log
        finishes but commits nothing (its offsets mean nothing in the new one).

        Only the partitions the new topic has are sought: a topic recreated with fewer partitions (the
        dev broker auto-creates a topic a client asks for with its default of 4, before the stack's
        provisioning makes it with 6) leaves the others assigned until the rebalance the change
        starts, and a reset of a partition the broker does not have never completes."""
        present = {t: consumer.partitions_for_topic(t) or set() for t in {tp.topic for tp in partitions}}
        seek = [tp for tp in partitions if tp.partition in present[tp.topic]]
        log.warning(
            "topic recreated by the broker, reading it again from the beginning",
            extra={
                "fields": {
                    "partitions": [f"{tp.topic}[{tp.partition}]" for tp in seek],
                    "gone": [f"{tp.topic}[{tp.partition}]" for tp in partitions if tp not in seek],
                }
            },
        )
        for tp in partitions:
            self._pending.pop(tp, None)
            offsets.pop(tp, None)
        if seek:
            await asyncio.to_thread(consumer.seek_to_beginning, *seek)

    def _measure(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        """Consumer lag (high watermark - position, per topic, from what the fetches already know) and,
        every ``dlq_measure_seconds``, the dead-letter topic's size (end - beginning offsets).  Returns
        the assigned partitions of topics whose id changed since the last measure (recreated)."""
        group = str(consumer.config.get("group_id") or "")
        lag: dict[str, int] = defaultdict(int)
        assigned = consumer.assignment()
        ids = events.topic_ids(consumer, {tp.topic for tp in assigned})
        changed = {t for t, tid in ids.items() if self._topic_ids.get(t, tid) != tid}
        self._topic_ids.update(ids)
        recreated = [tp for tp in assigned if tp.topic in changed]
        for tp in assigned:
            high = consumer.highwater(tp)
            if high is None:
                continue
            # the position this consumer already has (None while an offset reset is pending), without
            # waiting: position() waits for a pending reset up to request_timeout_ms (30 s) per call,
            # and a reset of a partition the broker no longer has never completes, so the gauge held
            # the loop (no poll: no rebalance completed, nothing delivered) for a minute and more
            try:
                position = consumer.position(tp, timeout_ms=0)
            except KafkaError as exc:  # a metric must never stop the consumer
                log.debug("position of %s not read: %r", tp, exc)
                continue
            if position is not None:
                lag[tp.topic] += max(0, high - position)
        for topic, n in lag.items():
            telemetry.CONSUMER_LAG.labels(topic, group).set(n)
        now = time.monotonic()
        if now - self._dlq_measured < self.dlq_measure_seconds:
            return recreated
        self._dlq_measured = now
        try:
            parts = [
                TopicPartition(self.dlq_topic, p) for p in consumer.partitions_for_topic(self.dlq_topic) or ()
            ]
            if parts:
                ends, starts = consumer.end_offsets(parts), consumer.beginning_offsets(parts)
                telemetry.DLQ_MESSAGES.labels(self.dlq_topic).set(sum(ends[tp] - starts[tp] for tp in parts))
        except Exception as exc:  # a metric must never stop the consumer
            log.debug("dead-letter topic size not measured: %s", exc)
        return recreated

    def _dead_letter(self, record: ConsumerRecord, exc: Exception) -> None:
        if self._dlq is None:
            self._dlq = self.producer_factory()
        headers = [
            *(record.headers or []),
            ("dlq_error", str(exc)[:2000].encode()),
            ("dlq_error_type", type(exc).__name__.encode()),
            ("dlq_source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        self._dlq.send(self.dlq_topic, key=record.key, value=record.value, headers=headers).get(timeout=10)

    def _close(self, consumer: KafkaConsumer) -> None:
        try:
            consumer.close(autocommit=False)
        finally:
            if self._dlq is not None:
                self._dlq.close(timeout=2)
