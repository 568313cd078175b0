"""A plain, ordered Kafka subscriber for rare events whose effect must happen exactly once.

Each record is handed to ``handle(event_id, payload)`` one at a time, in partition order; its offset is
committed only after the handler returned.  A handler that fails (the database down, a peer
unavailable) is called again for the same record after a back-off, until it succeeds: nothing is
skipped, and a service that was down catches up from its committed offsets when it comes back.
Kafka delivers at least once, so the handler must make its effect idempotent by event id (a
processed-events record written in the same transaction as the effect).  A record that cannot be
decoded at all (no ``ce_id`` header, a payload of another schema) is logged and skipped: retrying it
would stop every later event.

Used for ``account.deleted`` (booking, payment and notif erase what they hold about the account).
The booking events keep their own concurrent consumer (notif_worker.adapters.consumer).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from petpro import telemetry
from petpro.events import header_map

log = logging.getLogger("petpro.subscriber")


Handle = Callable[[uuid.UUID, bytes], Awaitable[None]]


class PoisonRecord(Exception):
    """The record can never be processed (undecodable): it is logged and skipped."""


class Subscriber:
    def __init__(
        self,
        name: str,
        handle: Handle,
        consumer_factory: Callable[[], KafkaConsumer],
        *,
        retry_initial_seconds: float = 0.2,
        retry_max_seconds: float = 10.0,
        poll_timeout_ms: int = 500,
    ) -> None:
        self.name = name
        self.poll_timeout_ms = poll_timeout_ms
        self.handle = handle
        self.consumer_factory = consumer_factory
        self.retry_initial = retry_initial_seconds
        self.retry_max = retry_max_seconds

    async def run(self) -> None:
        consumer = await asyncio.to_thread(self.consumer_factory)
        try:
            while True:
                batch = await asyncio.to_thread(
                    consumer.poll, timeout_ms=self.poll_timeout_ms, max_records=50
                )
                for tp, records in batch.items():
                    for record in records:
                        await self._process(record)
                        await self._commit(consumer, tp, record.offset + 1)
        finally:
            await asyncio.to_thread(consumer.close, autocommit=False)

    async def _process(self, record: Any) -> None:
        delay = self.retry_initial
        while True:
            try:
                event_id = _event_id(record)
                with telemetry.consumer_span(
                    record.topic,
                    record.headers,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                ):
                    await self.handle(event_id, record.value)
                telemetry.EVENTS_CONSUMED.labels(record.topic, "processed").inc()
                return
            except PoisonRecord as exc:
                log.error("%s: skipping an event that cannot be processed: %s", self.name, exc)
                telemetry.EVENTS_CONSUMED.labels(record.topic, "skipped").inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # transient: the same record again after a back-off
                log.warning("%s: event failed, retrying in %.1fs: %r", self.name, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    async def _commit(self, consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await asyncio.to_thread(consumer.commit, {tp: OffsetAndMetadata(offset, "", -1)})
        except KafkaError as exc:  # the next commit covers it; a redelivery is dropped by the handler
            log.warning("%s: offset commit failed: %r", self.name, exc)


def _event_id(record: Any) -> uuid.UUID:
    ce_id = header_map(record.headers).get("ce_id", "")
    try:
        return uuid.UUID(ce_id)
    except ValueError:
        raise PoisonRecord(f"no event id (ce_id {ce_id!r})") from None
