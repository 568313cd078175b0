"""Reservations (ReserveSlot, GetReservation, ConfirmBooking) and the expiry of lapsed holds.

ReserveSlot holds a free unit of a slot for ``hold_ttl``; ConfirmBooking turns a paid hold into a
booking and writes its ``booking.created`` event to the outbox in the same transaction."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from booking_svc.domain import (
    EVENT_BOOKING_CREATED,
    TOPIC_BOOKING_CREATED,
    Booking,
    Clinic,
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
    ServiceNotBookable,
    SlotLost,
    SlotUnavailable,
    UnitTaken,
    check_pet_owner,
    check_slot,
    decide_confirm,
    decide_reclaim,
    request_fingerprint,
)
from booking_svc.handlers.catalog import CatalogHandlers
from booking_svc.ports import BookingRepository, EventEncoder, UnitOfWork
from petpro.clock import utcnow
from petpro.errors import InvalidArgument


class _Unverified(enum.Enum):
    """ReserveSlot's fast path decided nothing and compared no catalog version (see _try_hold)."""

    TOKEN = 0


UNVERIFIED: Final = _Unverified.TOKEN


@dataclass(frozen=True)
class ReserveCommand:
    request_id: str
    owner_user_id: uuid.UUID
    owner_email: str
    owner_name: str
    service_id: uuid.UUID
    pet_id: uuid.UUID
    start: datetime


class ReservationHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        read: UnitOfWork,
        catalog: CatalogHandlers,
        encode_created: EventEncoder,
        *,
        hold_ttl: timedelta,
        clock: Callable[[], datetime] = utcnow,
        traceparent: Callable[[], str] = lambda: "",
    ) -> None:
        self.uow = uow
        self.read = read
        self.catalog = catalog
        self.encode_created = encode_created
        self.hold_ttl = hold_ttl
        self.clock = clock
        self.traceparent = traceparent

    async def reserve(self, cmd: ReserveCommand) -> Reservation:
        """Hold a free unit of the slot.  The INSERT is the transaction's last statement and the
        exclusion constraint decides races: no savepoints, one transaction in the common case."""
        now = self.clock()
        fingerprint = request_fingerprint(cmd.service_id, cmd.pet_id, cmd.start.astimezone(UTC).isoformat())
        # the service as last loaded, its version checked by the fast path's statement itself (no round
        # trip of its own); not loaded yet, or the statement saw another version: read it as any lookup
        cached = self.catalog.cached_service(cmd.service_id)
        held: Reservation | _Unverified | None = UNVERIFIED
        if cached is not None and cached[1][0].bookable:
            version, (svc, clinic) = cached
            held = await self._try_hold(cmd, svc, clinic, fingerprint, now, version)
        if held is UNVERIFIED:
            version = await self.catalog.version()
            svc, clinic = await self.catalog.get_service(cmd.service_id, version)
            if not svc.bookable:
                raise ServiceNotBookable("this service is not bookable at the moment")
            held = await self._try_hold(cmd, svc, clinic, fingerprint, now, version)
        if isinstance(held, Reservation):
            return held
        for _ in range(svc.capacity + 1):  # a retry per unit lost to a concurrent reserver
            try:
                async with self.uow() as repo:
                    earlier = await repo.reservation_by_request(cmd.owner_user_id, cmd.request_id)
                    if earlier is not None:
                        return self._replay(earlier, fingerprint)
                    svc.check_species(check_pet_owner(await repo.pet(cmd.pet_id), cmd.owner_user_id).species)
                    slot = check_slot(clinic, svc, cmd.start, now)
                    # expired holds still count for the exclusion constraint: move them out first, then
                    # look (sweeping only when the look found no unit would race the expiry sweeper: it
                    # may release the hold between the look and the sweep, and the sweep then finds none)
                    await repo.expire_overlapping(svc.id, slot.start, slot.end, now)
                    taken = await repo.taken_units(svc.id, slot.start, slot.end)
                    free = [u for u in range(1, svc.capacity + 1) if u not in taken]
                    if not free:
                        raise SlotUnavailable(
                            "this slot is no longer available", metadata={"slot": slot.start.isoformat()}
                        )
                    res = Reservation(
                        lock_id=uuid.uuid4(),
                        owner_user_id=cmd.owner_user_id,
                        owner_email=cmd.owner_email,
                        owner_name=cmd.owner_name,
                        request_id=cmd.request_id,
                        request_hash=fingerprint,
                        service_id=svc.id,
                        clinic_id=clinic.id,
                        pet_id=cmd.pet_id,
                        unit=free[0],
                        start=slot.start,
                        end=slot.end,
                        state=ReservationState.HELD,
                        expires_at=now + self.hold_ttl,
                        amount_minor=svc.price_minor,
                        currency=svc.currency,
                        created_at=now,
                    )
                    await repo.insert_reservation(res)
                    return res
            except UnitTaken:
                if len(free) == 1:  # the last free unit went to a concurrent reserver
                    raise SlotUnavailable(
                        "this slot is no longer available", metadata={"slot": slot.start.isoformat()}
                    ) from None
            except DuplicateRequest:  # a concurrent retry with the same key won: answer as it did
                async with self.read() as repo:
                    earlier = await repo.reservation_by_request(cmd.owner_user_id, cmd.request_id)
                assert earlier is not None
                return self._replay(earlier, fingerprint)
        raise SlotUnavailable("this slot is no longer available")

    async def _try_hold(
        self,
        cmd: ReserveCommand,
        svc: Service,
        clinic: Clinic,
        fingerprint: str,
        now: datetime,
        catalog_version: int,
    ) -> Reservation | _Unverified | None:
        """The common case in one statement: a new request for a free slot is held, a slot whose
        units are all live-held or booked is refused at once, both only while the catalog is still
        at ``catalog_version`` (``svc`` and ``clinic`` are what it held then).  None: look closer (an
        idempotent retry, a bad slot, an expired hold still in the way, a race) on the transactional
        path.  UNVERIFIED: nothing done and the catalog version not compared (the catalog changed
        since, or the statement was not run): load the service again before deciding anything."""
        if svc.species_allowed:
            return UNVERIFIED  # the pet's species must be checked first: the full path does
        try:
            slot = check_slot(clinic, svc, cmd.start, now)
        except InvalidArgument:
            return UNVERIFIED  # the full path reports it, after the idempotent replay it owes a retry
        res = Reservation(
            lock_id=uuid.uuid4(),
            owner_user_id=cmd.owner_user_id,
            owner_email=cmd.owner_email,
            owner_name=cmd.owner_name,
            request_id=cmd.request_id,
            request_hash=fingerprint,
            service_id=svc.id,
            clinic_id=clinic.id,
            pet_id=cmd.pet_id,
            unit=0,
            start=slot.start,
            end=slot.end,
            state=ReservationState.HELD,
            expires_at=now + self.hold_ttl,
            amount_minor=svc.price_minor,
            currency=svc.currency,
            created_at=now,
        )
        async with self.read() as repo:
            attempt = await repo.try_hold(res, svc.capacity, catalog_version)
        if attempt.catalog_version != catalog_version:
            return UNVERIFIED
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
            raise SlotUnavailable(
                "this slot is no longer available", metadata={"slot": slot.start.isoformat()}
            )
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
                live, pet, version = held
                booking = Booking.confirm(live, payment_id, now)
                await self._add_booking(repo, booking, live, pet, now, version)
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
                free = await repo.try_set_state(
                    lock_id, ReservationState.CONFIRMED, now, payment_id=payment_id
                )
                reclaim = decide_reclaim(free)
                if reclaim.lost:
                    await repo.try_set_state(
                        lock_id,
                        reclaim.state,
                        now,
                        payment_id=payment_id,
                        failure_reason=reclaim.failure_reason,
                    )
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

    async def _add_booking(
        self,
        repo: BookingRepository,
        booking: Booking,
        res: Reservation,
        pet: Pet,
        now: datetime,
        catalog_version: int | None = None,
    ) -> None:
        """The booking and its ``booking.created`` event, in the caller's unit of work.  The service is
        looked up through that unit of work too (never a second connection: see petpro.db.Database),
        at ``catalog_version`` when the caller's statement read it."""
        svc, clinic = await self.catalog.get_service(res.service_id, catalog_version, repo)
        # the booking's own copy of the policy (the catalog memo never outlives a committed change)
        booking.policy = svc.policy
        event_id = uuid.uuid4()
        payload = self.encode_created(event_id, booking, res, svc, clinic, pet, now)
        await repo.add_booking_with_event(
            booking,
            event_id,
            TOPIC_BOOKING_CREATED,
            str(booking.id),
            EVENT_BOOKING_CREATED,
            payload,
            self.traceparent(),
        )

    async def expire_due(self) -> list[uuid.UUID]:
        async with self.uow() as repo:
            return await repo.expire_due(self.clock())
