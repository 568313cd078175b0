"""Pet queries."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import exists, func, insert, select, update

from booking_svc.adapters.repository.rows import Queries, pet_from_row
from booking_svc.adapters.tables import bookings, pets
from booking_svc.domain import Pet


class PetQueries(Queries):
    async def add_pet(self, pet: Pet) -> None:
        await self.session.execute(
            insert(pets).values(
                id=pet.id,
                owner_user_id=pet.owner_user_id,
                name=pet.name,
                species=pet.species,
                breed=pet.breed or "",
                birth_date=pet.birth_date,
                created_at=pet.created_at,
                weight_grams=pet.weight_grams,
                notes=pet.notes,
                archived_at=pet.archived_at,
                version=pet.version,
            )
        )

    async def pet(self, pet_id: uuid.UUID, *, for_update: bool = False) -> Pet | None:
        q = select(pets).where(pets.c.id == pet_id)
        if for_update:
            q = q.with_for_update()
        r = (await self.session.execute(q)).first()
        return pet_from_row(r) if r else None

    async def save_pet(self, pet: Pet) -> None:
        await self.session.execute(
            update(pets)
            .where(pets.c.id == pet.id)
            .values(
                name=pet.name,
                species=pet.species,
                breed=pet.breed or "",
                birth_date=pet.birth_date,
                weight_grams=pet.weight_grams,
                notes=pet.notes,
                archived_at=pet.archived_at,
                version=pet.version,
            )
        )

    async def pet_booked(self, pet_id: uuid.UUID) -> bool:
        q = select(exists().where(bookings.c.pet_id == pet_id))
        return bool((await self.session.execute(q)).scalar())

    async def future_bookings_of_pet(self, pet_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        q = (
            select(bookings.c.id)
            .where(bookings.c.pet_id == pet_id, bookings.c.state == "CONFIRMED", bookings.c.start_time > now)
            .order_by(bookings.c.start_time, bookings.c.id)
        )
        return [r.id for r in await self.session.execute(q)]

    async def list_pets(self, owner: uuid.UUID, after: tuple[str, ...] | None, limit: int) -> list[Pet]:
        q = (
            select(pets)
            .where(pets.c.owner_user_id == owner, pets.c.archived_at.is_(None))
            .order_by(pets.c.created_at, pets.c.id)
            .limit(limit)
        )
        if after:
            q = q.where(
                func.row(pets.c.created_at, pets.c.id)
                > func.row(datetime.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        return [pet_from_row(r) for r in (await self.session.execute(q))]
