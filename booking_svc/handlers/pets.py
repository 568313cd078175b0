"""Pets (CreatePet, ListPets): an owner's animals, which reservations are made for."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime

from booking_svc.domain import Pet
from booking_svc.ports import UnitOfWork
from petpro import paging
from petpro.clock import utcnow
from petpro.errors import InvalidArgument


class PetHandlers:
    def __init__(self, uow: UnitOfWork, read: UnitOfWork, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.uow = uow
        self.read = read
        self.clock = clock

    async def create_pet(
        self, owner: uuid.UUID, name: str, species: str, breed: str | None, birth_date: str
    ) -> Pet:
        born = None
        if birth_date:
            try:
                born = date.fromisoformat(birth_date)
            except ValueError:
                raise InvalidArgument.field("birth_date", "is not a calendar date", "DATE_INVALID") from None
            if born > self.clock().date():
                raise InvalidArgument.field("birth_date", "must not be in the future", "DATE_IN_FUTURE")
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
