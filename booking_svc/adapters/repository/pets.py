"""Pet queries."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, insert, select

from booking_svc.adapters.repository.rows import Queries, pet_from_row
from booking_svc.adapters.tables import pets
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
            )
        )

    async def pet(self, pet_id: uuid.UUID) -> Pet | None:
        r = (await self.session.execute(select(pets).where(pets.c.id == pet_id))).first()
        return pet_from_row(r) if r else None

    async def list_pets(self, owner: uuid.UUID, after: tuple[str, ...] | None, limit: int) -> list[Pet]:
        q = (
            select(pets)
            .where(pets.c.owner_user_id == owner)
            .order_by(pets.c.created_at, pets.c.id)
            .limit(limit)
        )
        if after:
            q = q.where(
                func.row(pets.c.created_at, pets.c.id)
                > func.row(datetime.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        return [pet_from_row(r) for r in (await self.session.execute(q))]
