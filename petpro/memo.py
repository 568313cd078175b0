"""An in-process read-through memo that is never stale past a committed change.  Pure (no I/O of its
own): the loader it is given does the reading."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from cachetools import LRUCache

V = TypeVar("V")


class VersionedMemo:
    """Async read-through memo that is never stale past a committed change: every entry remembers the
    data version it was loaded at (a counter the writers bump in the same transaction as the change),
    and a read with a newer version loads again.  No TTL: an unchanged catalog is served from memory
    however old, a changed one never (bounded by an LRU)."""

    def __init__(self, maxsize: int = 4096) -> None:
        self._cache: LRUCache[Hashable, tuple[int, Any]] = LRUCache(maxsize=maxsize)

    def peek(self, key: Hashable) -> tuple[int, Any] | None:
        """The entry kept for ``key`` and the version it was loaded at, unchecked: for a caller that
        verifies the version itself, in the statement that relies on the entry."""
        return self._cache.get(key)

    async def get(self, key: Hashable, version: int, load: Callable[[], Awaitable[V]]) -> V:
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = await load()
        if value is not None:
            self._cache[key] = (version, value)
        return value
