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


def account_deleted_subscriber(
    name: str,
    bootstrap: str,
    consumer: Consumer,
    erase: Callable[[AccountDeleted], Awaitable[None]],
    *,
    wait_ms: int | None = None,
) -> Subscriber:
    """A Subscriber of ``account.deleted`` in ``consumer``'s group that hands each event to ``erase``
    (which records the event id with its effect: exactly once in effect).  ``wait_ms``: how long the
    broker may hold an empty fetch and a poll may wait (default kafka-python's 500 ms): a longer wait
    polls a topic that is nearly always idle less often, an erasure starting that much later at most."""
    assert ACCOUNT_DELETED in consumer.topics
    extra: dict[str, object] = {} if wait_ms is None else {"fetch_max_wait_ms": wait_ms}

    async def handle(event_id: uuid.UUID, payload: bytes) -> None:
        await erase(decode_account_deleted(event_id, payload))

    return Subscriber(
        name,
        handle,
        lambda: events.consumer(bootstrap, consumer.group, *(t.name for t in consumer.topics), **extra),
        poll_timeout_ms=wait_ms or 500,
    )
