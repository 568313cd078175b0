"""ReserveSlot's early refusal: a per-process record of the slots it just saw refused as full, so the
next callers for the same slot are refused without the hold statement and the use case behind it
(1,000 reservers on one slot: 999 refusals, each as costly as a success without this record).

The record is never trusted to grant a slot, only to refuse early, and only a request the full path
would refuse the same way:

* an entry is learned from a refusal the full path made (``SlotUnavailable``) and lives ``ttl``
  seconds (1 s by default, refreshed by each refusal the full path makes);
* each early refusal asks the database one read-only statement of index lookups
  (``ports.RefusalRecheck``, instead of the hold): the slot must still be full now (its live holds
  fill the capacity: a hold that lapsed, was cancelled or moved, in any process, frees it for the very
  next caller); a request id used already goes the full way (a retry gets its first answer); a pet
  that is not the caller's, or of a species the slot was not refused for already (the rules the full
  path checks before the slot), goes the full way; a catalog version other than the entry's drops the
  entry (a changed catalog may have changed the rules);
* while a slot has no entry, its callers take the full path one at a time (the first refusal teaches
  the rest; other slots are not held up), so a burst on one slot costs a few full paths, not all;
* a release in this process (a cancellation, a reschedule, lapsed holds expired) also forgets every
  entry (:meth:`TakenSlots.forget`).

It sits at the servicer's boundary, around the use case (``ReservationHandlers.reserve``), and knows
nothing of how the use case decides.  Any failure of its own statement sends the request the full way.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from booking_svc.domain import SlotUnavailable
from booking_svc.ports import RefusalFacts, RefusalRecheck

log = logging.getLogger("booking_svc.refusals")

Key = tuple[uuid.UUID, datetime]


@dataclass
class _Full:
    until: float  # monotonic time the entry lapses at
    metadata: dict[str, str]  # the full path's ErrorInfo metadata (the slot), answered again
    version: int  # the catalog's when the refusal was learned
    species: set[str | None] = field(default_factory=set)  # species refused for this slot


@dataclass
class _Queue:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


class TakenSlots:
    def __init__(
        self,
        recheck: RefusalRecheck,
        *,
        ttl: float = 1.0,
        max_slots: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recheck = recheck
        self.ttl = ttl
        self.max_slots = max_slots
        self.clock = clock
        self._full: dict[Key, _Full] = {}
        self._queues: dict[Key, _Queue] = {}
        self.early = 0  # refusals answered from the record (tests, and a curious operator)

    def forget(self) -> None:
        """A slot may have been freed: refuse nothing early until refused again."""
        self._full.clear()

    async def reserve(self, cmd: Any, reserve: Callable[[Any], Awaitable[Any]]) -> Any:
        """``reserve(cmd)`` (the use case), unless ``cmd`` can be refused early."""
        if getattr(cmd, "provider_id", None) is not None:  # a named provider: their claims decide
            return await reserve(cmd)
        key: Key = (cmd.service_id, cmd.start)
        if await self._refuses(key, cmd):
            raise self._refusal(key)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        queue.waiting += 1
        try:
            await queue.lock.acquire()
            if key not in self._full:  # nothing learned yet: the full path, one caller at a time
                try:
                    return await reserve(cmd)
                except SlotUnavailable as exc:
                    await self._learn(key, cmd, exc)
                    raise
                finally:
                    queue.lock.release()
            queue.lock.release()  # learned while waiting: the next waiter need not wait for this one
        finally:
            queue.waiting -= 1
            if not queue.waiting:
                del self._queues[key]
        if await self._refuses(key, cmd):
            raise self._refusal(key)
        try:
            return await reserve(cmd)  # an entry that does not cover this request: the full path
        except SlotUnavailable as exc:
            await self._learn(key, cmd, exc)
            raise

    def _refusal(self, key: Key) -> SlotUnavailable:
        self.early += 1
        return SlotUnavailable("this slot is no longer available", metadata=dict(self._full[key].metadata))

    async def _facts(self, cmd: Any) -> RefusalFacts | None:
        try:
            return await self.recheck(
                cmd.owner_user_id, cmd.request_id, cmd.pet_id, cmd.service_id, cmd.start
            )
        except Exception:  # the full path decides (and reports) whatever went wrong
            log.debug("refusal recheck failed", exc_info=True)
            return None

    async def _refuses(self, key: Key, cmd: Any) -> bool:
        entry = self._full.get(key)
        if entry is None:
            return False
        if entry.until <= self.clock():
            self._full.pop(key, None)
            return False
        facts = await self._facts(cmd)
        if facts is None or not facts.slot_full or facts.earlier or facts.pet_owner != cmd.owner_user_id:
            return False
        if facts.catalog_version != entry.version:
            self._full.pop(key, None)
            return False
        return facts.pet_species in entry.species and self._full.get(key) is entry

    async def _learn(self, key: Key, cmd: Any, exc: SlotUnavailable) -> None:
        """After the full path refused ``cmd``: the slot is full for a pet of its species, at the
        catalog version read now (read after the refusal: a catalog changed in between is caught at
        the next early refusal's recheck, or by ``ttl``)."""
        facts = await self._facts(cmd)
        if facts is None or not facts.slot_full or facts.pet_owner != cmd.owner_user_id:
            return
        now = self.clock()
        entry = self._full.get(key)
        if entry is None or entry.until <= now or entry.version != facts.catalog_version:
            if len(self._full) >= self.max_slots:
                self._full.clear()
            entry = self._full[key] = _Full(now + self.ttl, dict(exc.metadata or {}), facts.catalog_version)
        else:
            entry.until = now + self.ttl
        entry.species.add(facts.pet_species)
