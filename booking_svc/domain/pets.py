"""Pets and their owners."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from booking_svc.domain.errors import PetNotFound, PetNotOwned


@dataclass
class Pet:
    id: uuid.UUID
    owner_user_id: uuid.UUID
    name: str
    species: str
    breed: str | None = None
    birth_date: date | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def check_pet_owner(pet_owner: uuid.UUID | None, owner: uuid.UUID) -> None:
    """A reservation is for one of the caller's own pets: ``pet_owner`` is the pet's (None: no such pet)."""
    if pet_owner is None:
        raise PetNotFound("pet not found")
    if pet_owner != owner:
        raise PetNotOwned("this pet belongs to another user")
