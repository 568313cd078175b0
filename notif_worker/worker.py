"""The booking.created consumer: Kafka consumer group → NotifyHandlers, commit after processing,
poison or persistently failing events → the dead-letter topic (with the error), never blocking."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from notif_worker.domain import ChannelFailed, PoisonEvent
from notif_worker.events import decode_booking_created
from notif_worker.handlers import NotifyHandlers
from petpro import telemetry

log = logging.getLogger("notif_worker.consumer")
ConsumerRecord = Any  # kafka-python's ConsumerRecord (untyped): topic, partition, offset, key, value, headers


class BookingCreatedConsumer:
    def __init__(self, handlers: NotifyHandlers, consumer_factory: Callable[[], KafkaConsumer],
                 producer_factory: Callable[[], KafkaProducer], dlq_topic: str, *, concurrency: int = 16) -> None:
        self.h = handlers
        self.consumer_factory = consumer_factory
        self.producer_factory = producer_factory
        self.dlq_topic = dlq_topic
        self.concurrency = concurrency
        self._dlq: KafkaProducer | None = None

    async def run(self) -> None:
        consumer = await asyncio.to_thread(self.consumer_factory)
        try:
            while True:
                batch = await asyncio.to_thread(consumer.poll, 500)
                records = [r for rs in batch.values() for r in rs]
                if not records:
                    continue
                await self._process_batch(records)
                await asyncio.to_thread(consumer.commit)  # after processing: at-least-once
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
        try:
            await self.h.notify(decode_booking_created(record.value))
            telemetry.EVENTS_CONSUMED.labels(record.topic, "processed").inc()
        except (PoisonEvent, ChannelFailed) as exc:
            log.error("dead-lettering event", extra={"fields": {"offset": record.offset, "error": str(exc)}})
            await asyncio.to_thread(self._dead_letter, record, exc)
            telemetry.EVENTS_CONSUMED.labels(record.topic, "dead_lettered").inc()

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
