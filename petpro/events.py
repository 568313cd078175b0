"""Kafka helpers (kafka-python): producer/consumer factories tuned for the stack, CloudEvents headers.

kafka-python is synchronous; async services call it through ``asyncio.to_thread``.  Consumer-group
timings follow what the embedded tansu broker needs for a group to form in seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition

from petpro import telemetry

CONTENT_TYPE_PROTOBUF = "application/protobuf"


def producer(bootstrap: str, client_id: str, **overrides: object) -> KafkaProducer:
    opts: dict[str, object] = {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": client_id,
        "acks": "all",
        "linger_ms": 2,
        "retries": 5,
        "max_in_flight_requests_per_connection": 1,  # keep per-key order across retries
        "request_timeout_ms": 10_000,
        # send() waits at most this long for a topic's metadata (kafka-python's default is 60 s): the
        # relay then retries with its back-off, and a stop never waits a minute on a worker thread
        "max_block_ms": 10_000,
        # kafka-python's client metrics (sensors), read by nothing here: each send and each produce
        # response recorded them (as the consumers' did, below)
        "metrics_enabled": False,
    }
    opts.update(overrides)
    return KafkaProducer(**opts)


def consumer(bootstrap: str, group_id: str, *topics: str, **overrides: object) -> KafkaConsumer:
    opts: dict[str, object] = {
        "bootstrap_servers": bootstrap.split(","),
        "group_id": group_id,
        "client_id": group_id,
        "enable_auto_commit": False,  # commit after processing
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
        "max_poll_interval_ms": 60_000,
        "max_poll_records": 200,
        # kafka-python's client metrics (sensors) are read by nothing here (the services' gauges are
        # their own): each fetch recorded them per partition of its response (30 partitions for
        # notif_worker's five topics, ~40 fetches a second while events trickle in), ~7 % of the
        # booking events consumer's CPU
        "metrics_enabled": False,
    }
    opts.update(overrides)
    return KafkaConsumer(*topics, **opts)


class EarlyJoin(ConsumerRebalanceListener):
    """A group consumer brought into its group by a thread of its own, started before the rest of the
    process is imported and built.  A new group's first join takes seconds (the dev broker holds it
    for half the session timeout, like Kafka's ``group.initial.rebalance.delay.ms``): they then overlap
    that work instead of following it.

    The thread makes the consumer (``make``: no topics), subscribes it to ``topics`` and polls it until
    ``take()``: the member answers rebalances while the process is built, its partitions paused as they
    are assigned (nothing is fetched; a record a poll returned all the same is sought back).
    ``take()`` hands it over, its partitions resumed and nothing committed, with ``True`` once the group
    has given it its partitions (none, too).  A failure to make or join it is raised by ``take()``."""

    def __init__(self, make: Callable[[], KafkaConsumer], topics: Sequence[str]) -> None:
        self.make, self.topics = make, sorted(topics)
        self._in_group = threading.Event()
        self._taken = threading.Event()
        self._consumer: KafkaConsumer | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._join, name="kafka-early-join", daemon=True)

    def start(self) -> EarlyJoin:
        self._thread.start()
        return self

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:  # (in a poll of the thread, before its fetch)
        if self._consumer is not None and assigned:
            self._consumer.pause(*assigned)
        self._in_group.set()

    def _join(self) -> None:
        try:
            self._consumer = consumer = self.make()
            consumer.subscribe(topics=self.topics, listener=self)
            while not self._taken.is_set():
                for tp, records in consumer.poll(timeout_ms=100).items():
                    consumer.seek(tp, records[0].offset)
        except BaseException as exc:  # handed to take()
            self._error = exc

    def take(self) -> tuple[KafkaConsumer, bool]:
        """The consumer (once the thread's poll in progress returned) and whether it is in its group;
        its user subscribes it with its own listener (the group does not change)."""
        self._taken.set()
        self._thread.join()
        if self._error is not None:
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
            raise self._error
        assert self._consumer is not None
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)
        return self._consumer, self._in_group.is_set()


def set_fetch_wait(consumer: KafkaConsumer, ms: int) -> int | None:
    """Change how long the broker may hold an empty fetch (``fetch_max_wait_ms``) on a running
    consumer.  kafka-python reads it from its fetcher's config for every fetch request it builds but
    has no public setter; None when this consumer has no such fetcher (a test double)."""
    fetcher = getattr(consumer, "_fetcher", None)
    config = getattr(fetcher, "config", None)
    if not isinstance(config, dict) or "fetch_max_wait_ms" not in config:
        return None
    config["fetch_max_wait_ms"] = ms
    return ms


def topic_ids(consumer: KafkaConsumer, topics: set[str]) -> dict[str, Any]:
    """The broker's id (a UUID, from the consumer's cluster metadata) of each topic it has reported
    one for.  A topic whose id changes was deleted and created again: its offsets start over.  A real
    Kafka also answers a fetch past a truncated log with OFFSET_OUT_OF_RANGE (the consumer then resets
    by ``auto_offset_reset``); tansu after a restart with memory storage (the dev broker) recreates the
    topics and answers such a fetch with no records, for ever, so the id is the only sign.  kafka-python
    keeps the ids in its cluster metadata and has no public accessor; empty for a test double."""
    cluster = getattr(consumer, "_cluster", None)
    lookup = getattr(cluster, "topic_id", None)
    if not callable(lookup):
        return {}
    return {t: tid for t in topics if (tid := lookup(t)) is not None}


def cloudevent_headers(
    event_id: str,
    event_type: str,
    source: str,
    time: datetime | None = None,
    content_type: str = CONTENT_TYPE_PROTOBUF,
    traceparent: str | None = None,
) -> list[tuple[str, bytes]]:
    """CloudEvents Kafka binding (binary mode) headers plus W3C ``traceparent``."""
    when = (time or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", source.encode()),
        ("ce_time", when.encode()),
        ("content-type", content_type.encode()),
    ]
    tp = traceparent or telemetry.current_traceparent()
    if tp:
        headers.append(("traceparent", tp.encode()))
    return headers


def header_map(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers or ()}


class EndOffsets:
    """The broker's end offset (next offset to be written) of each ``(topic, partition)`` that it
    has; partitions of topics it does not list are left out (unknown, not 0).  Reads metadata of
    existing topics only, so it never makes the broker auto-create one.

    One consumer (no group) is kept between calls: a new one per call connected and probed the
    broker's API versions every time (~100 ms of a thread and a connection per check).  A failed call
    drops it; the next call connects again."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: KafkaConsumer | None = None

    def __call__(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap.split(","), group_id=None, enable_auto_commit=False
            )
        c = self._consumer
        try:
            existing = c.topics()  # fresh metadata: a topic deleted since the last call is left out
            wanted = [
                TopicPartition(t, p)
                for t, p in partitions
                if t in existing and p in (c.partitions_for_topic(t) or ())
            ]
            ends = c.end_offsets(wanted) if wanted else {}
        except Exception:
            self.close()
            raise
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close(autocommit=False)


