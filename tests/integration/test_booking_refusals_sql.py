"""The SQL side of ReserveSlot's early refusal (booking_svc.adapters.refusals.SqlRecheck) on the
embedded PostgreSQL, in a schema of this module's own: it reads a request id used already, the catalog
version, the pet's owner and species, and whether the slot's live holds fill the capacity now (a hold
that lapses frees it at once)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text

from booking_svc.adapters.refusals import SqlRecheck
from booking_svc.adapters.repository import BookingRepository
from booking_svc.adapters.tables import SCHEMA
from petpro.db import Database
from petpro.migrations import alembic_config
from petpro_dev.devstack import Stack
from tests.contracts.booking_repository import new_clinic, new_hold, new_pet, new_service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def schema_db(devstack: Stack) -> AsyncIterator[tuple[Database, str, str]]:
    url = devstack.env()["DATABASE_URL"]
    cfg = alembic_config("booking_svc", url)
    cfg.attributes["schema"] = schema = f"booking_refusals_{uuid.uuid4().hex[:12]}"
    await asyncio.to_thread(command.upgrade, cfg, "head")
    db = Database(url, schema, app_name="booking-refusals-test", pool_size=2)
    db.engine.sync_engine.update_execution_options(schema_translate_map={SCHEMA: schema})
    try:
        yield db, url, schema
    finally:
        await db.close()


async def test_the_recheck_reads_what_an_early_refusal_needs(schema_db) -> None:
    db, url, schema = schema_db
    uow, _ = db.repositories(BookingRepository)
    clinic = new_clinic()
    svc = new_service(clinic, capacity=1)
    pet = new_pet()
    now = datetime.now(UTC)
    start = (now + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    hold = new_hold(svc, pet, start=start, now=now, ttl=timedelta(minutes=10))
    async with uow() as repo:
        await repo.add_clinic(clinic)
        await repo.add_service(svc)
        await repo.add_pet(pet)
        version = await repo.catalog_version()
    recheck = SqlRecheck(url, schema=schema)
    try:
        facts = await recheck(pet.owner_user_id, "fresh-request", pet.id, svc.id, start)
        assert (facts.earlier, facts.slot_full) == (False, False)  # nothing holds it yet
        assert (facts.catalog_version, facts.pet_owner, facts.pet_species) == (
            version,
            pet.owner_user_id,
            "DOG",
        )
        async with uow() as repo:
            assert (await repo.hold(hold, svc.capacity, version)).inserted
        facts = await recheck(pet.owner_user_id, "fresh-request", pet.id, svc.id, start)
        assert facts.slot_full and not facts.earlier
        facts = await recheck(pet.owner_user_id, hold.request_id, pet.id, svc.id, start)
        assert facts.earlier  # the holder's retry goes the full way
        # the hold lapses: the slot is free for the very next caller, whoever swept it or not
        async with uow() as repo:
            await repo.session.execute(  # type: ignore[attr-defined]
                text(
                    f"UPDATE {schema}.reservations SET expires_at = now() - interval '1 second'"
                    " WHERE lock_id = :lock"
                ),
                {"lock": hold.lock_id},
            )
        assert not (await recheck(pet.owner_user_id, "fresh-request", pet.id, svc.id, start)).slot_full
        no_pet = await recheck(pet.owner_user_id, "fresh-request", uuid.uuid4(), svc.id, start)
        assert no_pet.pet_owner is None and no_pet.pet_species is None
    finally:
        await recheck.close()
