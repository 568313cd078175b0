"""Transactional outbox relay: rows written with a state change are published to Kafka.

A service inserts into its ``outbox`` table in the same transaction as the change (and may
``NOTIFY outbox, '<its schema>'``: the channel is shared by every service of the database, and a relay
wakes only for its own schema's rows or an empty payload).  The relay claims unsent rows in id order (``FOR UPDATE SKIP LOCKED``, so several
replicas share the work), publishes them with CloudEvents headers, waits for the broker's
acknowledgement (acks=all) and only then marks them sent, in the same transaction.  While the broker
is down the rows stay unsent and the relay retries with backoff: a broker restart loses nothing.
Consumers must be idempotent by event id (a crash between the ack and the commit re-publishes).

A broker may also lose what it acknowledged (a restart with memory storage, a lost disk): the relay
remembers, per partition, the first offset of the latest batch the broker acknowledged and, every
``check_seconds``, asks the broker for its end offsets (``end_offsets``).  An end offset at or below
that offset means the broker lost data: the rows sent within ``replay_window_seconds`` are marked
unsent and published again (consumers drop the ones they already processed).  The first offset of
the batch, not its last: Kafka reports the end offset as the last offset + 1, but tansu (the dev
broker) reports the last batch's *first* offset + 1, and comparing against the last offset of a
multi-record batch would see a loss that never happened, replay, and loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import psycopg
from kafka import KafkaProducer
from opentelemetry.trace import StatusCode
from psycopg.rows import namedtuple_row
from sqlalchemy import (
    CursorResult,
    text,
)

from petpro import telemetry
from petpro.db import Database, direct_url, raw_execute
from petpro.events import cloudevent_headers

log = logging.getLogger("petpro.outbox")


CLAIM = text(
    "SELECT id, event_id, topic, key, event_type, payload, traceparent, created_at FROM outbox"
    " WHERE sent_at IS NULL ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
# lag: how many rows wait and for how long (the partial index on unsent rows keeps this cheap)
LAG = text(
    "SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest"
    " FROM outbox WHERE sent_at IS NULL"
)
MARK_SENT = text("UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY(:ids)")
REPLAY = text("UPDATE outbox SET sent_at = NULL WHERE sent_at > now() - make_interval(secs => :window)")
NOTIFY_CHANNEL = "outbox"
# the same two statements for psycopg (publish_batch)
_CLAIM_SQL = CLAIM.text.replace(":limit", "%(limit)s")
_MARK_SENT_SQL = MARK_SENT.text.replace(":ids", "%(ids)s")


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        producer_factory: Callable[[], KafkaProducer],
        *,
        source: str,
        listen_dsn: str | None = None,
        batch_size: int = 500,
        idle_poll_seconds: float = 1.0,
        listening_poll_seconds: float = 10.0,
        max_backoff_seconds: float = 5.0,
        lag_interval_seconds: float = 5.0,
        end_offsets: Callable[[list[tuple[str, int]]], dict[tuple[str, int], int]] | None = None,
        check_seconds: float = 5.0,
        replay_window_seconds: float = 900.0,
    ) -> None:
        self.db = db
        self.producer_factory = producer_factory
        self.source = source
        # LISTEN needs a session of its own: behind a transaction pooler, the server's direct URL
        self.listen_dsn = direct_url(listen_dsn) if listen_dsn else None
        if listen_dsn and not self.listen_dsn:
            log.warning("outbox: transaction pooler without DATABASE_DIRECT_URL: no LISTEN, polling only")
        self.batch_size = batch_size
        self.idle_poll = idle_poll_seconds
        # while LISTEN is up every committed row wakes the relay (its NOTIFY), so the idle poll only
        # covers what nobody announced: it runs this rarely then (max with idle_poll), and every
        # (re)connected LISTEN looks once at once, for rows committed while it was down
        self.listening_poll = max(idle_poll_seconds, listening_poll_seconds)
        self._listening = False
        self.max_backoff = max_backoff_seconds
        self.lag_interval = lag_interval_seconds
        self._producer: KafkaProducer | None = None
        self._wake = asyncio.Event()
        self._lag_measured = float("-inf")
        self.end_offsets = end_offsets
        self.check_seconds = check_seconds
        self.replay_window = replay_window_seconds
        # per partition: the first offset of the latest batch the broker acknowledged
        self._acked: dict[tuple[str, int], int] = {}
        self._next_check = 0.0

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen()) if self.listen_dsn else None
        # the lag gauges and the broker's end offsets are read beside the publishing, never in its
        # way: inline, the end-offset read (a broker round trip, in a thread) every check_seconds
        # held the events committed meanwhile back by up to ~100 ms (the fan-out p99)
        watcher = asyncio.create_task(self._watch())
        backoff = 0.1
        try:
            while True:
                # cleared before the claim, not after the batch: a NOTIFY that comes while a batch is
                # being published is for a row that batch's claim did not see, and must not be lost
                # (it was: that row then waited for the next NOTIFY, or the listening poll, 10 s)
                self._wake.clear()
                try:
                    sent = await self.publish_batch()
                    backoff = 0.1
                except Exception as exc:  # broker down, DB hiccup: keep rows, retry later
                    telemetry.OUTBOX_FAILURES.inc()
                    log.warning("outbox publish failed, retrying in %.1fs: %s", backoff, exc)
                    await asyncio.to_thread(self._close_producer)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                if sent < self.batch_size:
                    try:
                        await asyncio.wait_for(
                            self._wake.wait(), self.listening_poll if self._listening else self.idle_poll
                        )
                    except TimeoutError:
                        pass
        finally:
            watcher.cancel()
            if listener:
                listener.cancel()
            await asyncio.to_thread(self._close_producer)

    async def _watch(self) -> None:
        """Now and then: the lag gauges, and the broker check (re-publishing what it lost)."""
        while True:
            await self._measure_lag_now_and_then()
            try:
                if await self.check_broker():
                    self._wake.set()  # rows to publish again: the publish loop looks at once
            except Exception as exc:  # the database is down: the publish loop reports it; next time
                log.warning("outbox broker check failed: %s", exc)
            await asyncio.sleep(min(self.lag_interval, self.check_seconds))

    async def measure_lag(self) -> tuple[int, float]:
        """Set the outbox lag gauges: unpublished rows and the age of the oldest one (seconds)."""
        async with self.db.reader() as conn:
            row = (await conn.execute(LAG)).one()
        pending, oldest = int(row.pending), float(row.oldest)
        telemetry.OUTBOX_PENDING.set(pending)
        telemetry.OUTBOX_OLDEST_AGE.set(oldest)
        return pending, oldest

    async def _measure_lag_now_and_then(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._lag_measured < self.lag_interval:
            return
        self._lag_measured = now
        try:
            await self.measure_lag()
        except Exception as exc:  # the publish attempt right after reports DB trouble
            log.debug("outbox lag not measured: %s", exc)

    async def publish_batch(self) -> int:
        # the claim and the mark go to psycopg directly (raw_execute), in a transaction of a psycopg
        # connection (Database.statement_transaction): at a few events a second each batch is one
        # row, and SQLAlchemy's per-statement and per-transaction work was most of the relay's own CPU
        async with self.db.statement_transaction() as session:
            cur = await raw_execute(
                session,
                _CLAIM_SQL,
                {"limit": self.batch_size},
                operation="SELECT",
                row_factory=namedtuple_row,
            )
            rows = await cur.fetchall()
            if not rows:
                return 0
            await asyncio.to_thread(self._produce, rows)
            await raw_execute(session, _MARK_SENT_SQL, {"ids": [r.id for r in rows]}, operation="UPDATE")
        telemetry.OUTBOX_PUBLISHED.inc(len(rows))
        return len(rows)

    def _produce(self, rows: Sequence[Any]) -> None:  # runs in a worker thread
        if self._producer is None:
            self._producer = self.producer_factory()
        # one PRODUCER span per event, child of the request that wrote it (its stored traceparent);
        # the message carries the span's own traceparent, so the consumer continues the same trace
        spans = [
            telemetry.start_producer_span(
                r.topic, parent_traceparent=r.traceparent or None, key=r.key, message_id=str(r.event_id)
            )
            for r in rows
        ]
        try:
            futures = [
                self._producer.send(
                    r.topic,
                    key=r.key.encode(),
                    value=bytes(r.payload),
                    headers=cloudevent_headers(
                        str(r.event_id),
                        r.event_type,
                        self.source,
                        r.created_at,
                        traceparent=telemetry.traceparent_of(span) or r.traceparent or None,
                    ),
                )
                for r, span in zip(rows, spans, strict=True)
            ]
            self._producer.flush(timeout=10)
            first: dict[tuple[str, int], int] = {}
            for f in futures:
                md = f.get(timeout=10)  # raises if the broker did not acknowledge
                key = (md.topic, md.partition)
                first[key] = min(first.get(key, md.offset), md.offset)
            for key, offset in first.items():
                self._acked[key] = max(self._acked.get(key, -1), offset)
        except Exception as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, str(exc))
            raise
        finally:
            for span in spans:
                span.end()

    async def check_broker(self) -> int:
        """Re-publish the recent rows when the broker lost what it had acknowledged; how many."""
        now = asyncio.get_running_loop().time()
        if self.end_offsets is None or not self._acked or now < self._next_check:
            return 0
        self._next_check = now + self.check_seconds
        acked = dict(self._acked)
        try:
            ends = await asyncio.to_thread(self.end_offsets, list(acked))
        except Exception as exc:  # the check must never hold up publishing; next time
            log.warning("could not read the broker's end offsets: %s", exc)
            return 0
        lost = [tp for tp, offset in acked.items() if tp in ends and ends[tp] <= offset]
        if not lost:
            return 0
        async with self.db.unit_of_work() as session:
            result = cast(CursorResult[Any], await session.execute(REPLAY, {"window": self.replay_window}))
            replayed = result.rowcount
        # what was read above is settled; an acknowledgement that came in meanwhile (a batch published
        # while this check ran) is kept for the next check
        for tp, offset in acked.items():
            if self._acked.get(tp) == offset:
                del self._acked[tp]
        telemetry.OUTBOX_REPLAYED.inc(replayed)
        log.warning(
            "broker lost acknowledged events (%s); re-publishing %d recent rows",
            ", ".join(f"{t}[{p}]" for t, p in lost),
            replayed,
        )
        return int(replayed)

    def _close_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception:
                pass
            self._producer = None

    def wakes_for(self, payload: str) -> bool:
        """Whether a ``NOTIFY outbox`` with ``payload`` is for this relay: the channel is the database's,
        every service's rows NOTIFY on it naming their schema (booking's woke auth's relay for a
        transaction that found nothing, once per booking); '' (a writer that names none) wakes all."""
        return not payload or payload == self.db.schema

    async def _listen(self) -> None:
        """Wake the relay on ``NOTIFY outbox`` for low latency; polling covers missed notifications."""
        assert self.listen_dsn is not None
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.listen_dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listening = True
                    self._wake.set()  # what was committed while nobody listened
                    async for n in conn.notifies():
                        if self.wakes_for(n.payload):
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox LISTEN connection lost: %s", exc)
                await asyncio.sleep(1)
            finally:
                self._listening = False
