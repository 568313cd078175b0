"""Booking use cases.  Each opens one unit of work (a transaction), applies the domain, commits;
events go to the outbox in the same transaction as the state change."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from booking_svc.domain import (
    Actor,
    Booking,
    BookingNotFound,
    BookingState,
    Clinic,
    ClinicNotFound,
    ConfirmDecision,
    DuplicateRequest,
    IdempotencyKeyReused,
    Pet,
    RefundState,
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
from booking_svc.ports import (
    BookingRepository,
    Change,
    ChangeEncoder,
    EventEncoder,
    RefundPort,
    RefundResult,
    UnitOfWork,
)
from petpro import paging
from petpro.cache import TtlMemo
from petpro.db import utcnow
from petpro.errors import InvalidArgument

TOPIC_BOOKING_CREATED = "booking.created"
EVENT_BOOKING_CREATED = "dev.petpro.booking.created.v1"
# lifecycle events: topic → CloudEvents type; all keyed by booking id
TOPIC_BOOKING_CANCELLED = "booking.cancelled"
TOPIC_BOOKING_RESCHEDULED = "booking.rescheduled"
TOPIC_BOOKING_COMPLETED = "booking.completed"
TOPIC_BOOKING_NO_SHOW = "booking.no-show"
LIFECYCLE_TOPICS = (TOPIC_BOOKING_CANCELLED, TOPIC_BOOKING_RESCHEDULED, TOPIC_BOOKING_COMPLETED, TOPIC_BOOKING_NO_SHOW)


def event_type(topic: str) -> str:
    return f"dev.petpro.{topic}.v1"


class NoRefunds:
    """A RefundPort for builds without a payment service: every attempt fails and is retried."""

    async def refund(self, payment_id: uuid.UUID, amount_minor: int, currency: str, request_id: str,
                     reason: str) -> RefundResult:
        raise RuntimeError("no payment service configured")


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
                 traceparent: Callable[[], str] = lambda: "", encode_change: ChangeEncoder | None = None,
                 refunds: RefundPort | None = None, refund_poll: timedelta = timedelta(seconds=2),
                 refund_retry_max: timedelta = timedelta(seconds=60)) -> None:
        self.encode_change = encode_change
        self.refunds: RefundPort = refunds or NoRefunds()
        self.refund_poll = refund_poll
        self.refund_retry_max = refund_retry_max
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
                # the policy as committed now (not the catalog memo) is copied onto the booking
                found = await repo.service_with_clinic(res.service_id)
                assert found is not None
                booking = Booking.confirm(res, payment_id, now, found[0].policy)
                await repo.add_booking(booking)
                pet = await repo.pet(res.pet_id)
                assert pet is not None
                event_id = uuid.uuid4()
                payload = self.encode_event(event_id, booking, res, found[0], found[1], pet, now)
                await repo.add_outbox(event_id, TOPIC_BOOKING_CREATED, str(booking.id), EVENT_BOOKING_CREATED,
                                      payload, self.traceparent())
                return booking
        raise SlotLost("payment arrived after the hold expired and the slot was taken; refund it")

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

    # -- lifecycle after confirmation ---------------------------------------------------------------
    # Each change: lock the booking row, answer a retried request id with the booking as it is,
    # apply the domain rule, write the change + its request id + its outbox event in ONE transaction.
    async def _lock(self, repo: BookingRepository, booking_id: uuid.UUID, *, owner: uuid.UUID | None,
                    clinic: uuid.UUID | None) -> Booking:
        b = await repo.booking(booking_id, for_update=True)
        if b is None or (owner is not None and b.owner_user_id != owner) or (
                clinic is not None and b.clinic_id != clinic):
            raise BookingNotFound("booking not found")  # never reveal somebody else's booking
        return b

    async def _replayed(self, repo: BookingRepository, request_id: uuid.UUID, booking: Booking, kind: str,
                        fingerprint: str) -> bool:
        """True when this request id already made its change (checked after the row lock, so a
        concurrent retry sees the first call's commit)."""
        earlier = await repo.lifecycle_request(request_id)
        if earlier is None:
            return False
        if (earlier[0], earlier[1], earlier[2]) != (booking.id, kind, fingerprint):
            raise IdempotencyKeyReused("this request id was used for a different request")
        return True

    async def _publish(self, repo: BookingRepository, change: Change, now: datetime) -> None:
        if self.encode_change is None:
            return
        b = change.booking
        res = await repo.reservation(b.lock_id)
        found = await repo.service_with_clinic(b.service_id)
        pet = await repo.pet(b.pet_id)
        assert res is not None and found is not None and pet is not None
        event_id = uuid.uuid4()
        payload = self.encode_change(event_id, change, res, found[0], found[1], pet, now)
        await repo.add_outbox(event_id, change.topic, str(b.id), event_type(change.topic), payload, self.traceparent())

    async def _change(self, request_id: str, booking_id: uuid.UUID, kind: str, fingerprint: str, *,
                      owner: uuid.UUID | None, clinic: uuid.UUID | None,
                      apply: Callable[[BookingRepository, Booking, datetime], Awaitable[Change]]) -> Booking:
        now = self.clock()
        rid = uuid.UUID(request_id)
        for attempt in range(2):
            try:
                async with self.uow() as repo:
                    b = await self._lock(repo, booking_id, owner=owner, clinic=clinic)
                    if await self._replayed(repo, rid, b, kind, fingerprint):
                        return b
                    change = await apply(repo, b, now)
                    await repo.add_lifecycle_request(rid, b.id, kind, fingerprint, now)
                    await self._publish(repo, change, now)
                    return change.booking
            except DuplicateRequest:  # the same request id raced us on another booking: answer as it did
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def cancel(self, request_id: str, booking_id: uuid.UUID, actor: Actor, reason: str, *,
                     owner: uuid.UUID | None = None, clinic: uuid.UUID | None = None) -> Booking:
        async def apply(repo: BookingRepository, b: Booking, now: datetime) -> Change:
            b.cancel(actor, reason, now)
            await repo.set_reservation_state(b.lock_id, ReservationState.CANCELLED, now)  # frees the slot
            await repo.save_booking_change(b, next_refund_at=now)  # the refund dispatcher picks it up
            return Change(TOPIC_BOOKING_CANCELLED, b, actor)

        fp = request_fingerprint("cancel", actor.value, owner or clinic, reason.strip())
        return await self._change(request_id, booking_id, "cancel", fp, owner=owner, clinic=clinic, apply=apply)

    async def reschedule(self, request_id: str, booking_id: uuid.UUID, owner: uuid.UUID,
                         new_start: datetime) -> Booking:
        async def apply(repo: BookingRepository, b: Booking, now: datetime) -> Change:
            found = await repo.service_with_clinic(b.service_id)
            assert found is not None
            svc, clinic = found
            slot = check_slot(clinic, svc, new_start, now)  # past, closed, off this service's grid: 400
            b.check_reschedule(slot.start, now)
            taken = await repo.taken_units_except(svc.id, slot.start, slot.end, b.lock_id)
            free = [u for u in range(1, svc.capacity + 1) if u not in taken]
            if not free and await repo.expire_overlapping(svc.id, slot.start, slot.end, now):
                taken = await repo.taken_units_except(svc.id, slot.start, slot.end, b.lock_id)
                free = [u for u in range(1, svc.capacity + 1) if u not in taken]
            unavailable = SlotUnavailable("this slot is no longer available",
                                          metadata={"slot": slot.start.isoformat(), "field": "slot_start_time"})
            if not free or not await repo.move_reservation(b.lock_id, free[0], slot.start, slot.end, now):
                raise unavailable  # the transaction rolls back: the booking keeps its slot
            previous = (b.start, b.end)
            b.reschedule(slot.start, slot.end, now)
            await repo.save_booking_change(b)
            return Change(TOPIC_BOOKING_RESCHEDULED, b, Actor.OWNER, *previous)

        fp = request_fingerprint("reschedule", owner, new_start.astimezone(UTC).isoformat())
        return await self._change(request_id, booking_id, "reschedule", fp, owner=owner, clinic=None, apply=apply)

    async def record_outcome(self, request_id: str, booking_id: uuid.UUID, clinic: uuid.UUID,
                             outcome: BookingState) -> Booking:
        topic = TOPIC_BOOKING_COMPLETED if outcome == BookingState.COMPLETED else TOPIC_BOOKING_NO_SHOW

        async def apply(repo: BookingRepository, b: Booking, now: datetime) -> Change:
            b.record_outcome(outcome, now)
            await repo.save_booking_change(b)
            return Change(topic, b, Actor.CLINIC)

        fp = request_fingerprint(outcome.value, clinic)
        return await self._change(request_id, booking_id, outcome.value.lower(), fp, owner=None, clinic=clinic,
                                  apply=apply)

    # -- refunds of cancelled bookings: sent until the provider accepts them, never lost ------------
    async def dispatch_refunds(self) -> int:
        """One pass: claim due open refunds (SKIP LOCKED, leased), send or re-check each at the payment
        service (idempotent on the booking's request id), record the outcome.  An error keeps the
        refund PENDING with a back-off; it is retried until it succeeds."""
        now = self.clock()
        async with self.uow() as repo:
            due = await repo.claim_due_refunds(now, now + self.refund_retry_max)
        for b in due:
            try:
                r = await self.refunds.refund(b.payment_id, b.refund_minor, b.currency, refund_request_id(b.id),
                                              f"booking {b.id} cancelled by {(b.cancelled_by or Actor.OWNER).lower()}")
            except Exception as exc:  # provider or payment service failing: retry with back-off
                delay = min(timedelta(seconds=2 ** min(b.refund_attempts, 6)), self.refund_retry_max)
                async with self.uow() as repo:
                    await repo.record_refund(b.id, RefundState.PENDING, b.provider_refund_id, str(exc),
                                             self.clock(), self.clock() + delay)
                continue
            state = REFUND_STATES.get(r.status, RefundState.PROCESSING)
            next_at = self.clock() + self.refund_poll if state == RefundState.PROCESSING else None
            async with self.uow() as repo:
                await repo.record_refund(b.id, state, r.provider_refund_id, "", self.clock(), next_at)
        return len(due)

    async def pending_refunds(self, size: int) -> list[Booking]:
        async with self.read() as repo:
            return await repo.open_refunds(paging.page_size(size))


REFUND_STATES = {"succeeded": RefundState.SUCCEEDED, "failed": RefundState.FAILED,
                 "canceled": RefundState.FAILED}


def refund_request_id(booking_id: uuid.UUID) -> str:
    """The one refund of a booking: its request id at the payment service (and Stripe's key from it)."""
    return f"booking-{booking_id}"
