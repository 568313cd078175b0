"""Booking use cases.  Each opens one unit of work (a transaction), applies the domain, commits;
events go to the outbox in the same transaction as the state change."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from booking_svc.domain import (
    Booking,
    BookingNotFound,
    Clinic,
    ClinicNotFound,
    ConfirmDecision,
    DuplicateRequest,
    IdempotencyKeyReused,
    Pet,
    PetNotFound,
    PetNotOwned,
    Reservation,
    ReservationNotFound,
    ReservationState,
    Service,
    ServiceNotFound,
    SlotLost,
    SlotUnavailable,
    UnitTaken,
    check_pet_owner,
    check_slot,
    decide_confirm,
    decide_reclaim,
    request_fingerprint,
    slot_grid,
)
from booking_svc.ports import BookingRepository, EventEncoder, UnitOfWork
from petpro import paging
from petpro.cache import TtlMemo
from petpro.db import utcnow
from petpro.errors import InvalidArgument

TOPIC_BOOKING_CREATED = "booking.created"
EVENT_BOOKING_CREATED = "dev.petpro.booking.created.v1"


@dataclass(frozen=True)
class ReserveCommand:
    request_id: str
    owner_user_id: uuid.UUID
    owner_email: str
    owner_name: str
    service_id: uuid.UUID
    pet_id: uuid.UUID
    start: datetime


@dataclass(frozen=True)
class AvailabilitySlot:
    start: datetime
    end: datetime
    remaining: int


class BookingHandlers:
    def __init__(self, uow: UnitOfWork, encode_event: EventEncoder, *, hold_ttl: timedelta,
                 read: UnitOfWork | None = None, catalog_ttl: float = 0.0, clock: Callable[[], datetime] = utcnow,
                 traceparent: Callable[[], str] = lambda: "") -> None:
        self.uow = uow
        self.read = read or uow  # read-only use cases: no transaction needed
        self.catalog = TtlMemo(catalog_ttl)
        self.encode_event = encode_event
        self.hold_ttl = hold_ttl
        self.clock = clock
        self.traceparent = traceparent

    # -- catalog -----------------------------------------------------------------------------------
    # The catalog changes rarely (``petpro seed``): reads go through a short TTL memo.
    async def _clinic(self, clinic_id: uuid.UUID) -> Clinic | None:
        async def load() -> Clinic | None:
            async with self.read() as repo:
                return await repo.clinic(clinic_id)

        return await self.catalog.get(("clinic", clinic_id), load)

    async def _service(self, service_id: uuid.UUID) -> tuple[Service, Clinic] | None:
        async def load() -> tuple[Service, Clinic] | None:
            async with self.read() as repo:
                return await repo.service_with_clinic(service_id)

        return await self.catalog.get(("service", service_id), load)

    async def list_clinics(self, size: int, token: str) -> tuple[list[Clinic], str]:
        limit = paging.page_size(size)
        after = paging.decode(token)

        async def load() -> list[Clinic]:
            async with self.read() as repo:
                return await repo.list_clinics(after, limit)

        rows = await self.catalog.get(("clinics", after, limit), load)
        return rows, paging.next_token(rows, limit, lambda c: (c.name, str(c.id)))

    async def get_clinic(self, clinic_id: uuid.UUID) -> Clinic:
        clinic = await self._clinic(clinic_id)
        if clinic is None:
            raise ClinicNotFound("clinic not found")
        return clinic

    async def list_services(self, clinic_id: uuid.UUID, size: int, token: str) -> tuple[list[Service], str]:
        limit = paging.page_size(size)
        after = paging.decode(token)
        if await self._clinic(clinic_id) is None:
            raise ClinicNotFound("clinic not found")

        async def load() -> list[Service]:
            async with self.read() as repo:
                return await repo.list_services(clinic_id, after, limit)

        rows = await self.catalog.get(("services", clinic_id, after, limit), load)
        return rows, paging.next_token(rows, limit, lambda s: (s.name, str(s.id)))

    async def get_service(self, service_id: uuid.UUID) -> tuple[Service, Clinic]:
        found = await self._service(service_id)
        if found is None:
            raise ServiceNotFound("service not found")
        return found

    async def availability(self, service_id: uuid.UUID, day: str) -> tuple[Service, Clinic, list[AvailabilitySlot]]:
        try:
            local_day = date.fromisoformat(day)
        except ValueError:
            raise InvalidArgument.field("date", "is not a calendar date", "DATE_INVALID") from None
        now = self.clock()
        svc, clinic = await self.get_service(service_id)
        grid = slot_grid(clinic, svc, local_day)
        async with self.read() as repo:
            taken = await repo.active_counts(svc.id, grid[0].start, grid[-1].end, now) if grid else []
        out = []
        for g in grid:
            used = sum(1 for s, e in taken if s < g.end and g.start < e)
            remaining = 0 if g.start <= now else max(svc.capacity - used, 0)
            out.append(AvailabilitySlot(g.start, g.end, remaining))
        return svc, clinic, out

    # -- pets ----------------------------------------------------------------------------------------
    async def create_pet(self, owner: uuid.UUID, name: str, species: str, breed: str | None,
                         birth_date: str) -> Pet:
        born = None
        if birth_date:
            try:
                born = date.fromisoformat(birth_date)
            except ValueError:
                raise InvalidArgument.field("birth_date", "is not a calendar date", "DATE_INVALID") from None
            if born > self.clock().date():
                raise InvalidArgument.field("birth_date", "must not be in the future", "DATE_IN_FUTURE")
        pet = Pet(uuid.uuid4(), owner, name.strip(), species, (breed or "").strip() or None, born, self.clock())
        async with self.uow() as repo:
            await repo.add_pet(pet)
        return pet

    async def list_pets(self, owner: uuid.UUID, size: int, token: str) -> tuple[list[Pet], str]:
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_pets(owner, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda p: (p.created_at.isoformat(), str(p.id)))

    # -- reservations ------------------------------------------------------------------------------
    async def reserve(self, cmd: ReserveCommand) -> Reservation:
        """Hold a free unit of the slot.  The INSERT is the transaction's last statement and the
        exclusion constraint decides races: no savepoints, one transaction in the common case."""
        now = self.clock()
        fingerprint = request_fingerprint(cmd.service_id, cmd.pet_id, cmd.start.astimezone(UTC).isoformat())
        svc, clinic = await self.get_service(cmd.service_id)
        held = await self._try_hold(cmd, svc, clinic, fingerprint, now)
        if held is not None:
            return held
        expired_swept = False
        for _ in range(svc.capacity + 2):  # a retry per unit lost to a concurrent reserver, + one sweep
            try:
                async with self.uow() as repo:
                    earlier = await repo.reservation_by_request(cmd.owner_user_id, cmd.request_id)
                    if earlier is not None:
                        return self._replay(earlier, fingerprint)
                    check_pet_owner(await repo.pet(cmd.pet_id), cmd.owner_user_id)
                    slot = check_slot(clinic, svc, cmd.start, now)
                    taken = await repo.taken_units(svc.id, slot.start, slot.end)
                    free = [u for u in range(1, svc.capacity + 1) if u not in taken]
                    if not free:
                        if expired_swept or not await repo.expire_overlapping(svc.id, slot.start, slot.end, now):
                            raise SlotUnavailable("this slot is no longer available",
                                                  metadata={"slot": slot.start.isoformat()})
                        expired_swept = True  # expired holds released (committed below): look again
                        continue
                    res = Reservation(
                        lock_id=uuid.uuid4(), owner_user_id=cmd.owner_user_id, owner_email=cmd.owner_email,
                        owner_name=cmd.owner_name, request_id=cmd.request_id, request_hash=fingerprint,
                        service_id=svc.id, clinic_id=clinic.id, pet_id=cmd.pet_id, unit=free[0],
                        start=slot.start, end=slot.end, state=ReservationState.HELD, expires_at=now + self.hold_ttl,
                        amount_minor=svc.price_minor, currency=svc.currency, created_at=now,
                    )
                    await repo.insert_reservation(res)
                    return res
            except UnitTaken:
                if len(free) == 1:  # the last free unit went to a concurrent reserver
                    raise SlotUnavailable("this slot is no longer available",
                                          metadata={"slot": slot.start.isoformat()}) from None
            except DuplicateRequest:  # a concurrent retry with the same key won: answer as it did
                async with self.read() as repo:
                    earlier = await repo.reservation_by_request(cmd.owner_user_id, cmd.request_id)
                assert earlier is not None
                return self._replay(earlier, fingerprint)
        raise SlotUnavailable("this slot is no longer available")

    async def _try_hold(self, cmd: ReserveCommand, svc: Service, clinic: Clinic, fingerprint: str,
                        now: datetime) -> Reservation | None:
        """The common case in one statement: a new request for a free slot is held, a slot whose
        units are all live-held or booked is refused at once.  None: look closer (an idempotent
        retry, a bad slot, an expired hold still in the way, a race) on the transactional path."""
        try:
            slot = check_slot(clinic, svc, cmd.start, now)
        except InvalidArgument:
            return None  # the full path reports it, after the idempotent replay it owes a retry
        res = Reservation(
            lock_id=uuid.uuid4(), owner_user_id=cmd.owner_user_id, owner_email=cmd.owner_email,
            owner_name=cmd.owner_name, request_id=cmd.request_id, request_hash=fingerprint,
            service_id=svc.id, clinic_id=clinic.id, pet_id=cmd.pet_id, unit=0,
            start=slot.start, end=slot.end, state=ReservationState.HELD, expires_at=now + self.hold_ttl,
            amount_minor=svc.price_minor, currency=svc.currency, created_at=now,
        )
        async with self.read() as repo:
            attempt = await repo.try_hold(res, svc.capacity)
        if attempt.inserted:
            assert attempt.unit is not None
            res.unit = attempt.unit
            return res
        if attempt.earlier:
            return None
        if attempt.pet_owner is None:
            raise PetNotFound("pet not found")
        if attempt.pet_owner != cmd.owner_user_id:
            raise PetNotOwned("this pet belongs to another user")
        if attempt.unit is None:
            raise SlotUnavailable("this slot is no longer available", metadata={"slot": slot.start.isoformat()})
        return None

    @staticmethod
    def _replay(earlier: Reservation, fingerprint: str) -> Reservation:
        if earlier.request_hash != fingerprint:
            raise IdempotencyKeyReused("this idempotency key was used for a different booking request")
        return earlier

    async def get_reservation(self, lock_id: uuid.UUID, owner: uuid.UUID | None) -> Reservation:
        async with self.read() as repo:
            res = await repo.reservation(lock_id)
        if res is None or (owner is not None and res.owner_user_id != owner):
            raise ReservationNotFound("reservation not found")
        res.state = res.effective_state(self.clock())
        return res

    async def confirm(self, lock_id: uuid.UUID, payment_id: uuid.UUID) -> Booking:
        now = self.clock()
        async with self.uow() as repo:
            held = await repo.confirm_held(lock_id, payment_id, now)  # the common case: a live hold
            if held is not None:
                booking = Booking.confirm(held[0], payment_id, now)
                await self._add_booking(repo, booking, held[0], held[1], now)
                return booking
        async with self.uow() as repo:
            res = await repo.reservation(lock_id, for_update=True)
            if res is None:
                raise ReservationNotFound("reservation not found")
            decision = decide_confirm(res, payment_id, now)
            if decision == ConfirmDecision.ALREADY_CONFIRMED:
                existing = await repo.booking_by_lock(lock_id)
                assert existing is not None
                return existing
            if decision == ConfirmDecision.RECLAIM:
                # paid after expiry: the exclusion constraint tells whether the slot is still free
                await repo.expire_overlapping(res.service_id, res.start, res.end, now)
                free = await repo.try_set_state(lock_id, ReservationState.CONFIRMED, now, payment_id=payment_id)
                reclaim = decide_reclaim(free)
                if reclaim.lost:
                    await repo.try_set_state(lock_id, reclaim.state, now, payment_id=payment_id,
                                             failure_reason=reclaim.failure_reason)
                    lost = True
                else:
                    lost = False
            else:
                await repo.try_set_state(lock_id, ReservationState.CONFIRMED, now, payment_id=payment_id)
                lost = False
            if not lost:
                booking = Booking.confirm(res, payment_id, now)
                pet_row = await repo.pet(res.pet_id)
                assert pet_row is not None
                await self._add_booking(repo, booking, res, pet_row, now)
                return booking
        raise SlotLost("payment arrived after the hold expired and the slot was taken; refund it")

    async def _add_booking(self, repo: BookingRepository, booking: Booking, res: Reservation, pet: Pet,
                           now: datetime) -> None:
        """The booking and its ``booking.created`` event, in the caller's unit of work."""
        svc, clinic = await self.get_service(res.service_id)
        event_id = uuid.uuid4()
        payload = self.encode_event(event_id, booking, res, svc, clinic, pet, now)
        await repo.add_booking_with_event(booking, event_id, TOPIC_BOOKING_CREATED, str(booking.id),
                                          EVENT_BOOKING_CREATED, payload, self.traceparent())

    async def expire_due(self) -> list[uuid.UUID]:
        async with self.uow() as repo:
            return await repo.expire_due(self.clock())

    # -- bookings ------------------------------------------------------------------------------------
    async def get_booking(self, booking_id: uuid.UUID, owner: uuid.UUID | None) -> Booking:
        async with self.read() as repo:
            b = await repo.booking(booking_id)
        if b is None or (owner is not None and b.owner_user_id != owner):
            raise BookingNotFound("booking not found")
        return b

    async def list_bookings(self, *, owner: uuid.UUID | None, clinic: uuid.UUID | None, start_from: datetime | None,
                            size: int, token: str) -> tuple[list[Booking], str]:
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_bookings(owner=owner, clinic=clinic, start_from=start_from,
                                            after=paging.decode(token), limit=limit)
        return rows, paging.next_token(rows, limit, lambda b: (b.start.isoformat(), str(b.id)))
