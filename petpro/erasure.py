"""The AccountDeleted event (topic ``account.deleted``), as auth writes it and as booking, payment and
notif read it to erase what they hold about a deleted account (petpro.subscriber delivers it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import DecodeError

from petpro import events
from petpro.convert import ts
from petpro.mesh import ACCOUNT_DELETED, Consumer
from petpro.subscriber import PoisonRecord, Subscriber
from petpro_api.auth.v1 import events_pb2


@dataclass(frozen=True)
class AccountDeleted:
    event_id: uuid.UUID
    user_id: uuid.UUID
    email_sha256: tuple[str, ...]  # hex SHA-256 of each address the account had, lower-cased
    deleted_at: datetime


def encode_account_deleted(
    event_id: uuid.UUID, user_id: uuid.UUID, digests: list[str], at: datetime
) -> bytes:
    return events_pb2.AccountDeleted(
        event_id=str(event_id), user_id=str(user_id), email_sha256=digests, delete_time=ts(at)
    ).SerializeToString()


def decode_account_deleted(event_id: uuid.UUID, payload: bytes) -> AccountDeleted:
    try:
        msg = events_pb2.AccountDeleted.FromString(payload)
        user_id = uuid.UUID(msg.user_id)
    except (DecodeError, ValueError) as exc:
        raise PoisonRecord(f"not an AccountDeleted: {exc}") from None
    return AccountDeleted(event_id, user_id, tuple(msg.email_sha256), msg.delete_time.ToDatetime(tzinfo=UTC))


# A deletion is rare and its erasure asynchronous (seconds do not matter), but an idle consumer still
# fetches and heartbeats all day in booking, payment and notif: with the defaults (the broker holds an
# empty fetch 500 ms, a heartbeat every second) 0.7 % of a core per process on an idle tansu broker,
# 0.3 % with these; in the full flow it was ~7 % of payment_svc's samples.  A fetch is still answered
# as soon as a record arrives on a broker that does so (Kafka); tansu may hold it up to the 2 s.  The
# subscriber's polls wait as long (each poll that runs out is a worker thread's hop taking the GIL).
RARE_EVENT_WAIT_MS = 2_000


def account_deleted_subscriber(
    name: str,
    bootstrap: str,
    consumer: Consumer,
    erase: Callable[[AccountDeleted], Awaitable[None]],
    *,
    wait_ms: int = RARE_EVENT_WAIT_MS,
) -> Subscriber:
    """A Subscriber of ``account.deleted`` in ``consumer``'s group that hands each event to ``erase``
    (which records the event id with its effect: exactly once in effect).  ``wait_ms``: how long the
    broker may hold an empty fetch, a poll may wait and the heartbeats are apart: a topic that is
    nearly always idle is polled less often, an erasure starting that much later at most."""
    assert ACCOUNT_DELETED in consumer.topics
    options: dict[str, object] = {"fetch_max_wait_ms": wait_ms, "heartbeat_interval_ms": wait_ms}

    async def handle(event_id: uuid.UUID, payload: bytes) -> None:
        await erase(decode_account_deleted(event_id, payload))

    return Subscriber(
        name,
        handle,
        lambda: events.consumer(bootstrap, consumer.group, *(t.name for t in consumer.topics), **options),
        poll_timeout_ms=wait_ms,
    )