def end_offsets(bootstrap: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """:class:`EndOffsets` once, with a consumer of its own (closed before returning)."""
    reader = EndOffsets(bootstrap)
    try:
        return reader(partitions)
    finally:
        reader.close()


def group_lag(bootstrap: str, group_id: str, topic: str) -> int:
    """Messages of ``topic`` not yet committed by consumer group ``group_id`` (0 = caught up).
    Reads the group's committed offsets without joining it."""
    c = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group_id,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    try:
        parts = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        ends = _last_offsets_plus_one(c, parts)
        return sum(max(0, ends[tp] - (c.committed(tp) or 0)) for tp in parts)
    finally:
        c.close(autocommit=False)


def _last_offsets_plus_one(c: KafkaConsumer, parts: list[Any]) -> dict[Any, int]:
    """Each partition's true end offset.  Kafka's ListOffsets answers it directly; tansu (the dev
    broker) answers the last batch's first offset + 1, which can fall short of the real end by the
    size of that batch: read on from there (never more than one batch) to the last record."""
    ends: dict[Any, int] = dict(c.end_offsets(parts))
    c.assign(parts)
    for tp in parts:
        c.seek(tp, max(ends[tp] - 1, 0))
    while got := c.poll(timeout_ms=200):
        for tp, records in got.items():
            ends[tp] = max(ends[tp], records[-1].offset + 1)
    return ends


def dead_letters(bootstrap: str, dlq_topic: str, timeout_ms: int = 2000) -> list[dict[str, object]]:
    """Every message in a dead-letter topic with the error it carries (read without a group)."""
    c = KafkaConsumer(
        dlq_topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=timeout_ms,
    )
    try:
        out = []
        for m in c:
            h = header_map(m.headers)
            out.append(
                {
                    "partition": m.partition,
                    "offset": m.offset,
                    "key": (m.key or b"").decode(errors="replace"),
                    "error_type": h.get("dlq_error_type", ""),
                    "error": h.get("dlq_error", ""),
                    "source": h.get("dlq_source", ""),
                    "ce_id": h.get("ce_id", ""),
                    "value": m.value,
                    "headers": [(k, v) for k, v in (m.headers or []) if not k.startswith("dlq_")],
                }
            )
        return sorted(out, key=lambda d: (d["partition"], d["offset"]))
    finally:
        c.close()


def replay_dead_letters(
    bootstrap: str, dlq_topic: str, topic: str, select: Callable[[dict[str, object]], bool] = lambda _: True
) -> int:
    """Publish the selected dead letters to ``topic`` again (original key, value and headers).
    Safe to repeat: consumers are idempotent by event id."""
    letters = [d for d in dead_letters(bootstrap, dlq_topic) if select(d)]
    p = producer(bootstrap, "petpro-dlq-replay")
    try:
        for d in letters:
            p.send(topic, key=str(d["key"]).encode() or None, value=d["value"], headers=d["headers"])
        p.flush(timeout=30)
    finally:
        p.close()
    return len(letters)
