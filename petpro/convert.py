"""Small proto ↔ Python conversions every servicer needs (timestamps, UUID fields)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from petpro.errors import InvalidArgument


def ts(dt: datetime | None) -> Timestamp | None:
    if dt is None:
        return None
    out = Timestamp()
    out.FromDatetime(dt.astimezone(UTC))
    return out


def dt(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def uid(value: str, field: str) -> uuid.UUID:
    """Parse a UUID field (protovalidate already checked the format; this guards direct callers)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        raise InvalidArgument.field(field, "must be a UUID", "string.uuid") from None
