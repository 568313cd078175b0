"""Opaque keyset page tokens for List RPCs (AIP-158): base64url(JSON of the last row's sort key)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from petpro.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
T = TypeVar("T")


def page_size(requested: int) -> int:
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode(key: tuple[str, ...]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode(token: str, arity: int = 2) -> tuple[str, ...] | None:
    if not token:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if isinstance(raw, list) and len(raw) == arity and all(isinstance(x, str) for x in raw):
            return tuple(raw)
    except (ValueError, UnicodeDecodeError):
        pass
    raise InvalidArgument.field(
        "page_token", "is not a token returned by this List call", "PAGE_TOKEN_INVALID"
    )


def next_token(rows: Sequence[T], limit: int, key: Callable[[T], tuple[str, ...]]) -> str:
    """A token for the next page when the page is full, else ""."""
    return encode(key(rows[-1])) if len(rows) == limit and rows else ""
