"""ReserveSlot's early refusal (booking_svc.service.refusals): refuses only what the full path just
refused the same way, never grants, and lets retries, other pets, a changed catalog and freed slots
through to the full path."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from booking_svc.domain import SlotUnavailable
from booking_svc.ports import RefusalFacts
from booking_svc.service.refusals import TakenSlots

OWNER, PET, SERVICE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Cmd:
    request_id: str
    owner_user_id: uuid.UUID = OWNER
    service_id: uuid.UUID = SERVICE
    pet_id: uuid.UUID = PET
    start: datetime = START


class World:
    def __init__(self) -> None:
        self.full = True
        self.used: set[str] = set()
        self.version = 1
        self.full_path = 0
        self.rechecks = 0
        self.now = 0.0
        self.pets = {PET: (OWNER, "dog")}

    async def reserve(self, cmd: Cmd) -> str:
        self.full_path += 1
        if self.full:
            raise SlotUnavailable("this slot is no longer available", metadata={"slot": START.isoformat()})
        self.used.add(cmd.request_id)
        return "held"

    async def recheck(
        self, owner: uuid.UUID, request_id: str, pet_id: uuid.UUID, service_id: uuid.UUID, start: datetime
    ) -> RefusalFacts:
        self.rechecks += 1
        pet_owner, species = self.pets.get(pet_id, (None, None))
        return RefusalFacts(request_id in self.used, self.version, pet_owner, species, self.full)


@pytest.fixture
def world() -> tuple[World, TakenSlots]:
    w = World()
    return w, TakenSlots(w.recheck, ttl=1.0, clock=lambda: w.now)


async def _refused(taken: TakenSlots, w: World, cmd: Cmd) -> SlotUnavailable:
    with pytest.raises(SlotUnavailable) as caught:
        await taken.reserve(cmd, w.reserve)
    return caught.value


async def test_a_slot_refused_once_is_refused_early_the_same_way(world) -> None:
    w, taken = world
    first = await _refused(taken, w, Cmd("a"))
    again = await _refused(taken, w, Cmd("b"))
    assert w.full_path == 1 and taken.early == 1 and w.rechecks == 2  # learning, then refusing
    assert (again.reason, again.message, again.metadata) == (first.reason, first.message, first.metadata)


async def test_a_retry_of_a_used_request_id_goes_the_full_way(world) -> None:
    w, taken = world
    await _refused(taken, w, Cmd("a"))
    w.used.add("winner")  # the request that holds the slot, retried
    await _refused(taken, w, Cmd("winner"))
    assert w.full_path == 2 and taken.early == 0


async def test_another_owners_pet_an_unknown_pet_or_a_new_species_goes_the_full_way(world) -> None:
    w, taken = world
    await _refused(taken, w, Cmd("a"))
    await _refused(taken, w, Cmd("b", pet_id=uuid.uuid4()))  # no such pet
    await _refused(taken, w, Cmd("c", owner_user_id=uuid.uuid4()))  # not the caller's pet
    cat = uuid.uuid4()
    w.pets[cat] = (OWNER, "cat")
    await _refused(taken, w, Cmd("d", pet_id=cat))  # a species not refused yet: learned now
    assert w.full_path == 4 and taken.early == 0
    await _refused(taken, w, Cmd("e", pet_id=cat))
    other_dog = uuid.uuid4()
    w.pets[other_dog] = (OWNER, "dog")
    await _refused(taken, w, Cmd("f", pet_id=other_dog))  # another pet of a species refused already
    assert w.full_path == 4 and taken.early == 2


async def test_a_burst_on_one_slot_takes_the_full_path_once(world) -> None:
    w, taken = world
    results = await asyncio.gather(
        *(taken.reserve(Cmd(f"r{i}"), w.reserve) for i in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, SlotUnavailable) for r in results)
    assert w.full_path == 1 and taken.early == 49


async def test_a_changed_catalog_drops_the_record(world) -> None:
    w, taken = world
    await _refused(taken, w, Cmd("a"))
    await _refused(taken, w, Cmd("b"))  # adopts version 1
    w.version, w.full = 2, False  # e.g. the capacity raised
    assert await taken.reserve(Cmd("c"), w.reserve) == "held"
    assert taken.early == 1


async def test_a_slot_freed_anywhere_is_not_refused_early(world) -> None:
    w, taken = world
    await _refused(taken, w, Cmd("a"))
    w.full = False  # the holder's hold lapsed, or another replica cancelled its booking
    assert await taken.reserve(Cmd("b"), w.reserve) == "held"
    assert taken.early == 0


async def test_the_record_lapses_and_a_local_release_forgets_it(world) -> None:
    w, taken = world
    await _refused(taken, w, Cmd("a"))
    w.full = False
    w.now = 1.5  # past the ttl
    assert await taken.reserve(Cmd("b"), w.reserve) == "held"
    w.full = True
    await _refused(taken, w, Cmd("c"))
    taken.forget()  # a cancellation in this process
    w.full = False
    assert await taken.reserve(Cmd("d"), w.reserve) == "held"
    assert taken.early == 0


async def test_it_never_grants(world) -> None:
    w, taken = world
    w.full = False
    assert await taken.reserve(Cmd("a"), w.reserve) == "held"
    assert await taken.reserve(Cmd("b"), w.reserve) == "held"
    assert w.full_path == 2 and w.rechecks == 0
