"""Pets after creation, with the fake unit of work: get by id, update (AIP-134 mask, AIP-154 etag, the
species only while the pet has no booking), archive (refused with bookings to come, idempotent), and
another owner's pet is not found for any of it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from booking_svc.domain import Booking, BookingState, EtagMismatch, Pet, PetNotFound
from booking_svc.domain.errors import PetArchived, PetHasBookings, PetHasFutureBookings
from booking_svc.handlers import PetDraft
from petpro.errors import InvalidArgument
from tests.unit.fakes.booking import BookingStore, booking_use_cases

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)


@pytest.fixture
def world():
    store = BookingStore()
    owner = uuid.uuid4()
    pet = Pet(uuid.uuid4(), owner, "Rex", "DOG", created_at=NOW)
    store.pets[pet.id] = pet
    h = booking_use_cases(store, clock=lambda: NOW)
    return h, store, owner, pet


def book(
    store: BookingStore, pet: Pet, start: datetime, state: BookingState = BookingState.CONFIRMED
) -> Booking:
    b = Booking(
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        pet.owner_user_id,
        uuid.uuid4(),
        uuid.uuid4(),
        pet.id,
        start,
        start + timedelta(minutes=30),
        state,
        4500,
        "EUR",
        NOW - timedelta(days=30),
    )
    store.bookings[b.id] = b
    return b


async def test_get_update_with_mask_and_etag(world):
    h, store, owner, pet = world
    got = await h.pets.get_pet(owner, pet.id)
    assert (got.name, got.etag) == ("Rex", "p1")
    draft = PetDraft(
        paths=["name", "breed", "birth_date", "weight_kg", "notes"],
        name=" Rexy ",
        breed="Beagle",
        birth_date="2024-02-29",
        weight_kg=12.3456,
        notes="shy with cats",
        species="CAT",  # not in the mask: ignored
    )
    updated = await h.pets.update_pet(owner, pet.id, draft, "p1")
    assert (updated.name, updated.breed, updated.birth_date, updated.weight_grams, updated.notes) == (
        "Rexy",
        "Beagle",
        date(2024, 2, 29),
        12346,
        "shy with cats",
    )
    assert updated.species == "DOG" and updated.etag == "p2" and store.pets[pet.id] == updated
    with pytest.raises(EtagMismatch):
        await h.pets.update_pet(owner, pet.id, PetDraft(paths=["name"], name="Old"), "p1")
    # an empty value in the mask clears the field
    cleared = await h.pets.update_pet(owner, pet.id, PetDraft(paths=["breed", "weight_kg", "notes"]), "")
    assert (cleared.breed, cleared.weight_grams, cleared.notes) == (None, None, "")


@pytest.mark.parametrize(
    ("draft", "field", "reason"),
    [
        (PetDraft(paths=[]), "update_mask", "UPDATE_MASK_EMPTY"),
        (PetDraft(paths=["owner_user_id"]), "update_mask", "UPDATE_MASK_INVALID"),
        (PetDraft(paths=["name"], name="  "), "pet.name", "REQUIRED"),
        (PetDraft(paths=["name"], name="x" * 61), "pet.name", "TOO_LONG"),
        (PetDraft(paths=["birth_date"], birth_date="2031-01-01"), "pet.birth_date", "DATE_IN_FUTURE"),
        (PetDraft(paths=["birth_date"], birth_date="2030-02-30"), "pet.birth_date", "DATE_INVALID"),
        (PetDraft(paths=["species"]), "pet.species", "REQUIRED"),
    ],
)
async def test_update_refuses_bad_input_with_a_field_violation(world, draft, field, reason):
    h, store, owner, pet = world
    with pytest.raises(InvalidArgument) as exc:
        await h.pets.update_pet(owner, pet.id, draft, "")
    assert (exc.value.violations[0].field, exc.value.violations[0].reason) == (field, reason)
    assert store.pets[pet.id].version == 1


async def test_species_changes_only_while_the_pet_has_no_booking(world):
    h, store, owner, pet = world
    assert (
        await h.pets.update_pet(owner, pet.id, PetDraft(paths=["species"], species="CAT"), "")
    ).species == "CAT"
    book(store, pet, NOW - timedelta(days=3), BookingState.COMPLETED)
    with pytest.raises(PetHasBookings):
        await h.pets.update_pet(owner, pet.id, PetDraft(paths=["species"], species="DOG"), "")
    # the same species, or other fields, still change
    same = await h.pets.update_pet(
        owner, pet.id, PetDraft(paths=["species", "name"], species="CAT", name="Tom"), ""
    )
    assert (same.species, same.name) == ("CAT", "Tom")


async def test_archive_refused_with_bookings_to_come_then_idempotent(world):
    h, store, owner, pet = world
    book(store, pet, NOW - timedelta(days=1))  # past: no obstacle
    book(store, pet, NOW + timedelta(days=5), BookingState.CANCELLED)  # cancelled: no obstacle
    late, soon = book(store, pet, NOW + timedelta(days=9)), book(store, pet, NOW + timedelta(days=2))
    with pytest.raises(PetHasFutureBookings) as exc:
        await h.pets.archive_pet(owner, pet.id, "")
    assert exc.value.metadata["booking_ids"] == f"{soon.id},{late.id}"
    assert str(soon.id) in exc.value.message and not store.pets[pet.id].archived
    for b in (late, soon):
        store.bookings[b.id].state = BookingState.CANCELLED
    with pytest.raises(EtagMismatch):
        await h.pets.archive_pet(owner, pet.id, "p7")
    archived = await h.pets.archive_pet(owner, pet.id, "p1")
    assert archived.archived and archived.archived_at == NOW and archived.etag == "p2"
    assert await h.pets.archive_pet(owner, pet.id, "p1") == archived  # a retry answers the same
    assert (await h.pets.list_pets(owner, 10, ""))[0] == []
    assert (await h.pets.get_pet(owner, pet.id)).archived  # still readable by id
    with pytest.raises(PetArchived):
        await h.pets.update_pet(owner, pet.id, PetDraft(paths=["name"], name="Zed"), "")


async def test_another_owners_pet_is_not_found(world):
    h, store, _owner, pet = world
    stranger = uuid.uuid4()
    with pytest.raises(PetNotFound):
        await h.pets.get_pet(stranger, pet.id)
    with pytest.raises(PetNotFound):
        await h.pets.update_pet(stranger, pet.id, PetDraft(paths=["name"], name="Mine"), "")
    with pytest.raises(PetNotFound):
        await h.pets.archive_pet(stranger, pet.id, "")
    with pytest.raises(PetNotFound):
        await h.pets.get_pet(stranger, uuid.uuid4())
    assert store.pets[pet.id].name == "Rex" and not store.pets[pet.id].archived
