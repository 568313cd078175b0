"""The booking.created consumer: Kafka consumer group → NotifyHandlers, commit after processing,
poison or persistently failing events → the dead-letter topic (with the error), never blocking."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from opentelemetry.trace import StatusCode

from notif_worker.domain import ChannelFailed, PoisonEvent
from notif_worker.events import decode_booking_created
from notif_worker.handlers import NotifyHandlers
from petpro import telemetry

log = logging.getLogger("notif_worker.consumer")
ConsumerRecord = Any  # kafka-python's ConsumerRecord (untyped): topic, partition, offset, key, value, headers


class BookingCreatedConsumer:
    def __init__(self, handlers: NotifyHandlers, consumer_factory: Callable[[], KafkaConsumer],
                 producer_factory: Callable[[], KafkaProducer], dlq_topic: str, *, concurrency: int = 16,
                 dlq_measure_seconds: float = 15.0) -> None:
        self.h = handlers
        self.consumer_factory = consumer_factory
        self.producer_factory = producer_factory
        self.dlq_topic = dlq_topic
        self.concurrency = concurrency
        self.dlq_measure_seconds = dlq_measure_seconds
        self._dlq: KafkaProducer | None = None
        self._dlq_measured = float("-inf")

    async def run(self) -> None:
        consumer = await asyncio.to_thread(self.consumer_factory)
        try:
            while True:
                batch = await asyncio.to_thread(consumer.poll, 500)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    work = asyncio.ensure_future(self._process_batch(records))
                    try:
                        await asyncio.shield(work)
                    except asyncio.CancelledError:
                        # stopping (SIGTERM): finish the events already started and commit them, or the
                        # replica that takes the partitions over would deliver them a second time
                        await work
                        await asyncio.to_thread(consumer.commit)
                        raise
                    await asyncio.to_thread(consumer.commit)  # after processing: at-least-once
                await asyncio.to_thread(self._measure, consumer)
        finally:
            await asyncio.to_thread(self._close, consumer)

    async def _process_batch(self, records: list[ConsumerRecord]) -> None:
        """Different bookings concurrently; the records of one key (booking) strictly in order, so
        two copies of one event never race each other's delivery claims."""
        by_key: dict[bytes | None, list[ConsumerRecord]] = defaultdict(list)
        for record in records:
            by_key[record.key].append(record)
        sem = asyncio.Semaphore(self.concurrency)

        async def in_order(group: list[ConsumerRecord]) -> None:
            async with sem:
                for record in group:
                    await self._process(record)

        await asyncio.gather(*(in_order(g) for g in by_key.values()))

    async def _process(self, record: ConsumerRecord) -> None:
        # a CONSUMER span continuing the trace of the event's traceparent header (the outbox publish)
        with telemetry.consumer_span(record.topic, record.headers, partition=record.partition,
                                     offset=record.offset, key=record.key) as span:
            try:
                notice = decode_booking_created(record.value)
                span.set_attribute("petpro.booking_id", notice.booking_id)
                await self.h.notify(notice)
                telemetry.EVENTS_CONSUMED.labels(record.topic, "processed").inc()
            except (PoisonEvent, ChannelFailed) as exc:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, str(exc))
                log.error("dead-lettering event", extra={"fields": {"offset": record.offset, "error": str(exc)}})
                await asyncio.to_thread(self._dead_letter, record, exc)
                telemetry.EVENTS_CONSUMED.labels(record.topic, "dead_lettered").inc()
                self._dlq_measured = float("-inf")  # the DLQ grew: measure it after this batch

    def _measure(self, consumer: KafkaConsumer) -> None:
        """Consumer lag (high watermark - position, per topic, from what the fetches already know) and,
        every ``dlq_measure_seconds``, the dead-letter topic's size (end - beginning offsets)."""
        group = str(consumer.config.get("group_id") or "")
        lag: dict[str, int] = defaultdict(int)
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                lag[tp.topic] += max(0, high - consumer.position(tp))
        for topic, n in lag.items():
            telemetry.CONSUMER_LAG.labels(topic, group).set(n)
        now = time.monotonic()
        if now - self._dlq_measured < self.dlq_measure_seconds:
            return
        self._dlq_measured = now
        try:
            parts = [TopicPartition(self.dlq_topic, p) for p in consumer.partitions_for_topic(self.dlq_topic) or ()]
            if parts:
                ends, starts = consumer.end_offsets(parts), consumer.beginning_offsets(parts)
                telemetry.DLQ_MESSAGES.labels(self.dlq_topic).set(sum(ends[tp] - starts[tp] for tp in parts))
        except Exception as exc:  # a metric must never stop the consumer
            log.debug("dead-letter topic size not measured: %s", exc)

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
