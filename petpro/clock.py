"""The clock: aware UTC datetimes.  Pure: use cases take it as their default ``clock``."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
