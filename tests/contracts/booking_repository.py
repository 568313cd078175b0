"""The contract of booking's repository port (booking_svc.ports.BookingRepository), written once and run
against the hand-written fake (tests/unit/test_contract_booking.py) and the SQL adapter on the embedded
PostgreSQL (tests/integration/test_contract_booking.py).

Every method of the port, its edge cases and the races the schema decides: the exclusion constraint
over (service, unit, time range) for active reservations, the idempotency keys, savepoints that leave
the transaction usable, outbox rows written in the transaction of their change, the catalog version.

Rows get fresh ids in every test (the PostgreSQL run shares one schema across the module): queries
that read the whole table (expiry, refund claims, open refunds, the clinic list) are checked on the
test's own rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from booking_svc.domain import (
    Actor,
    Assignment,
    Booking,
    BookingState,
    CancellationPolicy,
    Claim,
    ClaimKind,
    Clinic,
    Closure,
    DuplicateRequest,
    HoldAttempt,
    HoldOptions,
    Interval,
    Pet,
    Provider,
    RefundState,
    Reservation,
    ReservationState,
    Resource,
    ScheduledAttempt,
    Service,
    ServiceNeed,
    TimeOff,
)
from booking_svc.ports import OutboxEvent, UnitOfWork

T0 = datetime(2031, 3, 3, 9, tzinfo=UTC)  # the reservations' clock: every time below is given, never read
DAY = T0 + timedelta(days=7)  # a slot day
TTL = timedelta(minutes=10)
HALF_HOUR = timedelta(minutes=30)


# the outbox rows with these event ids, as committed
OutboxReader = Callable[[list[uuid.UUID]], Awaitable[list[OutboxEvent]]]
# waits until a task is blocked on a lock another transaction holds (or has finished)
BlockedWaiter = Callable[["asyncio.Task[Any]"], Awaitable[None]]
# what the outbox relay does to the rows written so far: marks them sent
Relay = Callable[[], Awaitable[None]]


def new_clinic(name: str | None = None, **kw: Any) -> Clinic:
    return Clinic(
        uuid.uuid4(),
        name or f"Clinic {uuid.uuid4().hex[:8]}",
        "Europe/Berlin",
        {"mon": [Interval(time(9), time(12)), Interval(time(13), time(17))]},
        **kw,
    )


def new_service(clinic: Clinic, capacity: int = 1, name: str = "Check-up", **kw: Any) -> Service:
    return Service(uuid.uuid4(), clinic.id, name, 30, 4500, "EUR", capacity=capacity, **kw)


def new_pet(owner: uuid.UUID | None = None, name: str = "Rex", created_at: datetime = T0) -> Pet:
    return Pet(uuid.uuid4(), owner or uuid.uuid4(), name, "DOG", "Beagle", date(2024, 5, 1), created_at)


def new_hold(
    svc: Service,
    pet: Pet,
    *,
    start: datetime = DAY,
    length: timedelta = HALF_HOUR,
    unit: int = 1,
    now: datetime = T0,
    ttl: timedelta = TTL,
    request_id: str | None = None,
    owner: uuid.UUID | None = None,
    state: ReservationState = ReservationState.HELD,
) -> Reservation:
    return Reservation(
        lock_id=uuid.uuid4(),
        owner_user_id=owner or pet.owner_user_id,
        owner_email="olga@example.test",
        owner_name="Olga",
        owner_locale="de-AT",
        request_id=request_id or uuid.uuid4().hex,
        request_hash="f" * 64,
        service_id=svc.id,
        clinic_id=svc.clinic_id,
        pet_id=pet.id,
        unit=unit,
        start=start,
        end=start + length,
        state=state,
        expires_at=now + ttl,
        amount_minor=svc.price_minor,
        currency=svc.currency,
        created_at=now,
    )


def new_event(booking: Booking) -> OutboxEvent:
    return OutboxEvent(
        uuid.uuid4(),
        "booking.created",
        str(booking.id),
        "dev.petpro.booking.created.v1",
        b"payload",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )


def in_own_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """A concurrent caller: its own task and context (a task holds one pooled connection at a time)."""
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())


class BookingRepositoryContract:
    """Subclasses provide the fixtures: ``uow`` (transactions), ``read`` (the read-only connection the
    use cases read through), ``outbox`` and ``blocked``."""

    ROW_LOCKS = True  # whether a transaction's row lock makes another wait (False: the fake)

    @pytest.fixture
    def uow(self) -> UnitOfWork:
        raise NotImplementedError

    @pytest.fixture
    def read(self) -> UnitOfWork:
        raise NotImplementedError

    @pytest.fixture
    def outbox(self) -> OutboxReader:
        raise NotImplementedError

    @pytest.fixture
    def blocked(self) -> BlockedWaiter:
        raise NotImplementedError

    @pytest.fixture
    def relayed(self) -> Relay:
        raise NotImplementedError

    # -- helpers: rows made through the port itself ------------------------------------------------
    @staticmethod
    async def catalog(uow: UnitOfWork, capacity: int = 1, **svc: Any) -> tuple[Clinic, Service]:
        clinic = new_clinic()
        service = new_service(clinic, capacity, **svc)
        async with uow() as repo:
            await repo.add_clinic(clinic)
            await repo.add_service(service)
        return clinic, service

    @staticmethod
    async def pet(uow: UnitOfWork, owner: uuid.UUID | None = None) -> Pet:
        pet = new_pet(owner)
        async with uow() as repo:
            await repo.add_pet(pet)
        return pet

    @classmethod
    async def pets(cls, uow: UnitOfWork, n: int) -> list[Pet]:
        """``n`` pets of one owner: a pet is never in two places at once (claims_pet_free), so the
        overlapping holds of a capacity test each bring their own."""
        first = await cls.pet(uow)
        return [first] + [await cls.pet(uow, first.owner_user_id) for _ in range(n - 1)]

    @staticmethod
    async def hold(read: UnitOfWork, res: Reservation, capacity: int = 1) -> HoldAttempt:
        """ReserveSlot's statement at the catalog's current version, on its own (as the use case runs it)."""
        async with read() as repo:
            return await repo.hold(res, capacity, await repo.catalog_version())

    @classmethod
    async def held(cls, read: UnitOfWork, *holds: Reservation, capacity: int = 1) -> list[Reservation]:
        """``holds`` held, each on the unit the statement picked."""
        out = []
        for res in holds:
            attempt = await cls.hold(read, res, capacity)
            assert attempt.inserted, attempt
            assert attempt.unit is not None
            out.append(replace(res, unit=attempt.unit))
        return out

    @staticmethod
    async def state(uow: UnitOfWork, lock_id: uuid.UUID) -> ReservationState:
        async with uow() as repo:
            res = await repo.reservation(lock_id)
        assert res is not None
        return res.state

    @staticmethod
    async def set_state(uow: UnitOfWork, lock_id: uuid.UUID, state: ReservationState) -> None:
        async with uow() as repo:
            await repo.set_reservation_state(lock_id, state, T0)

    @classmethod
    async def booked(
        cls,
        uow: UnitOfWork,
        svc: Service,
        pet: Pet,
        start: datetime = DAY,
        *,
        now: datetime = T0,
        event: OutboxEvent | None = None,
    ) -> Booking:
        """A booking of ``pet`` at ``start`` as ConfirmBooking makes one (its reservation CONFIRMED)."""
        [res] = await cls.held(uow, new_hold(svc, pet, start=start, now=now), capacity=svc.capacity)
        async with uow() as repo:
            found = await repo.lock_for_confirm(res.lock_id)
            assert found is not None
            booking = Booking.confirm(found[0], uuid.uuid4(), now, svc.policy)
            await repo.confirm_booking(booking, event or new_event(booking))
        return booking

    # -- the unit of work ------------------------------------------------------------------------
    async def test_a_unit_of_work_commits_on_exit_and_rolls_back_on_an_error(self, uow: UnitOfWork) -> None:
        kept, dropped = new_pet(), new_pet()
        async with uow() as repo:
            await repo.add_pet(kept)
        with pytest.raises(RuntimeError):
            async with uow() as repo:
                await repo.add_pet(dropped)
                assert await repo.pet(dropped.id) is not None  # seen inside its own transaction
                raise RuntimeError("abort")
        async with uow() as repo:
            assert await repo.pet(kept.id) == kept
            assert await repo.pet(dropped.id) is None

    # -- catalog ---------------------------------------------------------------------------------
    async def test_a_clinic_comes_back_with_the_calendar_that_has_not_passed(self, uow: UnitOfWork) -> None:
        """Closures and day overrides that ended more than two days ago (every time zone's "today") are
        left out; the rest come with the clinic, closures by start date."""
        today = datetime.now(UTC).date()
        clinic = new_clinic(address="Main St 1", phone="+49 30 1", email="vet@example.test")
        later = Closure(
            uuid.uuid4(), clinic.id, today + timedelta(days=20), today + timedelta(days=21), "fair"
        )
        soon = Closure(uuid.uuid4(), clinic.id, today - timedelta(days=5), today - timedelta(days=2), "works")
        passed = Closure(uuid.uuid4(), clinic.id, today - timedelta(days=9), today - timedelta(days=3))
        short = [Interval(time(9), time(12))]
        async with uow() as repo:
            assert await repo.add_clinic(clinic) == clinic.id
            for closure in (later, soon, passed):
                await repo.add_closure(closure)
            await repo.put_override(clinic.id, today + timedelta(days=3), short)
            await repo.put_override(clinic.id, today - timedelta(days=2), [])
            await repo.put_override(clinic.id, today - timedelta(days=3), short)
        async with uow() as repo:
            got = await repo.clinic(clinic.id)
            assert await repo.clinic(uuid.uuid4()) is None
        assert got is not None
        assert (got.name, got.time_zone, got.address, got.phone, got.email, got.version) == (
            clinic.name,
            "Europe/Berlin",
            "Main St 1",
            "+49 30 1",
            "vet@example.test",
            1,
        )
        assert got.opening_hours == clinic.opening_hours
        assert got.reminder_offsets_minutes == (2880, 120)
        assert got.closures == [soon, later]
        assert got.overrides == {today + timedelta(days=3): short, today - timedelta(days=2): []}

    async def test_a_clinic_keeps_its_reminder_offsets(self, uow: UnitOfWork) -> None:
        clinic = new_clinic(reminder_offsets_minutes=(1440, 60, 15))
        async with uow() as repo:
            await repo.add_clinic(clinic)
        async with uow() as repo:
            got = await repo.clinic(clinic.id)
        assert got is not None and got.reminder_offsets_minutes == (1440, 60, 15)

    async def test_a_clinic_keeps_its_locale_and_a_save_changes_or_clears_it(self, uow: UnitOfWork) -> None:
        clinic, unknown = new_clinic(locale="de-DE"), new_clinic()
        async with uow() as repo:
            await repo.add_clinic(clinic)
            await repo.add_clinic(unknown)
        async with uow() as repo:
            got, other = await repo.clinic(clinic.id, for_update=True), await repo.clinic(unknown.id)
            assert got is not None and other is not None
            assert (got.locale, other.locale) == ("de-DE", "")
            got.locale = "fr-FR"
            await repo.save_clinic(got)
        async with uow() as repo:
            got = await repo.clinic(clinic.id, for_update=True)
            assert got is not None and got.locale == "fr-FR"
            got.locale = ""
            await repo.save_clinic(got)
        async with uow() as repo:
            got = await repo.clinic(clinic.id)
        assert got is not None and got.locale == ""

    async def test_clinics_are_listed_by_name_then_id_a_page_at_a_time(self, uow: UnitOfWork) -> None:
        prefix = f"zz-contract-{uuid.uuid4().hex}-"  # nobody else's name sorts among these
        made = [new_clinic(prefix + name) for name in ("b", "a", "c")]
        async with uow() as repo:
            for clinic in made:
                await repo.add_clinic(clinic)
        async with uow() as repo:
            first = await repo.list_clinics((prefix, str(uuid.UUID(int=0))), 2)
            second = await repo.list_clinics((first[-1].name, str(first[-1].id)), 2)
        assert [c.name for c in first] == [prefix + "a", prefix + "b"]
        assert second[0].name == prefix + "c"

    async def test_a_used_clinic_request_id_returns_the_first_clinic_and_inserts_nothing(
        self, uow: UnitOfWork
    ) -> None:
        key = uuid.uuid4()
        first, retry = new_clinic(), new_clinic()
        async with uow() as repo:
            assert await repo.add_clinic(first, key) == first.id
        async with uow() as repo:
            assert await repo.add_clinic(retry, key) == first.id
            assert await repo.clinic(retry.id) is None

    async def test_request_ids_of_clinics_and_of_services_are_kept_apart(self, uow: UnitOfWork) -> None:
        """One key per resource kind: a clinic's request id used for a service creates the service."""
        key = uuid.uuid4()
        clinic = new_clinic()
        svc = new_service(clinic)
        async with uow() as repo:
            await repo.add_clinic(clinic, key)
            assert await repo.add_service(svc, key) == svc.id
        async with uow() as repo:
            assert await repo.service(svc.id) is not None

    async def test_save_clinic_writes_profile_and_hours_and_bumps_the_version(self, uow: UnitOfWork) -> None:
        today = datetime.now(UTC).date()
        clinic = new_clinic(reminder_offsets_minutes=(60,))
        closure = Closure(uuid.uuid4(), clinic.id, today + timedelta(days=1), today + timedelta(days=1))
        async with uow() as repo:
            await repo.add_clinic(clinic)
            await repo.add_closure(closure)
        async with uow() as repo:
            loaded = await repo.clinic(clinic.id, for_update=True)
            assert loaded is not None
            loaded.name, loaded.time_zone, loaded.email = "Renamed", "Europe/Vienna", "new@example.test"
            loaded.address, loaded.phone = "New St 2", "+43 1"
            loaded.opening_hours = {"tue": [Interval(time(8), time(0, 0))]}  # until midnight
            await repo.save_clinic(loaded)
            assert loaded.version == 2
        async with uow() as repo:
            got = await repo.clinic(clinic.id)
        assert got is not None
        assert (got.name, got.time_zone, got.email, got.address, got.phone, got.version) == (
            "Renamed",
            "Europe/Vienna",
            "new@example.test",
            "New St 2",
            "+43 1",
            2,
        )
        assert got.opening_hours == {"tue": [Interval(time(8), time(0, 0))]}
        assert got.closures == [closure] and got.reminder_offsets_minutes == (60,)

    async def test_services_are_listed_by_name_without_the_archived_ones(self, uow: UnitOfWork) -> None:
        clinic = new_clinic()
        policy = CancellationPolicy(full_refund_hours=48, late_refund_percent=25, reschedule_cutoff_hours=6)
        dental = new_service(
            clinic,
            3,
            "Dental",
            description="Teeth",
            species_allowed=("DOG", "CAT"),
            buffer_after_minutes=10,
            min_notice_minutes=60,
            max_horizon_days=30,
            policy=policy,
        )
        checkup, gone = new_service(clinic, name="Check-up"), new_service(clinic, name="Archived")
        async with uow() as repo:
            await repo.add_clinic(clinic)
            for svc in (dental, checkup, gone):
                await repo.add_service(svc)
            await repo.save_service(gone, archive_at=T0)
        async with uow() as repo:
            page = await repo.list_services(clinic.id, None, 10)
            after = await repo.list_services(clinic.id, (page[0].name, str(page[0].id)), 10)
            found = await repo.service_with_clinic(dental.id)
            assert await repo.service(uuid.uuid4()) is None
            assert await repo.service_with_clinic(uuid.uuid4()) is None
            archived = await repo.service(gone.id)
        assert [s.name for s in page] == ["Check-up", "Dental"] and [s.name for s in after] == ["Dental"]
        assert page[1] == dental
        assert found is not None and found[0] == dental and found[1].id == clinic.id
        assert archived is not None and archived.archived and not archived.bookable

    async def test_a_used_service_request_id_returns_the_first_service(self, uow: UnitOfWork) -> None:
        key = uuid.uuid4()
        clinic = new_clinic()
        first, retry = new_service(clinic), new_service(clinic)
        async with uow() as repo:
            await repo.add_clinic(clinic)
            assert await repo.add_service(first, key) == first.id
        async with uow() as repo:
            assert await repo.add_service(retry, key) == first.id
            assert await repo.service(retry.id) is None

    async def test_save_service_writes_every_field_and_bumps_the_version(self, uow: UnitOfWork) -> None:
        _, svc = await self.catalog(uow)
        async with uow() as repo:
            loaded = await repo.service(svc.id, for_update=True)
            assert loaded is not None
            loaded.name, loaded.capacity, loaded.price_minor, loaded.active = "Long check-up", 2, 6000, False
            loaded.policy = CancellationPolicy(full_refund_hours=12)
            await repo.save_service(loaded)
            assert loaded.version == 2
        async with uow() as repo:
            got = await repo.service(svc.id)
        assert got is not None
        assert (got.name, got.capacity, got.price_minor, got.active, got.archived, got.version) == (
            "Long check-up",
            2,
            6000,
            False,
            False,
            2,
        )
        assert got.policy == CancellationPolicy(full_refund_hours=12)

    async def test_closures_are_listed_by_start_a_page_at_a_time_and_deleted_per_clinic(
        self, uow: UnitOfWork
    ) -> None:
        today = datetime.now(UTC).date()
        clinic, other = new_clinic(), new_clinic()
        made = [
            Closure(uuid.uuid4(), clinic.id, today + timedelta(days=d), today + timedelta(days=d + 1))
            for d in (9, 3, 6)
        ]
        ended = Closure(uuid.uuid4(), clinic.id, today - timedelta(days=10), today - timedelta(days=3))
        async with uow() as repo:
            await repo.add_clinic(clinic)
            await repo.add_clinic(other)
            for closure in (*made, ended):
                await repo.add_closure(closure)
        async with uow() as repo:
            first = await repo.list_closures(clinic.id, None, 2)
            rest = await repo.list_closures(
                clinic.id, (first[-1].start_date.isoformat(), str(first[-1].id)), 2
            )
            assert await repo.list_closures(other.id, None, 10) == []
            assert await repo.list_closures(uuid.uuid4(), None, 10) == []
        assert [c.start_date for c in first + rest] == [today + timedelta(days=d) for d in (3, 6, 9)]
        async with uow() as repo:
            assert not await repo.delete_closure(other.id, made[0].id)  # another clinic's
            assert await repo.delete_closure(clinic.id, made[0].id)
            assert not await repo.delete_closure(clinic.id, made[0].id)
            assert not await repo.delete_closure(uuid.uuid4(), uuid.uuid4())
        async with uow() as repo:
            assert [c.id for c in await repo.list_closures(clinic.id, None, 10)] == [made[1].id, made[2].id]

    async def test_a_day_override_is_replaced_and_deleted(self, uow: UnitOfWork) -> None:
        day = datetime.now(UTC).date() + timedelta(days=4)
        clinic = new_clinic()
        async with uow() as repo:
            await repo.add_clinic(clinic)
            await repo.put_override(clinic.id, day, [Interval(time(9), time(10))])
            await repo.put_override(
                clinic.id, day, [Interval(time(14), time(15)), Interval(time(16), time(17))]
            )
        async with uow() as repo:
            got = await repo.clinic(clinic.id)
            assert got is not None
            assert got.overrides == {day: [Interval(time(14), time(15)), Interval(time(16), time(17))]}
            assert await repo.delete_override(clinic.id, day)
            assert not await repo.delete_override(clinic.id, day)
            assert not await repo.delete_override(uuid.uuid4(), day)
        async with uow() as repo:
            got = await repo.clinic(clinic.id)
        assert got is not None and got.overrides == {}

    async def test_the_catalog_version_moves_with_the_transaction_that_bumps_it(
        self, uow: UnitOfWork
    ) -> None:
        async with uow() as repo:
            before = await repo.catalog_version()
            await repo.bump_catalog()
            assert await repo.catalog_version() == before + 1  # its own transaction sees it at once
        with pytest.raises(RuntimeError):
            async with uow() as repo:
                await repo.bump_catalog()
                raise RuntimeError("abort")  # rolled back: no reader ever sees this version
        async with uow() as repo:
            assert await repo.catalog_version() == before + 1

    # -- pets ------------------------------------------------------------------------------------
    async def test_pets_come_back_as_stored_and_are_listed_per_owner_by_creation(
        self, uow: UnitOfWork
    ) -> None:
        owner = uuid.uuid4()
        pets = [new_pet(owner, name, T0 + timedelta(minutes=m)) for name, m in (("B", 2), ("A", 1), ("C", 3))]
        plain = Pet(uuid.uuid4(), owner, "D", "CAT", None, None, T0 + timedelta(minutes=4))
        async with uow() as repo:
            for pet in (*pets, plain, new_pet()):
                await repo.add_pet(pet)
        async with uow() as repo:
            assert await repo.pet(pets[0].id) == pets[0]
            assert await repo.pet(plain.id) == plain
            assert await repo.pet(uuid.uuid4()) is None
            first = await repo.list_pets(owner, None, 2)
            rest = await repo.list_pets(owner, (first[-1].created_at.isoformat(), str(first[-1].id)), 10)
        assert [p.name for p in first] == ["A", "B"] and [p.name for p in rest] == ["C", "D"]

    async def test_a_saved_pet_comes_back_changed_and_an_archived_one_leaves_the_list(
        self, uow: UnitOfWork
    ) -> None:
        owner = uuid.uuid4()
        pet, other = new_pet(owner, "A"), new_pet(owner, "B", T0 + timedelta(minutes=1))
        async with uow() as repo:
            await repo.add_pet(pet)
            await repo.add_pet(other)
        changed = replace(
            pet,
            name="Rexy",
            species="CAT",
            breed=None,
            birth_date=None,
            weight_grams=12345,
            notes="shy",
            version=2,
        )
        async with uow() as repo:
            locked = await repo.pet(pet.id, for_update=True)
            assert locked == pet
            await repo.save_pet(changed)
        archived = replace(other, archived_at=T0 + timedelta(hours=1), version=2)
        async with uow() as repo:
            await repo.save_pet(archived)
        async with uow() as repo:
            assert await repo.pet(pet.id) == changed
            assert await repo.pet(other.id) == archived  # still found by id
            assert [p.id for p in await repo.list_pets(owner, None, 10)] == [pet.id]

    async def test_a_pets_bookings_and_the_ones_to_come(self, uow: UnitOfWork) -> None:
        _, svc = await self.catalog(uow)
        pet, idle = await self.pet(uow), await self.pet(uow)
        first = await self.booked(uow, svc, pet, DAY)
        later = await self.booked(uow, svc, pet, DAY + timedelta(hours=2))
        cancelled = await self.booked(uow, svc, pet, DAY + timedelta(hours=1))
        async with uow() as repo:
            await repo.save_booking_change(
                replace(
                    cancelled, state=BookingState.CANCELLED, cancelled_at=T0, version=cancelled.version + 1
                )
            )
        async with uow() as repo:
            assert await repo.pet_booked(pet.id) and not await repo.pet_booked(idle.id)
            assert await repo.future_bookings_of_pet(pet.id, T0) == [first.id, later.id]
            assert await repo.future_bookings_of_pet(pet.id, DAY) == [later.id]  # started: not to come
            assert await repo.future_bookings_of_pet(idle.id, T0) == []

    async def test_an_owners_rows_are_found_then_anonymised_after_the_relay_with_the_event_once(
        self, uow: UnitOfWork, read: UnitOfWork, relayed: Relay
    ) -> None:
        _, svc = await self.catalog(uow, capacity=2)
        owner = uuid.uuid4()
        pet, other = await self.pet(uow, owner), await self.pet(uow)
        first = await self.booked(uow, svc, pet, DAY)
        later = await self.booked(uow, svc, pet, DAY + timedelta(hours=1))
        kept = await self.booked(uow, svc, other, DAY)
        [hold] = await self.held(read, new_hold(svc, pet, start=DAY + timedelta(hours=2)), capacity=2)
        event = uuid.uuid4()
        async with uow() as repo:
            assert await repo.owner_future_bookings(owner, T0) == [first.id, later.id]
            assert await repo.owner_future_bookings(owner, DAY) == [later.id]
            assert await repo.owner_held_reservations(owner) == [hold.lock_id]
            assert await repo.owner_unsent_events(owner) == 2  # the two booking.created rows
            data = await repo.owner_export(owner)
        assert [p["name"] for p in data["pets"]] == ["Rex"]
        assert {b["id"] for b in data["bookings"]} == {str(first.id), str(later.id)}
        assert len(data["reservations"]) == 3 and all(r["owner_email"] for r in data["reservations"])
        await relayed()
        async with uow() as repo:
            assert await repo.owner_unsent_events(owner) == 0
            assert not await repo.event_processed(event)
            assert await repo.record_processed(event, "account.deleted", T0)
            await repo.erase_owner(owner, T0)
        async with uow() as repo:
            assert await repo.event_processed(event)
            assert not await repo.record_processed(event, "account.deleted", T0)  # a redelivery
            gone = await repo.pet(pet.id)
            assert gone is not None and (gone.name, gone.breed, gone.birth_date, gone.archived_at) == (
                "",
                None,
                None,
                T0,
            )
            data = await repo.owner_export(owner)
            assert {(r["owner_email"], r["owner_name"]) for r in data["reservations"]} == {("", "")}
            assert {b["amount_minor"] for b in data["bookings"]} == {
                first.amount_minor
            }  # kept for accounting
            assert (await repo.pet(other.id)) == other and (await repo.booking(kept.id)) is not None
            assert (await repo.owner_export(other.owner_user_id))["reservations"][0]["owner_email"]

    async def test_an_archived_pet_gets_no_hold_as_if_it_did_not_exist(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        async with uow() as repo:
            await repo.save_pet(replace(pet, archived_at=T0, version=2))
        attempt = await self.hold(read, new_hold(svc, pet), 1)
        assert (attempt.pet_owner, attempt.inserted) == (None, False)

    # -- reservations: ReserveSlot's statement ---------------------------------------------------
    async def test_a_reservation_comes_back_as_stored_and_by_its_request_id(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        [res] = await self.held(read, new_hold(svc, pet, request_id="req-1"))
        async with uow() as repo:
            assert await repo.reservation(res.lock_id) == res
            assert await repo.reservation_by_request(pet.owner_user_id, "req-1") == res
            assert await repo.reservation_by_request(uuid.uuid4(), "req-1") is None
            assert await repo.reservation(uuid.uuid4()) is None

    async def test_a_hold_takes_the_lowest_unit_free_of_live_reservations_over_its_range(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow, capacity=2)
        _, other_svc = await self.catalog(uow)
        pet, pet2, pet3 = await self.pets(uow, 3)
        first, second = await self.held(read, new_hold(svc, pet), new_hold(svc, pet2), capacity=2)
        assert (first.unit, second.unit) == (1, 2)
        refused = new_hold(svc, pet3, start=DAY + timedelta(minutes=15))
        full = await self.hold(read, refused, 2)
        assert (full.earlier, full.pet_owner, full.unit, full.inserted) == (
            False,
            pet.owner_user_id,
            None,
            False,
        )
        for free in (
            new_hold(svc, pet, start=DAY + HALF_HOUR),  # right after: ranges are [start, end)
            new_hold(svc, pet, start=DAY - HALF_HOUR),  # right before
            new_hold(other_svc, pet3),  # another service
        ):
            assert (await self.hold(read, free, svc.capacity)).unit == 1
        await self.set_state(uow, first.lock_id, ReservationState.CANCELLED)  # inactive rows never block
        again = new_hold(svc, pet)
        assert [r.unit for r in await self.held(read, again, capacity=2)] == [1]
        async with uow() as repo:
            assert await repo.reservation(refused.lock_id) is None

    async def test_a_confirmed_reservation_blocks_its_unit_whatever_its_hold_expiry(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        await self.booked(uow, svc, pet)
        attempt = await self.hold(read, new_hold(svc, pet, now=T0 + timedelta(days=1)))
        assert (attempt.unit, attempt.inserted) == (None, False)

    async def test_a_lapsed_hold_never_blocks_a_hold_the_statement_expires_it(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        [lapsed] = await self.held(read, new_hold(svc, pet))
        [after] = await self.held(read, new_hold(svc, pet, now=T0 + TTL))  # at its expiry: lapsed
        assert after.unit == lapsed.unit == 1
        assert await self.state(uow, lapsed.lock_id) == ReservationState.EXPIRED
        assert await self.state(uow, after.lock_id) == ReservationState.HELD

    async def test_a_hold_expires_lapsed_holds_only_when_one_is_in_its_way(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow, capacity=2)
        pet, pet2, pet3, pet4 = await self.pets(uow, 4)
        on_one, on_two = await self.held(
            read, new_hold(svc, pet), new_hold(svc, pet2, ttl=2 * TTL), capacity=2
        )
        await self.set_state(uow, on_one.lock_id, ReservationState.CANCELLED)
        [first] = await self.held(read, new_hold(svc, pet3, now=T0 + 2 * TTL), capacity=2)  # unit 1 is free
        assert first.unit == 1
        assert await self.state(uow, on_two.lock_id) == ReservationState.HELD  # lapsed, left to the sweeper
        [second] = await self.held(read, new_hold(svc, pet4, now=T0 + 2 * TTL), capacity=2)  # in its way
        assert second.unit == 2
        assert await self.state(uow, on_two.lock_id) == ReservationState.EXPIRED

    async def test_a_hold_inserts_nothing_for_a_used_request_id_or_anothers_pet_or_no_pet(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow, capacity=2)
        pet = await self.pet(uow)
        [first] = await self.held(read, new_hold(svc, pet, request_id="k"), capacity=2)
        again = await self.hold(read, new_hold(svc, pet, request_id="k"), 2)
        stranger = uuid.uuid4()
        theft = await self.hold(read, new_hold(svc, pet, owner=stranger), 2)
        ghost = await self.hold(read, new_hold(svc, Pet(uuid.uuid4(), stranger, "Ghost", "CAT")), 2)
        assert (again.earlier, again.unit, again.inserted) == (True, 2, False)
        assert (theft.earlier, theft.pet_owner, theft.inserted) == (False, pet.owner_user_id, False)
        assert (ghost.pet_owner, ghost.inserted) == (None, False)
        other = await self.pet(uow)  # another owner may use the same key
        await self.held(read, new_hold(svc, other, request_id="k"), capacity=2)
        async with uow() as repo:
            assert await repo.reservation_by_request(pet.owner_user_id, "k") == first

    async def test_a_refused_hold_expires_nothing(self, uow: UnitOfWork, read: UnitOfWork) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        [lapsed] = await self.held(read, new_hold(svc, pet))
        refused = await self.hold(read, new_hold(svc, pet, now=T0 + TTL, owner=uuid.uuid4()))
        assert not refused.inserted
        assert await self.state(uow, lapsed.lock_id) == ReservationState.HELD

    async def test_a_hold_inserts_nothing_once_the_catalog_moved_on(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        async with uow() as repo:
            seen = await repo.catalog_version()
            await repo.bump_catalog()
        res = new_hold(svc, pet)
        async with read() as repo:
            attempt = await repo.hold(res, svc.capacity, seen)
        assert (attempt.inserted, attempt.unit) == (False, 1) and attempt.catalog_version > seen
        async with uow() as repo:
            assert await repo.reservation(res.lock_id) is None

    async def test_of_two_holds_racing_for_the_last_unit_the_second_waits_and_inserts_nothing(
        self, uow: UnitOfWork, read: UnitOfWork, blocked: BlockedWaiter
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        first, second = new_hold(svc, pet), new_hold(svc, pet)
        held, commit = asyncio.Event(), asyncio.Event()

        async def hold_open() -> None:
            async with uow() as repo:  # the first one's transaction stays open
                assert (await repo.hold(first, 1, await repo.catalog_version())).inserted
                held.set()
                await commit.wait()  # committed only once the second waits for it

        async def race() -> HoldAttempt:
            await held.wait()
            return await self.hold(read, second)

        winner, loser = in_own_task(hold_open()), in_own_task(race())
        await held.wait()
        await blocked(loser)
        commit.set()
        await winner
        assert not (await loser).inserted
        assert (await self.hold(read, second)).unit is None  # asked again: the slot is taken
        async with uow() as repo:
            assert await repo.reservation(second.lock_id) is None

    async def test_a_retry_racing_its_first_request_inserts_nothing_then_finds_it(
        self, uow: UnitOfWork, read: UnitOfWork, blocked: BlockedWaiter
    ) -> None:
        _, svc = await self.catalog(uow, capacity=2)
        pet = await self.pet(uow)
        first, retry = new_hold(svc, pet, request_id="same"), new_hold(svc, pet, request_id="same")
        held, commit = asyncio.Event(), asyncio.Event()

        async def hold_open() -> None:
            async with uow() as repo:
                assert (await repo.hold(first, 2, await repo.catalog_version())).inserted
                held.set()
                await commit.wait()

        async def race() -> HoldAttempt:
            await held.wait()
            return await self.hold(read, retry, 2)

        winner, loser = in_own_task(hold_open()), in_own_task(race())
        await held.wait()
        await blocked(loser)
        commit.set()
        await winner
        assert not (await loser).inserted
        assert (await self.hold(read, retry, 2)).earlier

    async def test_a_hold_waits_for_the_sweeper_expiring_the_lapsed_hold_in_its_way(
        self, uow: UnitOfWork, read: UnitOfWork, blocked: BlockedWaiter
    ) -> None:
        """The expiry sweeper may be expiring the lapsed hold while ReserveSlot runs (seen once in CI as a
        409 for a free slot): the hold waits for it and takes the unit."""
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        [lapsed] = await self.held(read, new_hold(svc, pet))
        later = T0 + TTL
        swept, commit = asyncio.Event(), asyncio.Event()

        async def sweep() -> None:
            async with uow() as repo:
                assert lapsed.lock_id in await repo.expire_due(later)
                swept.set()
                await commit.wait()

        async def reserve() -> HoldAttempt:
            await swept.wait()
            return await self.hold(read, new_hold(svc, pet, now=later))

        sweeper, reserver = in_own_task(sweep()), in_own_task(reserve())
        await swept.wait()
        await blocked(reserver)
        commit.set()
        await sweeper
        assert (await reserver).inserted

    # -- confirmation, expiry, moves ------------------------------------------------------------------
    async def test_lock_for_confirm_reads_the_reservation_its_pet_and_the_catalog_version(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        [res] = await self.held(read, new_hold(svc, pet))
        async with uow() as repo:
            found = await repo.lock_for_confirm(res.lock_id)
            version = await repo.catalog_version()
            assert await repo.lock_for_confirm(uuid.uuid4()) is None
        assert found == (res, pet, version)
        booking = await self.booked(uow, svc, pet, DAY + timedelta(hours=1))
        async with uow() as repo:
            again = await repo.lock_for_confirm(booking.lock_id)
        assert again is not None
        assert (again[0].state, again[0].payment_id, again[0].booking_id) == (
            ReservationState.CONFIRMED,
            booking.payment_id,
            booking.id,
        )

    async def test_lock_for_confirm_holds_the_reservation_until_the_transaction_ends(
        self, uow: UnitOfWork, read: UnitOfWork, blocked: BlockedWaiter
    ) -> None:
        """Two deliveries of one payment confirm one after the other: the second sees the first's booking."""
        if not self.ROW_LOCKS:
            pytest.skip("no row locks: the fake's transactions never interleave inside a use case's awaits")
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        [res] = await self.held(read, new_hold(svc, pet))
        locked, commit = asyncio.Event(), asyncio.Event()
        booking = Booking.confirm(res, uuid.uuid4(), T0, svc.policy)

        async def first() -> None:
            async with uow() as repo:
                assert await repo.lock_for_confirm(res.lock_id) is not None
                locked.set()
                await commit.wait()
                await repo.confirm_booking(booking, new_event(booking))

        async def second() -> Reservation:
            await locked.wait()
            async with uow() as repo:
                found = await repo.lock_for_confirm(res.lock_id)
                assert found is not None
                return found[0]

        one, two = in_own_task(first()), in_own_task(second())
        await locked.wait()
        await blocked(two)
        commit.set()
        await one
        seen = await two
        assert (seen.state, seen.payment_id) == (ReservationState.CONFIRMED, booking.payment_id)

    async def test_try_set_state_refuses_to_reactivate_into_an_overlap_and_the_transaction_goes_on(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        [late] = await self.held(read, new_hold(svc, pet))
        later = T0 + TTL
        await self.held(read, new_hold(svc, pet, now=later))  # took the unit, expiring the lapsed hold
        payment = uuid.uuid4()
        async with uow() as repo:
            assert not await repo.try_set_state(
                late.lock_id, ReservationState.CONFIRMED, later, payment_id=payment
            )
            # the transaction is still usable: the lost reservation is failed in it
            assert await repo.try_set_state(
                late.lock_id, ReservationState.FAILED, later, payment_id=payment, failure_reason="SLOT_TAKEN"
            )
        async with uow() as repo:
            lost = await repo.reservation(late.lock_id)
        assert lost is not None
        assert (lost.state, lost.payment_id, lost.failure_reason) == (
            ReservationState.FAILED,
            payment,
            "SLOT_TAKEN",
        )

    async def test_a_lapsed_hold_still_excludes_until_it_is_expired(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        """The constraint cannot read the clock: a HELD row past its expiry keeps its unit against a
        late payment's reclaim until ``expire_overlapping`` (or the sweeper) moves it out."""
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        [paid_late] = await self.held(read, new_hold(svc, pet))
        async with uow() as repo:
            assert paid_late.lock_id in await repo.expire_due(T0 + TTL)
        [lapsed] = await self.held(read, new_hold(svc, pet, now=T0 + TTL))
        later = T0 + 2 * TTL
        async with uow() as repo:
            assert not await repo.try_set_state(paid_late.lock_id, ReservationState.CONFIRMED, later)
            assert await repo.expire_overlapping(svc.id, DAY, DAY + HALF_HOUR, later) == 1
            assert await repo.expire_overlapping(svc.id, DAY, DAY + HALF_HOUR, later) == 0
            assert await repo.try_set_state(paid_late.lock_id, ReservationState.CONFIRMED, later)
        assert await self.state(uow, lapsed.lock_id) == ReservationState.EXPIRED
        assert await self.state(uow, paid_late.lock_id) == ReservationState.CONFIRMED

    async def test_expire_overlapping_moves_only_lapsed_holds_of_that_service_and_range(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow, capacity=3)
        _, other_svc = await self.catalog(uow)
        pet, pet2, pet3 = await self.pets(uow, 3)
        lapsed, live = await self.held(
            read, new_hold(svc, pet), new_hold(svc, pet2, ttl=timedelta(hours=2)), capacity=3
        )
        elsewhere, other = await self.held(
            read, new_hold(svc, pet, start=DAY + timedelta(hours=2)), new_hold(other_svc, pet3)
        )
        async with uow() as repo:
            assert await repo.expire_overlapping(svc.id, DAY, DAY + HALF_HOUR, T0 + TTL) == 1  # at expiry
        states = [await self.state(uow, r.lock_id) for r in (lapsed, live, elsewhere, other)]
        assert states == [ReservationState.EXPIRED] + [ReservationState.HELD] * 3

    async def test_expire_due_expires_lapsed_holds_oldest_first_up_to_the_limit(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow, capacity=4)
        pet, pet2, pet3 = await self.pets(uow, 3)
        async with uow() as repo:
            await repo.expire_due(T0)  # whatever else had lapsed by then (other tests' rows)
        oldest, older, live = await self.held(
            read,
            new_hold(svc, pet, ttl=timedelta(minutes=1)),
            new_hold(svc, pet2, ttl=timedelta(minutes=2)),
            new_hold(svc, pet3, ttl=timedelta(hours=1)),
            capacity=4,
        )
        booked = await self.booked(uow, svc, pet, DAY + timedelta(hours=2))
        async with uow() as repo:
            first = await repo.expire_due(T0 + timedelta(minutes=5), limit=1)
        async with uow() as repo:
            rest = await repo.expire_due(T0 + timedelta(minutes=5))
        assert first == [oldest.lock_id] and older.lock_id in rest and live.lock_id not in rest
        assert booked.lock_id not in rest
        assert await self.state(uow, older.lock_id) == ReservationState.EXPIRED
        assert await self.state(uow, live.lock_id) == ReservationState.HELD

    async def test_active_counts_are_the_ranges_of_live_reservations(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow, capacity=4)
        pet, pet2, pet3, pet4 = await self.pets(uow, 4)
        await self.held(
            read,
            new_hold(svc, pet, ttl=timedelta(hours=1)),  # live
            new_hold(svc, pet2),  # lapsed at T0 + TTL
            capacity=4,
        )
        [cancelled] = await self.held(read, new_hold(svc, pet3), capacity=4)
        await self.set_state(uow, cancelled.lock_id, ReservationState.CANCELLED)
        await self.held(
            read, new_hold(svc, pet, start=DAY + timedelta(hours=1), ttl=timedelta(hours=1)), capacity=4
        )
        booking = await self.booked(uow, svc, pet4, DAY + timedelta(minutes=15))
        async with uow() as repo:
            ranges = await repo.active_counts(svc.id, DAY, DAY + timedelta(minutes=45), T0 + TTL)
        assert sorted(ranges) == [(DAY, DAY + HALF_HOUR), (booking.start, booking.end)]

    async def test_set_reservation_state_frees_the_unit(self, uow: UnitOfWork, read: UnitOfWork) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        booking = await self.booked(uow, svc, pet)
        await self.set_state(uow, booking.lock_id, ReservationState.CANCELLED)
        assert await self.state(uow, booking.lock_id) == ReservationState.CANCELLED
        await self.held(read, new_hold(svc, pet))

    async def test_a_move_takes_the_lowest_free_unit_of_the_new_range_or_changes_nothing(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        _, svc = await self.catalog(uow, capacity=2)
        pet, pet2, pet3 = await self.pets(uow, 3)
        booking = await self.booked(uow, svc, pet)
        target = DAY + timedelta(hours=1)
        await self.booked(uow, svc, pet2, target)
        await self.booked(uow, svc, pet3, target)  # the target slot is full
        async with uow() as repo:
            assert await repo.move_reservation(booking.lock_id, 2, target, target + HALF_HOUR, T0) is None
            # overlapping its own range is no conflict, and the transaction goes on after a refusal
            near = DAY + timedelta(minutes=15)
            assert await repo.move_reservation(booking.lock_id, 2, near, near + HALF_HOUR, T0) == 1
        later = DAY + timedelta(hours=2)
        [lapsed] = await self.held(
            read, new_hold(svc, pet2, start=later, ttl=timedelta(minutes=1)), capacity=2
        )
        [live] = await self.held(read, new_hold(svc, pet3, start=later, ttl=timedelta(hours=1)), capacity=2)
        async with uow() as repo:
            assert await repo.move_reservation(booking.lock_id, 2, later, later + HALF_HOUR, T0 + TTL) == 1
            moved = await repo.reservation(booking.lock_id)
            assert await repo.active_counts(svc.id, DAY, DAY + timedelta(minutes=45), T0) == []  # freed
        assert moved is not None and (moved.unit, moved.start, moved.end) == (1, later, later + HALF_HOUR)
        assert (lapsed.unit, live.unit) == (1, 2)
        assert await self.state(uow, lapsed.lock_id) == ReservationState.EXPIRED

    async def test_a_move_waits_for_the_sweeper_expiring_the_lapsed_hold_in_its_way(
        self, uow: UnitOfWork, read: UnitOfWork, blocked: BlockedWaiter
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        booking = await self.booked(uow, svc, pet)
        target = DAY + timedelta(hours=1)
        [lapsed] = await self.held(read, new_hold(svc, pet, start=target))
        later = T0 + TTL
        swept, commit = asyncio.Event(), asyncio.Event()

        async def sweep() -> None:
            async with uow() as repo:
                assert lapsed.lock_id in await repo.expire_due(later)
                swept.set()
                await commit.wait()

        async def move() -> int | None:
            await swept.wait()
            async with uow() as repo:
                return await repo.move_reservation(booking.lock_id, 1, target, target + HALF_HOUR, later)

        sweeper, mover = in_own_task(sweep()), in_own_task(move())
        await swept.wait()
        await blocked(mover)
        commit.set()
        await sweeper
        assert await mover == 1

    async def test_a_move_racing_an_uncommitted_hold_changes_nothing_and_the_transaction_goes_on(
        self, uow: UnitOfWork, read: UnitOfWork, blocked: BlockedWaiter
    ) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        booking = await self.booked(uow, svc, pet)
        target = DAY + timedelta(hours=1)
        held, commit = asyncio.Event(), asyncio.Event()

        async def hold_open() -> None:
            async with uow() as repo:
                assert (
                    await repo.hold(new_hold(svc, pet, start=target), 1, await repo.catalog_version())
                ).inserted
                held.set()
                await commit.wait()

        async def move() -> tuple[int | None, Booking | None]:
            await held.wait()
            async with uow() as repo:
                unit = await repo.move_reservation(booking.lock_id, 1, target, target + HALF_HOUR, T0)
                return unit, await repo.booking(booking.id)  # the transaction is still usable

        winner, loser = in_own_task(hold_open()), in_own_task(move())
        await held.wait()
        await blocked(loser)
        commit.set()
        await winner
        assert await loser == (None, booking)
        async with uow() as repo:
            res = await repo.reservation(booking.lock_id)
        assert res is not None and (res.start, res.unit) == (DAY, 1)

    # -- bookings and their events ------------------------------------------------------------------
    async def test_a_booking_comes_back_by_id_and_by_reservation(self, uow: UnitOfWork) -> None:
        _, svc = await self.catalog(uow, policy=CancellationPolicy(full_refund_hours=6))
        pet = await self.pet(uow)
        booking = await self.booked(uow, svc, pet)
        async with uow() as repo:
            got = await repo.booking(booking.id)
            locked = await repo.booking(booking.id, for_update=True)
            by_lock = await repo.booking_by_lock(booking.lock_id)
            res = await repo.reservation(booking.lock_id)
            assert await repo.booking(uuid.uuid4()) is None
            assert await repo.booking_by_lock(uuid.uuid4()) is None
        assert got == booking and locked == booking and by_lock == booking
        assert got.policy == CancellationPolicy(full_refund_hours=6)
        assert res is not None and res.booking_id == booking.id

    async def test_a_confirmation_writes_reservation_booking_and_event_together_or_not_at_all(
        self, uow: UnitOfWork, read: UnitOfWork, outbox: OutboxReader
    ) -> None:
        _, svc = await self.catalog(uow, capacity=2)
        pet, pet2 = await self.pets(uow, 2)
        kept, dropped = await self.held(read, new_hold(svc, pet), new_hold(svc, pet2), capacity=2)
        made = {}
        for res, fail in ((kept, False), (dropped, True)):
            booking = Booking.confirm(res, uuid.uuid4(), T0, svc.policy)
            made[res.lock_id] = booking, new_event(booking)
            with pytest.raises(RuntimeError) if fail else contextlib.nullcontext():
                async with uow() as repo:
                    await repo.confirm_booking(*made[res.lock_id])
                    if fail:
                        raise RuntimeError("abort")
        (kept_booking, kept_event), (dropped_booking, dropped_event) = (
            made[kept.lock_id],
            made[dropped.lock_id],
        )
        assert await outbox([kept_event.event_id, dropped_event.event_id]) == [kept_event]
        async with uow() as repo:
            assert await repo.booking(kept_booking.id) == kept_booking
            assert await repo.booking(dropped_booking.id) is None
            confirmed, untouched = (
                await repo.reservation(kept.lock_id),
                await repo.reservation(dropped.lock_id),
            )
        assert confirmed is not None and untouched is not None
        assert (confirmed.state, confirmed.payment_id, confirmed.booking_id) == (
            ReservationState.CONFIRMED,
            kept_booking.payment_id,
            kept_booking.id,
        )
        assert (untouched.state, untouched.payment_id, untouched.booking_id) == (
            ReservationState.HELD,
            None,
            None,
        )

    async def test_an_outbox_event_commits_and_rolls_back_with_its_transaction(
        self, uow: UnitOfWork, outbox: OutboxReader
    ) -> None:
        kept = OutboxEvent(
            uuid.uuid4(), "booking.cancelled", "k", "dev.petpro.booking.cancelled.v1", b"x", ""
        )
        dropped = replace(kept, event_id=uuid.uuid4(), payload=b"y")
        async with uow() as repo:
            await repo.add_outbox(kept)
        with pytest.raises(RuntimeError):
            async with uow() as repo:
                await repo.add_outbox(dropped)
                raise RuntimeError("abort")
        assert await outbox([kept.event_id, dropped.event_id]) == [kept]

    async def test_bookings_are_listed_by_owner_or_clinic_by_start_a_page_at_a_time(
        self, uow: UnitOfWork
    ) -> None:
        clinic, svc = await self.catalog(uow, capacity=3)
        pet, other_pet = await self.pet(uow), await self.pet(uow)
        made = [await self.booked(uow, svc, pet, DAY + timedelta(hours=h)) for h in (2, 0, 1)]
        theirs = await self.booked(uow, svc, other_pet, DAY + timedelta(hours=3))
        async with uow() as repo:
            first = await repo.list_bookings(
                owner=pet.owner_user_id, clinic=None, start_from=None, after=None, limit=2
            )
            rest = await repo.list_bookings(
                owner=pet.owner_user_id,
                clinic=None,
                start_from=None,
                after=(first[-1].start.isoformat(), str(first[-1].id)),
                limit=2,
            )
            by_clinic = await repo.list_bookings(
                owner=None, clinic=clinic.id, start_from=DAY + timedelta(hours=1), after=None, limit=10
            )
        assert [b.id for b in first + rest] == [made[1].id, made[2].id, made[0].id]
        assert [b.id for b in by_clinic] == [made[2].id, made[0].id, theirs.id]

    async def test_upcoming_bookings_are_the_confirmed_ones_starting_after_now(self, uow: UnitOfWork) -> None:
        clinic, svc = await self.catalog(uow, capacity=4)
        pet = await self.pet(uow)
        past = await self.booked(uow, svc, pet, T0 - timedelta(hours=1), now=T0 - timedelta(days=1))
        soon, later = [await self.booked(uow, svc, pet, DAY + timedelta(hours=h)) for h in (1, 5)]
        cancelled = await self.booked(uow, svc, pet, DAY + timedelta(hours=2))
        async with uow() as repo:
            cancelled.cancel(Actor.CLINIC, "vet ill", T0)
            await repo.save_booking_change(cancelled)
        async with uow() as repo:
            assert [b.id for b in await repo.upcoming_bookings(clinic.id, T0)] == [soon.id, later.id]
            window = await repo.upcoming_bookings(clinic.id, T0, DAY, DAY + timedelta(hours=5))
            assert [b.id for b in window] == [soon.id]
            assert await repo.upcoming_bookings(uuid.uuid4(), T0) == []
        assert past.start < T0

    async def test_the_clinic_schedule_shows_service_pet_and_owner_filtered_by_state(
        self, uow: UnitOfWork
    ) -> None:
        clinic, svc = await self.catalog(uow, capacity=3)
        pet = await self.pet(uow)
        first, second, third = [await self.booked(uow, svc, pet, DAY + timedelta(hours=h)) for h in (0, 1, 2)]
        async with uow() as repo:
            second.cancel(Actor.OWNER, "", T0)
            await repo.save_booking_change(second)
        end = DAY + timedelta(hours=2)
        async with uow() as repo:
            every = await repo.list_clinic_bookings(clinic.id, DAY, end, [], None, 10)
            page = await repo.list_clinic_bookings(clinic.id, DAY, end + HALF_HOUR, ["CONFIRMED"], None, 1)
            rest = await repo.list_clinic_bookings(
                clinic.id,
                DAY,
                end + HALF_HOUR,
                ["CONFIRMED"],
                (page[0].booking.start.isoformat(), str(page[0].booking.id)),
                10,
            )
        assert [r.booking.id for r in every] == [first.id, second.id]  # [start, end): the third is out
        row = every[0]
        assert (row.service_name, row.pet_name, row.pet_species, row.owner_name, row.owner_email) == (
            svc.name,
            pet.name,
            "DOG",
            "Olga",
            "olga@example.test",
        )
        assert [r.booking.id for r in page + rest] == [first.id, third.id]

    async def test_save_booking_change_writes_the_lifecycle_fields_only(self, uow: UnitOfWork) -> None:
        """State, slot, cancellation and the refund owed; the refund's bookkeeping (attempts, rounds, the
        provider's id and error) is written by record_refund and claim_due_refunds alone."""
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        booking = await self.booked(uow, svc, pet)
        async with uow() as repo:
            b = await repo.booking(booking.id, for_update=True)
            assert b is not None
            b.reschedule(DAY + timedelta(hours=1), DAY + timedelta(hours=1, minutes=30), T0)
            b.cancel(Actor.CLINIC, "vet ill", T0 + timedelta(minutes=1))
            b.refund_attempts, b.refund_round, b.refund_error, b.provider_refund_id = 7, 3, "boom", "re_x"
            await repo.save_booking_change(b, next_refund_at=T0)
        async with uow() as repo:
            got = await repo.booking(booking.id)
        assert got is not None
        assert (got.state, got.start, got.reschedule_count, got.version) == (
            BookingState.CANCELLED,
            DAY + timedelta(hours=1),
            1,
            3,
        )
        assert (got.cancelled_by, got.cancel_reason, got.refund_minor, got.refund_state) == (
            Actor.CLINIC,
            "vet ill",
            4500,
            RefundState.PENDING,
        )
        assert (got.refund_attempts, got.refund_round, got.refund_error, got.provider_refund_id) == (
            0,
            0,
            "",
            "",
        )

    async def test_a_lifecycle_request_id_is_recorded_once(self, uow: UnitOfWork) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        booking = await self.booked(uow, svc, pet)
        key = uuid.uuid4()
        async with uow() as repo:
            assert await repo.lifecycle_request(key) is None
            await repo.add_lifecycle_request(key, booking.id, "cancel", "fp", T0)
        with pytest.raises(DuplicateRequest):
            async with uow() as repo:
                await repo.add_lifecycle_request(key, booking.id, "reschedule", "fp2", T0)
        async with uow() as repo:
            assert await repo.lifecycle_request(key) == (booking.id, "cancel", "fp")

    # -- refunds --------------------------------------------------------------------------------
    async def cancelled(
        self, uow: UnitOfWork, svc: Service, pet: Pet, hours: int, next_at: datetime | None
    ) -> Booking:
        booking = await self.booked(uow, svc, pet, DAY + timedelta(hours=hours))
        async with uow() as repo:
            booking.cancel(Actor.CLINIC, "vet ill", T0 + timedelta(minutes=hours))
            await repo.save_booking_change(booking, next_refund_at=next_at)
        return booking

    async def test_due_refunds_are_claimed_oldest_due_first_and_leased(self, uow: UnitOfWork) -> None:
        _, svc = await self.catalog(uow, capacity=1)
        pet = await self.pet(uow)
        far = T0 + timedelta(days=3650)
        async with uow() as repo:
            await repo.claim_due_refunds(T0, far, limit=100_000)  # other tests' rows: leased away
        third, first, second = [
            await self.cancelled(uow, svc, pet, h, T0 - timedelta(minutes=m))
            for h, m in ((1, 1), (2, 3), (3, 2))
        ]
        not_due = await self.cancelled(uow, svc, pet, 4, T0 + timedelta(minutes=5))
        async with uow() as repo:
            claimed = await repo.claim_due_refunds(T0, T0 + timedelta(minutes=1), limit=2)
        assert [b.id for b in claimed] in ([first.id, second.id], [second.id, first.id])
        assert all(b.refund_attempts == 1 for b in claimed)
        async with uow() as repo:
            leased = await repo.claim_due_refunds(T0, T0 + timedelta(minutes=1), limit=10)
            assert [b.id for b in leased] == [third.id]  # the first two are leased, not_due is not due
            after_lease = await repo.claim_due_refunds(T0 + timedelta(minutes=1), far, limit=10)
        assert {b.id for b in after_lease} == {first.id, second.id, third.id}
        assert not_due.id not in {b.id for b in after_lease}

    async def test_a_refund_never_scheduled_is_due_first(self, uow: UnitOfWork) -> None:
        _, svc = await self.catalog(uow, capacity=1)
        pet = await self.pet(uow)
        far = T0 + timedelta(days=3650)
        async with uow() as repo:
            await repo.claim_due_refunds(T0, far, limit=100_000)
        await self.cancelled(uow, svc, pet, 1, T0 - timedelta(minutes=5))
        unscheduled = await self.cancelled(uow, svc, pet, 2, None)
        async with uow() as repo:
            assert [b.id for b in await repo.claim_due_refunds(T0, far, limit=1)] == [unscheduled.id]

    async def test_record_refund_answers_only_the_round_it_was_made_in(self, uow: UnitOfWork) -> None:
        _, svc = await self.catalog(uow)
        pet = await self.pet(uow)
        booking = await self.cancelled(uow, svc, pet, 1, T0)
        async with uow() as repo:
            await repo.record_refund(
                booking.id, RefundState.FAILED, "re_1", "x" * 5000, T0, T0, refund_round=0, was_round=0
            )
        async with uow() as repo:
            failed = await repo.booking(booking.id)
            await repo.record_refund(
                booking.id, RefundState.PROCESSING, "re_2", "", T0, None, refund_round=1, was_round=0
            )
            # a late answer about round 0 changes nothing now that round 1 was made
            await repo.record_refund(
                booking.id, RefundState.SUCCEEDED, "re_1", "", T0, None, refund_round=0, was_round=0
            )
        assert failed is not None
        assert (failed.refund_state, failed.provider_refund_id, len(failed.refund_error)) == (
            RefundState.FAILED,
            "re_1",
            2000,
        )
        assert failed.refund_updated_at == T0
        async with uow() as repo:
            got = await repo.booking(booking.id)
            # an attempt that failed to reach the provider keeps the state and round
            await repo.record_refund(
                booking.id, RefundState.PROCESSING, "re_2", "timeout", T0 + TTL, T0 + TTL
            )
        assert got is not None
        assert (got.refund_state, got.provider_refund_id, got.refund_round, got.refund_error) == (
            RefundState.PROCESSING,
            "re_2",
            1,
            "",
        )
        async with uow() as repo:
            again = await repo.booking(booking.id)
        assert again is not None and (again.refund_round, again.refund_error) == (1, "timeout")

    async def test_open_refunds_are_listed_oldest_cancellation_first(self, uow: UnitOfWork) -> None:
        _, svc = await self.catalog(uow, capacity=1)
        pet = await self.pet(uow)
        late, early, settled = [await self.cancelled(uow, svc, pet, h, None) for h in (3, 1, 2)]
        async with uow() as repo:
            await repo.record_refund(settled.id, RefundState.SUCCEEDED, "re_9", "", T0, None)
            await repo.record_refund(late.id, RefundState.FAILED, "re_8", "card expired", T0, None)
        async with uow() as repo:
            listed = [b.id for b in await repo.open_refunds(100_000)]
        assert settled.id not in listed and listed.index(early.id) < listed.index(late.id)


class SchedulingContract:
    """Scheduling by providers, resources and pets (docs/design/scheduling.md): the claims of a hold,
    all or nothing, each kind refused by its own constraint; claims following their reservation; the
    live claims availability reads; providers, time off, resources and service requirements."""

    @staticmethod
    async def scheduled_clinic(
        uow: UnitOfWork,
    ) -> tuple[Clinic, Service, list[Provider], list[Resource]]:
        """A clinic with two vets, two dental rooms and a service needing one vet of both and one room."""
        clinic = new_clinic()
        svc = new_service(clinic, buffer_after_minutes=10)
        hours = {"mon": [Interval(time(9), time(12))]}
        vets = [Provider(uuid.uuid4(), clinic.id, name, hours) for name in ("Dr Weber", "Dr Okafor")]
        rooms = [Resource(uuid.uuid4(), clinic.id, f"Dental {i}", "dental room") for i in (1, 2)]
        async with uow() as repo:
            await repo.add_clinic(clinic)
            await repo.add_service(svc)
            for v in vets:
                await repo.add_provider(v)
            for r in rooms:
                await repo.add_resource(r)
            await repo.set_service_requirements(
                svc.id, clinic.id, tuple(v.id for v in vets), (ServiceNeed("dental room", 1),)
            )
        return clinic, svc, vets, rooms

    @staticmethod
    def scheduled_hold(
        svc: Service,
        pet: Pet,
        vet: Provider | None,
        rooms: list[Resource],
        *,
        start: datetime = DAY,
        ttl: timedelta = TTL,
        now: datetime = T0,
    ) -> tuple[Reservation, list[Claim]]:
        res = new_hold(svc, pet, start=start, ttl=ttl, now=now, unit=vet.seq if vet else rooms[0].seq)
        res.provider_id = vet.id if vet else None
        res.assignment = "CHOSEN" if vet else None
        res.resource_ids = tuple(r.id for r in rooms)
        res.claim_end = res.end + timedelta(minutes=10)
        claims = [Claim(ClaimKind.PET, pet.id, res.start, res.claim_end)]
        if vet:
            claims.append(Claim(ClaimKind.PROVIDER, vet.id, res.start, res.claim_end))
        claims += [Claim(ClaimKind.RESOURCE, r.id, res.start, res.claim_end) for r in rooms]
        return res, claims

    async def test_a_scheduled_hold_claims_provider_items_and_pet_all_or_nothing(
        self, uow: UnitOfWork
    ) -> None:
        _, svc, (weber, okafor), (room1, room2) = await self.scheduled_clinic(uow)
        pets = await BookingRepositoryContract.pets(uow, 4)
        first = self.scheduled_hold(svc, pets[0], weber, [room1])
        first[0].owner_locale = "de-AT"  # what the owner's notifications are written in
        async with uow() as repo:
            assert await repo.insert_hold(*first) is None
            # the same vet at an overlapping time (another room, another pet): refused, nothing written
            same_vet = self.scheduled_hold(svc, pets[1], weber, [room2], start=DAY + timedelta(minutes=15))
            assert await repo.insert_hold(*same_vet) == "provider"
            assert await repo.reservation(same_vet[0].lock_id) is None  # the transaction goes on
            same_room = self.scheduled_hold(svc, pets[1], okafor, [room1])
            assert await repo.insert_hold(*same_room) == "resource"
            same_pet = self.scheduled_hold(svc, pets[0], okafor, [room2], start=DAY + timedelta(minutes=35))
            assert await repo.insert_hold(*same_pet) == "pet"  # inside the first one's buffer
            other = self.scheduled_hold(svc, pets[1], okafor, [room2])
            assert await repo.insert_hold(*other) is None
            later = DAY + timedelta(hours=2)
            used = replace(
                other[0],
                lock_id=uuid.uuid4(),
                start=later,
                end=later + HALF_HOUR,
                claim_end=later + HALF_HOUR,
            )
            assert await repo.insert_hold(used, []) == "request"  # its request id was used
        async with uow() as repo:
            got = await repo.reservation(first[0].lock_id)
            assert await repo.reservation(same_pet[0].lock_id) is None
        assert got is not None
        assert (got.provider_id, got.assignment, got.resource_ids, got.unit, got.owner_locale) == (
            weber.id,
            "CHOSEN",
            (room1.id,),
            weber.seq,
            "de-AT",
        )

    async def test_claims_follow_their_reservation(self, uow: UnitOfWork) -> None:
        clinic, svc, (weber, _), (room1, _) = await self.scheduled_clinic(uow)
        pet, pet2 = await BookingRepositoryContract.pets(uow, 2)
        held, claims = self.scheduled_hold(svc, pet, weber, [room1])
        async with uow() as repo:
            assert await repo.insert_hold(held, claims) is None
        async with uow() as repo:
            live = await repo.live_claims(clinic.id, None, DAY, DAY + HALF_HOUR, T0)
            lapsed_view = await repo.live_claims(clinic.id, None, DAY, DAY + HALF_HOUR, T0 + TTL)
        assert {(c.kind, c.subject_id, c.start, c.end) for c in live if c.lock_id == held.lock_id} == {
            (c.kind, c.subject_id, c.start, c.end) for c in claims
        }
        assert all(c.lock_id != held.lock_id for c in lapsed_view)  # a lapsed hold is not live
        # a lapsed hold still excludes until it is expired; expiring releases its claims
        again, again_claims = self.scheduled_hold(svc, pet2, weber, [room1], now=T0 + TTL)
        async with uow() as repo:
            assert await repo.insert_hold(again, again_claims) == "provider"
            assert await repo.expire_lapsed_around(clinic.id, pet2.id, DAY, DAY + HALF_HOUR, T0 + TTL) == 1
            assert await repo.insert_hold(again, again_claims) is None
        # a cancelled reservation releases its claims; a move takes all of them along
        async with uow() as repo:
            await repo.set_reservation_state(again.lock_id, ReservationState.CANCELLED, T0 + TTL)
        third, third_claims = self.scheduled_hold(svc, pet, weber, [room1], now=T0 + TTL)
        later = DAY + timedelta(hours=1)
        async with uow() as repo:
            assert await repo.insert_hold(third, third_claims) is None
            blocker, blocker_claims = self.scheduled_hold(svc, pet2, weber, [], start=later, now=T0 + TTL)
            assert await repo.insert_hold(blocker, blocker_claims) is None
            assert not await repo.move_claimed(third.lock_id, later, later + HALF_HOUR, T0 + TTL)
            earlier = DAY - timedelta(hours=1)
            assert await repo.move_claimed(third.lock_id, earlier, earlier + HALF_HOUR, T0 + TTL)
            moved = await repo.live_claims(clinic.id, None, earlier, DAY + HALF_HOUR, T0 + TTL)
        mine = [c for c in moved if c.lock_id == third.lock_id]
        assert len(mine) == 3 and all(
            (c.start, c.end) == (earlier, earlier + timedelta(minutes=40)) for c in mine
        )

    async def test_the_live_claims_of_a_clinic_include_its_pets_claims_elsewhere(
        self, uow: UnitOfWork
    ) -> None:
        clinic, svc, (weber, _), (room1, _) = await self.scheduled_clinic(uow)
        _, other_svc, (vet, _), (room, _) = await self.scheduled_clinic(uow)
        pet = await BookingRepositoryContract.pet(uow)
        away, claims = self.scheduled_hold(other_svc, pet, vet, [room])
        async with uow() as repo:
            assert await repo.insert_hold(away, claims) is None
            mine = await repo.live_claims(clinic.id, pet.id, DAY, DAY + HALF_HOUR, T0)
            anyone = await repo.live_claims(clinic.id, None, DAY, DAY + HALF_HOUR, T0)
            here = self.scheduled_hold(svc, pet, weber, [room1], start=DAY + timedelta(minutes=30))
            assert await repo.insert_hold(*here) == "pet"  # the pet is in the other clinic until 10:10
        assert [(c.kind, c.subject_id) for c in mine] == [(ClaimKind.PET, pet.id)]
        assert anyone == []

    async def test_a_capacity_hold_claims_its_pet(self, uow: UnitOfWork, read: UnitOfWork) -> None:
        _, svc = await BookingRepositoryContract.catalog(uow, capacity=3)
        _, other = await BookingRepositoryContract.catalog(uow)
        pet = await BookingRepositoryContract.pet(uow)
        [first] = await BookingRepositoryContract.held(read, new_hold(svc, pet))
        attempt = await BookingRepositoryContract.hold(
            read, new_hold(other, pet, start=DAY + timedelta(minutes=15))
        )
        assert (attempt.inserted, attempt.conflict) == (False, "pet")
        # once the first hold lapses, its pet claim is expired out of the way
        later = new_hold(other, pet, start=DAY + timedelta(minutes=15), now=T0 + TTL)
        assert (await BookingRepositoryContract.hold(read, later)).inserted
        async with uow() as repo:
            gone = await repo.reservation(first.lock_id)
        assert gone is not None and gone.state == ReservationState.EXPIRED

    async def test_providers_time_off_and_resources_round_trip(self, uow: UnitOfWork) -> None:
        clinic, svc, (weber, okafor), (room1, room2) = await self.scheduled_clinic(uow)
        off = TimeOff(uuid.uuid4(), weber.id, DAY, DAY + timedelta(days=1), "Conference")
        overlapping = TimeOff(uuid.uuid4(), weber.id, DAY + timedelta(hours=5), DAY + timedelta(days=2))
        async with uow() as repo:
            assert await repo.add_time_off(off)
            assert not await repo.add_time_off(overlapping)  # the transaction goes on
            weber.display_name = "Dr Anna Weber"
            await repo.save_provider(weber)
            await repo.save_resource(room2, archive_at=T0)
            await repo.bump_catalog()
        async with uow() as repo:
            sched = await repo.clinic_schedule(clinic.id, T0)
            got = await repo.provider(clinic.id, weber.id)
            listed = await repo.list_providers(clinic.id, False, None, 10)
            items = await repo.list_resources(clinic.id, False, None, 10)
            all_items = await repo.list_resources(clinic.id, True, None, 10)
            found = await repo.service_with_clinic(svc.id)
            assert await repo.provider(uuid.uuid4(), weber.id) is None  # another clinic's id
            assert await repo.delete_time_off(weber.id, off.id)
            assert not await repo.delete_time_off(weber.id, off.id)
        assert got is not None and got.display_name == "Dr Anna Weber" and got.version == 2
        assert [t.id for t in got.time_off] == [off.id] and got.etag == "p2"
        assert [p.display_name for p in listed] == ["Dr Anna Weber", "Dr Okafor"]
        assert {p.seq for p in listed} == {1, 2}
        assert [r.id for r in items] == [room1.id] and len(all_items) == 2
        assert sched.providers[weber.id].time_off[0].reason == "Conference"
        assert sched.types() == {"dental room": 1}
        assert found is not None
        assert set(found[0].provider_ids) == {weber.id, okafor.id}
        assert found[0].needs == (ServiceNeed("dental room", 1),)

    async def test_upcoming_bookings_using_a_provider_or_an_item(self, uow: UnitOfWork) -> None:
        clinic, svc, (weber, okafor), (room1, _) = await self.scheduled_clinic(uow)
        pet = await BookingRepositoryContract.pet(uow)
        res, claims = self.scheduled_hold(svc, pet, weber, [room1])
        async with uow() as repo:
            assert await repo.insert_hold(res, claims) is None
        async with uow() as repo:
            found = await repo.lock_for_confirm(res.lock_id)
            assert found is not None
            booking = Booking.confirm(found[0], uuid.uuid4(), T0, svc.policy)
            await repo.confirm_booking(booking, new_event(booking))
        async with uow() as repo:
            by_vet = await repo.upcoming_bookings_using(clinic.id, weber.id, T0)
            by_room = await repo.upcoming_bookings_using(clinic.id, room1.id, T0)
            none = await repo.upcoming_bookings_using(clinic.id, okafor.id, T0)
            past = await repo.upcoming_bookings_using(clinic.id, weber.id, DAY + HALF_HOUR)
            stored = await repo.booking(booking.id)
        assert [b.id for b in by_vet] == [b.id for b in by_room] == [booking.id]
        assert none == [] and past == []
        assert stored is not None and (stored.provider_id, stored.resource_ids) == (weber.id, (room1.id,))

    async def test_live_claims_can_be_limited_to_some_subjects(self, uow: UnitOfWork) -> None:
        clinic, svc, (weber, okafor), (room1, _) = await self.scheduled_clinic(uow)
        pet, pet2 = await BookingRepositoryContract.pets(uow, 2)
        async with uow() as repo:
            assert await repo.insert_hold(*self.scheduled_hold(svc, pet, weber, [room1])) is None
            assert await repo.insert_hold(*self.scheduled_hold(svc, pet2, okafor, [])) is None
            only = await repo.live_claims(clinic.id, None, DAY, DAY + HALF_HOUR, T0, [weber.id, room1.id])
            none = await repo.live_claims(clinic.id, None, DAY, DAY + HALF_HOUR, T0, [])
        assert {c.subject_id for c in only} == {weber.id, room1.id} and none == []

    async def test_prepare_hold_expires_what_lapsed_and_reads_version_pet_and_claims(
        self, uow: UnitOfWork
    ) -> None:
        clinic, svc, (weber, okafor), (room1, _) = await self.scheduled_clinic(uow)
        pet, pet2 = await BookingRepositoryContract.pets(uow, 2)
        lapsing = self.scheduled_hold(svc, pet2, weber, [room1])
        live = self.scheduled_hold(svc, pet, okafor, [], ttl=timedelta(hours=1))
        async with uow() as repo:
            assert await repo.insert_hold(*lapsing) is None
            assert await repo.insert_hold(*live) is None
            version = await repo.catalog_version()
        later = T0 + TTL
        async with uow() as repo:
            got = await repo.prepare_hold(
                clinic.id, pet2.id, DAY, DAY + HALF_HOUR, DAY, DAY + HALF_HOUR, later, [weber.id, okafor.id]
            )
            nobody = await repo.prepare_hold(
                clinic.id, uuid.uuid4(), DAY, DAY + HALF_HOUR, DAY, DAY + HALF_HOUR, later, []
            )
        seen, owner, species, claims = got
        assert (seen, owner, species) == (version, pet2.owner_user_id, "DOG")
        assert [(c.kind, c.subject_id) for c in claims] == [(ClaimKind.PROVIDER, okafor.id)]
        assert await BookingRepositoryContract.state(uow, lapsing[0].lock_id) == ReservationState.EXPIRED
        assert nobody[1:3] == (None, None)

    @staticmethod
    def one_statement_hold(svc: Service, pet: Pet, **kw: Any) -> Reservation:
        """A scheduled hold for ``hold_scheduled`` to complete (its claims run 10 minutes past the slot)."""
        res = new_hold(svc, pet, **kw)
        res.claim_end = res.end + timedelta(minutes=10)
        return res

    async def test_a_hold_in_one_statement_takes_the_any_rule_and_the_first_free_items(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        clinic, svc, (weber, okafor), (room1, room2) = await self.scheduled_clinic(uow)
        pets = await BookingRepositoryContract.pets(uow, 4)
        day = (DAY - timedelta(hours=9), DAY + timedelta(hours=15))  # the slot's local day
        any_vet = HoldOptions(
            (weber, okafor), Assignment.ANY_FEWEST_THAT_DAY, *day, ((1, (room1, room2)),), ()
        )
        async with uow() as repo:  # Dr Weber has a hold later that day, Dr Okafor none
            later = self.scheduled_hold(svc, pets[0], weber, [], start=DAY + timedelta(hours=2))
            assert await repo.insert_hold(*later) is None
            version = await repo.catalog_version()
        first = self.one_statement_hold(svc, pets[1])
        async with read() as repo:  # autocommit, as ReserveSlot runs it
            got = await repo.hold_scheduled(first, any_vet, version)
            # the fewest that day first; then, Dr Okafor taken, Dr Weber with the other room
            second = await repo.hold_scheduled(self.one_statement_hold(svc, pets[2]), any_vet, version)
            nobody = await repo.hold_scheduled(self.one_statement_hold(svc, pets[3]), any_vet, version)
            retry = self.one_statement_hold(
                svc, pets[3], start=DAY + timedelta(hours=1), request_id=first.request_id
            )
            used = await repo.hold_scheduled(retry, any_vet, version)
            claims = await repo.live_claims(clinic.id, None, DAY, DAY + HALF_HOUR, T0)
            stored = await repo.reservation(first.lock_id)
        assert got == ScheduledAttempt(True, False, okafor.seq, okafor.id, (room1.id,))
        assert second == ScheduledAttempt(True, False, weber.seq, weber.id, (room2.id,))
        assert nobody == ScheduledAttempt(False)
        assert used == ScheduledAttempt(False, earlier=True)
        assert stored is not None
        assert (stored.provider_id, stored.assignment, stored.resource_ids, stored.unit, stored.state) == (
            okafor.id,
            "ANY_FEWEST_THAT_DAY",
            (room1.id,),
            okafor.seq,
            ReservationState.HELD,
        )
        assert {(c.kind, c.subject_id, c.end) for c in claims if c.lock_id == first.lock_id} == {
            (ClaimKind.PET, pets[1].id, DAY + timedelta(minutes=40)),
            (ClaimKind.PROVIDER, okafor.id, DAY + timedelta(minutes=40)),
            (ClaimKind.RESOURCE, room1.id, DAY + timedelta(minutes=40)),
        }

    async def test_a_hold_in_one_statement_inserts_nothing_it_may_not(self, uow: UnitOfWork) -> None:
        clinic, svc, (weber, _), (room1, room2) = await self.scheduled_clinic(uow)
        pet, pet2 = await BookingRepositoryContract.pets(uow, 2)
        chosen = HoldOptions((weber,), Assignment.CHOSEN, DAY, DAY, ((1, (room1, room2)),), ())
        lapsing = self.scheduled_hold(svc, pet2, weber, [room1])
        async with uow() as repo:
            assert await repo.insert_hold(*lapsing) is None
            version = await repo.catalog_version()
        later = T0 + TTL
        async with uow() as repo:  # in a transaction: each refusal leaves it usable
            # the lapsed hold is not live, yet its claims exclude until it is expired
            assert await repo.hold_scheduled(
                self.one_statement_hold(svc, pet, now=later), chosen, version
            ) == ScheduledAttempt(False, raced=True)
            stale = await repo.hold_scheduled(
                self.one_statement_hold(svc, pet, now=later), chosen, version + 1
            )
            stranger = self.one_statement_hold(svc, pet, now=later, owner=uuid.uuid4())
            not_theirs = await repo.hold_scheduled(stranger, chosen, version)
            cats = replace(chosen, species_allowed=("CAT",))
            not_a_cat = await repo.hold_scheduled(self.one_statement_hold(svc, pet, now=later), cats, version)
            assert await repo.expire_lapsed_around(clinic.id, pet.id, DAY, DAY + HALF_HOUR, later) == 1
            # an item restricted to other species is skipped
            cat_room = HoldOptions(
                (weber,), Assignment.CHOSEN, DAY, DAY, ((1, (replace(room1, species=("CAT",)), room2)),), ()
            )
            held = self.one_statement_hold(svc, pet, now=later)
            got = await repo.hold_scheduled(held, cat_room, version)
            busy = await repo.hold_scheduled(self.one_statement_hold(svc, pet2, now=later), chosen, version)
        assert (stale, not_theirs, not_a_cat, busy) == (ScheduledAttempt(False),) * 4
        assert got == ScheduledAttempt(True, False, weber.seq, weber.id, (room2.id,))
        async with uow() as repo:
            stored = await repo.reservation(held.lock_id)
        assert stored is not None and stored.assignment == "CHOSEN"

    async def test_a_refused_hold_on_the_read_connection_leaves_it_usable(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        clinic, svc, (weber, okafor), (room1, room2) = await self.scheduled_clinic(uow)
        pet, pet2 = await BookingRepositoryContract.pets(uow, 2)
        async with read() as repo:  # autocommit: each insert is its own transaction
            assert await repo.insert_hold(*self.scheduled_hold(svc, pet, weber, [room1])) is None
            assert await repo.insert_hold(*self.scheduled_hold(svc, pet2, weber, [room2])) == "provider"
            assert await repo.insert_hold(*self.scheduled_hold(svc, pet2, okafor, [room2])) is None
            claims = await repo.live_claims(clinic.id, None, DAY, DAY + HALF_HOUR, T0)
        assert {c.subject_id for c in claims} >= {weber.id, okafor.id, room1.id, room2.id}
