"""Pets and their owners."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from booking_svc.domain.errors import (
    PetArchived,
    PetHasBookings,
    PetHasFutureBookings,
    PetNotFound,
    PetNotOwned,
)

# the fields UpdatePet may change (AIP-134 mask paths; weight_kg is stored as weight_grams)
PET_FIELDS = ("name", "species", "breed", "birth_date", "weight_kg", "notes")


@dataclass
class Pet:
    id: uuid.UUID
    owner_user_id: uuid.UUID
    name: str
    species: str
    breed: str | None = None
    birth_date: date | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    weight_grams: int | None = None
    notes: str = ""
    archived_at: datetime | None = None
    version: int = 1

    @property
    def etag(self) -> str:
        return f"p{self.version}"

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def apply_update(self, changes: Pet, paths: list[str], *, booked: bool) -> None:
        """Apply the masked fields of ``changes``; the species only while the pet has no booking."""
        if self.archived:
            raise PetArchived("an archived pet cannot be changed")
        if "species" in paths and changes.species != self.species and booked:
            raise PetHasBookings(
                "the species of a pet with bookings cannot change (its bookings were made for it)",
                metadata={"species": self.species},
            )
        for path in paths:
            attr = "weight_grams" if path == "weight_kg" else path
            setattr(self, attr, getattr(changes, attr))
        self.version += 1

    def archive_unless_booked(self, now: datetime, future_bookings: list[uuid.UUID]) -> bool:
        """Archive (idempotent: False when it already was); bookings still to come forbid it."""
        if self.archived:
            return False
        if future_bookings:
            ids = ",".join(str(b) for b in future_bookings)
            raise PetHasFutureBookings(
                f"the pet has bookings to come; cancel them first: {ids}", metadata={"booking_ids": ids}
            )
        self.archived_at = now
        self.version += 1
        return True


def owned_pet(pet: Pet | None, owner: uuid.UUID) -> Pet:
    """The owner's pet; another owner's pet is not found (its existence is not revealed)."""
    if pet is None or pet.owner_user_id != owner:
        raise PetNotFound("pet not found")
    return pet


def check_pet_owner(pet_owner: uuid.UUID | None, owner: uuid.UUID) -> None:
    """A reservation is for one of the caller's own pets: ``pet_owner`` is the pet's (None: no such pet)."""
    if pet_owner is None:
        raise PetNotFound("pet not found")
    if pet_owner != owner:
        raise PetNotOwned("this pet belongs to another user")
