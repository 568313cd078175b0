"""Pets (CreatePet, ListPets, GetPet, UpdatePet, ArchivePet): an owner's animals, which reservations
are made for."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from booking_svc.domain import Pet, check_etag
from booking_svc.domain.pets import PET_FIELDS, owned_pet
from booking_svc.ports import UnitOfWork
from petpro import paging
from petpro.clock import utcnow
from petpro.errors import InvalidArgument

MAX_NAME = 60  # a pet's name and breed, as CreatePet's


class PetHandlers:
    def __init__(self, uow: UnitOfWork, read: UnitOfWork, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.uow = uow
        self.read = read
        self.clock = clock

    async def create_pet(
        self, owner: uuid.UUID, name: str, species: str, breed: str | None, birth_date: str
    ) -> Pet:
        born = birth_date_of(birth_date, self.clock().date())
        pet = Pet(
            uuid.uuid4(), owner, name.strip(), species, (breed or "").strip() or None, born, self.clock()
        )
        async with self.uow() as repo:
            await repo.add_pet(pet)
        return pet

    async def list_pets(self, owner: uuid.UUID, size: int, token: str) -> tuple[list[Pet], str]:
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_pets(owner, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda p: (p.created_at.isoformat(), str(p.id)))

    async def get_pet(self, owner: uuid.UUID, pet_id: uuid.UUID) -> Pet:
        async with self.read() as repo:
            return owned_pet(await repo.pet(pet_id), owner)

    async def update_pet(self, owner: uuid.UUID, pet_id: uuid.UUID, draft: PetDraft, etag: str) -> Pet:
        """AIP-134: only the fields of ``draft.paths`` change; AIP-154: a stale ``etag`` is refused."""
        changes = draft.check(self.clock().date())
        async with self.uow() as repo:
            pet = owned_pet(await repo.pet(pet_id, for_update=True), owner)
            check_etag(pet.etag, etag)
            booked = "species" in draft.paths and await repo.pet_booked(pet.id)
            pet.apply_update(changes, draft.paths, booked=booked)
            await repo.save_pet(pet)
        return pet

    async def archive_pet(self, owner: uuid.UUID, pet_id: uuid.UUID, etag: str) -> Pet:
        async with self.uow() as repo:
            pet = owned_pet(await repo.pet(pet_id, for_update=True), owner)
            if pet.archived:
                return pet  # idempotent: a retry after success answers the same
            check_etag(pet.etag, etag)
            now = self.clock()
            if pet.archive_unless_booked(now, await repo.future_bookings_of_pet(pet.id, now)):
                await repo.save_pet(pet)
        return pet


@dataclass(frozen=True)
class PetDraft:
    """What an UpdatePet gives (the servicer maps the proto to it): raw values and the mask's paths."""

    paths: list[str]
    name: str = ""
    species: str = ""
    breed: str = ""
    birth_date: str = ""
    weight_kg: float | None = None
    notes: str = ""

    def check(self, today: date) -> Pet:
        """The changes as a Pet (only the masked fields matter), each masked field checked."""
        bad = [p for p in self.paths if p not in PET_FIELDS]
        if bad:
            raise InvalidArgument.field(
                "update_mask",
                f"cannot update {', '.join(bad)}; updatable: {', '.join(PET_FIELDS)}",
                "UPDATE_MASK_INVALID",
            )
        if not self.paths:
            raise InvalidArgument.field("update_mask", "names no field to update", "UPDATE_MASK_EMPTY")
        name = self.name.strip()
        if "name" in self.paths and not name:
            raise InvalidArgument.field("pet.name", "must not be empty", "REQUIRED")
        for path, value in (("name", name), ("breed", self.breed.strip())):
            if path in self.paths and len(value) > MAX_NAME:
                raise InvalidArgument.field(
                    f"pet.{path}", f"must be at most {MAX_NAME} characters", "TOO_LONG"
                )
        if "species" in self.paths and not self.species:
            raise InvalidArgument.field("pet.species", "must be a species", "REQUIRED")
        born = birth_date_of(self.birth_date, today, "pet.birth_date") if "birth_date" in self.paths else None
        grams = round(self.weight_kg * 1000) if self.weight_kg is not None else None
        return Pet(
            uuid.UUID(int=0),
            uuid.UUID(int=0),
            name,
            self.species,
            self.breed.strip() or None,
            born,
            weight_grams=grams,
            notes=self.notes.strip(),
        )


def birth_date_of(value: str, today: date, field_path: str = "birth_date") -> date | None:
    """A birth date "YYYY-MM-DD" (empty: unknown), not after ``today``."""
    if not value:
        return None
    try:
        born = date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument.field(field_path, "is not a calendar date", "DATE_INVALID") from None
    if born > today:
        raise InvalidArgument.field(field_path, "must not be in the future", "DATE_IN_FUTURE")
    return born
