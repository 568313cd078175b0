"""Booking use cases.  Each opens one unit of work (a transaction), applies the domain, commits;
events go to the outbox in the same transaction as the state change."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Final

from booking_svc.domain import (
    Actor,
    Booking,
    BookingNotFound,
    BookingState,
    Clinic,
    ClinicBooking,
    ClinicNotFound,
    Closure,
    ConfirmDecision,
    DuplicateRequest,
    IdempotencyKeyReused,
    Interval,
    Pet,
    PetNotFound,
    PetNotOwned,
    RefundState,
    Reservation,
    ReservationNotFound,
    ReservationState,
    Service,
    ServiceNotBookable,
    ServiceNotFound,
    SlotLost,
    SlotUnavailable,
    UnitTaken,
    bookable_window,
    check_etag,
    check_intervals,
    check_pet_owner,
    check_slot,
    check_time_zone,
    decide_confirm,
    decide_reclaim,
    outside_schedule,
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
from petpro import mesh, paging
from petpro.authn import Principal, require_clinic, require_platform_admin
from petpro.clock import utcnow
from petpro.errors import FieldViolation, InvalidArgument
from petpro.memo import VersionedMemo

TOPIC_BOOKING_CREATED = mesh.BOOKING_CREATED.name
EVENT_BOOKING_CREATED = mesh.BOOKING_CREATED.event_type
# lifecycle events: topic → CloudEvents type; all keyed by booking id (topics: the mesh manifest)
TOPIC_BOOKING_CANCELLED = mesh.BOOKING_CANCELLED.name
TOPIC_BOOKING_RESCHEDULED = mesh.BOOKING_RESCHEDULED.name
TOPIC_BOOKING_COMPLETED = mesh.BOOKING_COMPLETED.name
TOPIC_BOOKING_NO_SHOW = mesh.BOOKING_NO_SHOW.name
LIFECYCLE_TOPICS = (
    TOPIC_BOOKING_CANCELLED,
    TOPIC_BOOKING_RESCHEDULED,
    TOPIC_BOOKING_COMPLETED,
    TOPIC_BOOKING_NO_SHOW,
)


def event_type(topic: str) -> str:
    return f"dev.petpro.{topic}.v1"


class _Unverified(enum.Enum):
    """ReserveSlot's fast path decided nothing and compared no catalog version (see _try_hold)."""

    TOKEN = 0


UNVERIFIED: Final = _Unverified.TOKEN


class NoRefunds:
    """A RefundPort for builds without a payment service: every attempt fails and is retried."""

    async def refund(
        self, payment_id: uuid.UUID, amount_minor: int, currency: str, request_id: str, reason: str
    ) -> RefundResult:
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
    def __init__(
        self,
        uow: UnitOfWork,
        encode_event: EventEncoder,
        *,
        hold_ttl: timedelta,
        read: UnitOfWork | None = None,
        catalog_cache_entries: int = 4096,
        clock: Callable[[], datetime] = utcnow,
        traceparent: Callable[[], str] = lambda: "",
        encode_change: ChangeEncoder | None = None,
        refunds: RefundPort | None = None,
        refund_poll: timedelta = timedelta(seconds=2),
        refund_retry_max: timedelta = timedelta(seconds=60),
    ) -> None:
        self.encode_change = encode_change
        self.refunds: RefundPort = refunds or NoRefunds()
        self.refund_poll = refund_poll
        self.refund_retry_max = refund_retry_max
        self.uow = uow
        self.read = read or uow  # read-only use cases: no transaction needed
        self.catalog = VersionedMemo(catalog_cache_entries)
        self.encode_event = encode_event
        self.hold_ttl = hold_ttl
        self.clock = clock
        self.traceparent = traceparent

    # -- catalog -----------------------------------------------------------------------------------
    # The catalog changes rarely: reads go through a memo that compares the catalog version (bumped in
    # the transaction of every change, ClinicAdminService or seed) on every read, so a committed change
    # is seen by the next read on every replica; no TTL.
    async def _catalog_version(self, repo: BookingRepository | None = None) -> int:
        if repo is not None:  # inside the caller's unit of work: never a second connection
            return await repo.catalog_version()
        async with self.read() as own:
            return await own.catalog_version()

    async def _clinic(self, clinic_id: uuid.UUID, version: int | None = None) -> Clinic | None:
        async def load() -> Clinic | None:
            async with self.read() as repo:
                return await repo.clinic(clinic_id)

        if version is None:
            version = await self._catalog_version()
        return await self.catalog.get(("clinic", clinic_id), version, load)

    async def _service(
        self, service_id: uuid.UUID, version: int | None = None, repo: BookingRepository | None = None
    ) -> tuple[Service, Clinic] | None:
        """Through ``repo`` when the caller holds a unit of work (see petpro.db.Database), else a read."""

        async def load() -> tuple[Service, Clinic] | None:
            if repo is not None:
                return await repo.service_with_clinic(service_id)
            async with self.read() as own:
                return await own.service_with_clinic(service_id)

        if version is None:
            version = await self._catalog_version(repo)
        return await self.catalog.get(("service", service_id), version, load)

    async def list_clinics(self, size: int, token: str) -> tuple[list[Clinic], str]:
        limit = paging.page_size(size)
        after = paging.decode(token)

        async def load() -> list[Clinic]:
            async with self.read() as repo:
                return await repo.list_clinics(after, limit)

        rows = await self.catalog.get(("clinics", after, limit), await self._catalog_version(), load)
        return rows, paging.next_token(rows, limit, lambda c: (c.name, str(c.id)))

    async def get_clinic(self, clinic_id: uuid.UUID) -> Clinic:
        clinic = await self._clinic(clinic_id)
        if clinic is None:
            raise ClinicNotFound("clinic not found")
        return clinic

    async def list_services(self, clinic_id: uuid.UUID, size: int, token: str) -> tuple[list[Service], str]:
        limit = paging.page_size(size)
        after = paging.decode(token)
        version = await self._catalog_version()  # one read for both lookups of this request
        if await self._clinic(clinic_id, version) is None:
            raise ClinicNotFound("clinic not found")

        async def load() -> list[Service]:
            async with self.read() as repo:
                return await repo.list_services(clinic_id, after, limit)

        rows = await self.catalog.get(("services", clinic_id, after, limit), version, load)
        return rows, paging.next_token(rows, limit, lambda s: (s.name, str(s.id)))

    async def get_service(
        self, service_id: uuid.UUID, version: int | None = None, repo: BookingRepository | None = None
    ) -> tuple[Service, Clinic]:
        found = await self._service(service_id, version, repo)
        if found is None:
            raise ServiceNotFound("service not found")
        return found

    async def availability(
        self, service_id: uuid.UUID, day: str
    ) -> tuple[Service, Clinic, list[AvailabilitySlot]]:
        try:
            local_day = date.fromisoformat(day)
        except ValueError:
            raise InvalidArgument.field("date", "is not a calendar date", "DATE_INVALID") from None
        now = self.clock()
        svc, clinic = await self.get_service(service_id)
        grid = slot_grid(clinic, svc, local_day) if svc.bookable else []
        earliest, latest = bookable_window(svc, now)
        async with self.read() as repo:
            taken = await repo.active_counts(svc.id, grid[0].start, grid[-1].end, now) if grid else []
        out = []
        for g in grid:
            used = sum(1 for s, e in taken if s < g.end and g.start < e)
            open_for_booking = g.start > now and earliest <= g.start <= latest
            remaining = max(svc.capacity - used, 0) if open_for_booking else 0
            out.append(AvailabilitySlot(g.start, g.end, remaining))
        return svc, clinic, out

    # -- pets ----------------------------------------------------------------------------------------
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

    # -- reservations ------------------------------------------------------------------------------
    async def reserve(self, cmd: ReserveCommand) -> Reservation:
        """Hold a free unit of the slot.  The INSERT is the transaction's last statement and the
        exclusion constraint decides races: no savepoints, one transaction in the common case."""
        now = self.clock()
        fingerprint = request_fingerprint(cmd.service_id, cmd.pet_id, cmd.start.astimezone(UTC).isoformat())
        # the service as last loaded, its version checked by the fast path's statement itself (no round
        # trip of its own); not loaded yet, or the statement saw another version: read it as any lookup
        cached = self.catalog.peek(("service", cmd.service_id))
        held: Reservation | _Unverified | None = UNVERIFIED
        if cached is not None and cached[1][0].bookable:
            version, (svc, clinic) = cached
            held = await self._try_hold(cmd, svc, clinic, fingerprint, now, version)
        if held is UNVERIFIED:
            version = await self._catalog_version()
            svc, clinic = await self.get_service(cmd.service_id, version)
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
        svc, clinic = await self.get_service(res.service_id, catalog_version, repo)
        # the booking's own copy of the policy (the catalog memo never outlives a committed change)
        booking.policy = svc.policy
        event_id = uuid.uuid4()
        payload = self.encode_event(event_id, booking, res, svc, clinic, pet, now)
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

    # -- bookings ------------------------------------------------------------------------------------
    async def get_booking(self, booking_id: uuid.UUID, owner: uuid.UUID | None) -> Booking:
        async with self.read() as repo:
            b = await repo.booking(booking_id)
        if b is None or (owner is not None and b.owner_user_id != owner):
            raise BookingNotFound("booking not found")
        return b

    async def list_bookings(
        self,
        *,
        owner: uuid.UUID | None,
        clinic: uuid.UUID | None,
        start_from: datetime | None,
        size: int,
        token: str,
    ) -> tuple[list[Booking], str]:
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_bookings(
                owner=owner, clinic=clinic, start_from=start_from, after=paging.decode(token), limit=limit
            )
        return rows, paging.next_token(rows, limit, lambda b: (b.start.isoformat(), str(b.id)))

    # -- lifecycle after confirmation ---------------------------------------------------------------
    # Each change: lock the booking row, answer a retried request id with the booking as it is,
    # apply the domain rule, write the change + its request id + its outbox event in ONE transaction.
    async def _lock(
        self,
        repo: BookingRepository,
        booking_id: uuid.UUID,
        *,
        owner: uuid.UUID | None,
        clinic: uuid.UUID | None,
    ) -> Booking:
        b = await repo.booking(booking_id, for_update=True)
        if (
            b is None
            or (owner is not None and b.owner_user_id != owner)
            or (clinic is not None and b.clinic_id != clinic)
        ):
            raise BookingNotFound("booking not found")  # never reveal somebody else's booking
        return b

    async def _replayed(
        self, repo: BookingRepository, request_id: uuid.UUID, booking: Booking, kind: str, fingerprint: str
    ) -> bool:
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
        await repo.add_outbox(
            event_id, change.topic, str(b.id), event_type(change.topic), payload, self.traceparent()
        )

    async def _change(
        self,
        request_id: str,
        booking_id: uuid.UUID,
        kind: str,
        fingerprint: str,
        *,
        owner: uuid.UUID | None,
        clinic: uuid.UUID | None,
        apply: Callable[[BookingRepository, Booking, datetime], Awaitable[Change]],
    ) -> Booking:
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

    async def cancel(
        self,
        request_id: str,
        booking_id: uuid.UUID,
        actor: Actor,
        reason: str,
        *,
        owner: uuid.UUID | None = None,
        clinic: uuid.UUID | None = None,
    ) -> Booking:
        async def apply(repo: BookingRepository, b: Booking, now: datetime) -> Change:
            b.cancel(actor, reason, now)
            await repo.set_reservation_state(b.lock_id, ReservationState.CANCELLED, now)  # frees the slot
            await repo.save_booking_change(b, next_refund_at=now)  # the refund dispatcher picks it up
            return Change(TOPIC_BOOKING_CANCELLED, b, actor)

        fp = request_fingerprint("cancel", actor.value, owner or clinic, reason.strip())
        return await self._change(
            request_id, booking_id, "cancel", fp, owner=owner, clinic=clinic, apply=apply
        )

    async def reschedule(
        self, request_id: str, booking_id: uuid.UUID, owner: uuid.UUID, new_start: datetime
    ) -> Booking:
        async def apply(repo: BookingRepository, b: Booking, now: datetime) -> Change:
            found = await repo.service_with_clinic(b.service_id)
            assert found is not None
            svc, clinic = found
            slot = check_slot(clinic, svc, new_start, now)  # past, closed, off this service's grid: 400
            b.check_reschedule(slot.start, now)
            await repo.expire_overlapping(svc.id, slot.start, slot.end, now)  # first: see reserve
            taken = await repo.taken_units_except(svc.id, slot.start, slot.end, b.lock_id)
            free = [u for u in range(1, svc.capacity + 1) if u not in taken]
            unavailable = SlotUnavailable(
                "this slot is no longer available",
                metadata={"slot": slot.start.isoformat(), "field": "slot_start_time"},
            )
            if not free or not await repo.move_reservation(b.lock_id, free[0], slot.start, slot.end, now):
                raise unavailable  # the transaction rolls back: the booking keeps its slot
            previous = (b.start, b.end)
            b.reschedule(slot.start, slot.end, now)
            await repo.save_booking_change(b)
            return Change(TOPIC_BOOKING_RESCHEDULED, b, Actor.OWNER, *previous)

        fp = request_fingerprint("reschedule", owner, new_start.astimezone(UTC).isoformat())
        return await self._change(
            request_id, booking_id, "reschedule", fp, owner=owner, clinic=None, apply=apply
        )

    async def record_outcome(
        self, request_id: str, booking_id: uuid.UUID, clinic: uuid.UUID, outcome: BookingState
    ) -> Booking:
        topic = TOPIC_BOOKING_COMPLETED if outcome == BookingState.COMPLETED else TOPIC_BOOKING_NO_SHOW

        async def apply(repo: BookingRepository, b: Booking, now: datetime) -> Change:
            b.record_outcome(outcome, now)
            await repo.save_booking_change(b)
            return Change(topic, b, Actor.CLINIC)

        fp = request_fingerprint(outcome.value, clinic)
        return await self._change(
            request_id, booking_id, outcome.value.lower(), fp, owner=None, clinic=clinic, apply=apply
        )

    # -- refunds of cancelled bookings: sent until the provider accepts them, never lost ------------
    async def dispatch_refunds(self) -> int:
        """One pass: claim due open refunds (SKIP LOCKED, leased), send or re-check each at the payment
        service (idempotent on the booking's request id), record the outcome.  An error keeps the
        refund PENDING with a back-off; it is retried until it succeeds.  A refund the provider accepted
        and then failed (Stripe: ``pending`` → ``failed``, e.g. an expired card) shows FAILED and is made
        again as a new refund, under the request id of the booking's next round: only a failed refund
        is ever replaced, so at most one succeeds."""
        now = self.clock()
        async with self.uow() as repo:
            due = await repo.claim_due_refunds(now, now + self.refund_retry_max)
        for b in due:
            # a FAILED refund is never asked again: the next round is a new refund under a new key
            rnd = b.refund_round + 1 if b.refund_state == RefundState.FAILED else b.refund_round
            try:
                r = await self.refunds.refund(
                    b.payment_id,
                    b.refund_minor,
                    b.currency,
                    refund_request_id(b.id, rnd),
                    f"booking {b.id} cancelled by {(b.cancelled_by or Actor.OWNER).lower()}",
                )
            except Exception as exc:  # provider or payment service failing: retry with back-off
                delay = min(timedelta(seconds=2 ** min(b.refund_attempts, 6)), self.refund_retry_max)
                async with self.uow() as repo:
                    await repo.record_refund(
                        b.id,
                        b.refund_state,
                        b.provider_refund_id,
                        str(exc),
                        self.clock(),
                        self.clock() + delay,
                    )
                continue
            state = REFUND_STATES.get(r.status, RefundState.PROCESSING)
            error, next_at = "", None
            if state == RefundState.FAILED:  # accepted, then failed: shown as FAILED, a new refund follows
                error = f"refund {r.provider_refund_id} failed at the provider (round {rnd})"
                next_at = self.clock() + min(timedelta(seconds=2 ** min(rnd, 6)), self.refund_retry_max)
            elif state == RefundState.PROCESSING:
                next_at = self.clock() + self.refund_poll
            async with self.uow() as repo:
                await repo.record_refund(
                    b.id,
                    state,
                    r.provider_refund_id,
                    error,
                    self.clock(),
                    next_at,
                    refund_round=rnd,
                    was_round=b.refund_round,
                )
        return len(due)

    async def pending_refunds(self, size: int) -> list[Booking]:
        async with self.read() as repo:
            return await repo.open_refunds(paging.page_size(size))


REFUND_STATES = {
    "succeeded": RefundState.SUCCEEDED,
    "failed": RefundState.FAILED,
    "canceled": RefundState.FAILED,
}


def refund_request_id(booking_id: uuid.UUID, refund_round: int = 0) -> str:
    """A booking's refund in one round: its request id at the payment service (and Stripe's key from
    it).  Round 0 is the booking's refund; round n the n-th new one after the provider failed one."""
    return f"booking-{booking_id}" if refund_round == 0 else f"booking-{booking_id}-refund-{refund_round}"


# -- clinic operations (ClinicAdminService) ----------------------------------------------------------
CLINIC_FIELDS = ("name", "address", "phone", "email", "time_zone")
SERVICE_FIELDS = (
    "name",
    "description",
    "duration_minutes",
    "price",
    "capacity",
    "species_allowed",
    "buffer_after_minutes",
    "min_notice_minutes",
    "max_horizon_days",
    "active",
)
MAX_SCHEDULE_RANGE = timedelta(days=31)


def check_mask(paths: list[str], allowed: tuple[str, ...]) -> list[str]:
    """AIP-134: the update_mask's paths, each a field that may be updated."""
    bad = [p for p in paths if p not in allowed]
    if bad:
        raise InvalidArgument.field(
            "update_mask",
            f"cannot update {', '.join(bad)}; updatable: {', '.join(allowed)}",
            "UPDATE_MASK_INVALID",
        )
    if not paths:
        raise InvalidArgument.field("update_mask", "names no field to update", "UPDATE_MASK_EMPTY")
    return paths


@dataclass(frozen=True)
class ClinicProfile:
    """What a create or update of a clinic gives (the servicer maps the proto to it)."""

    name: str = ""
    time_zone: str = ""
    address: str = ""
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class WeeklyHours:
    """The request's weekly hours: (field path, weekday key, interval) each."""

    entries: tuple[tuple[str, str, Interval], ...]

    def check(self) -> dict[str, list[Interval]]:
        by_day: dict[str, list[tuple[str, Interval]]] = {}
        for path, day, iv in self.entries:
            by_day.setdefault(day, []).append((path, iv))
        violations = [v for ivs in by_day.values() for v in check_intervals(ivs)]
        if violations:
            raise InvalidArgument(
                "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
            )
        return {
            day: sorted((iv for _, iv in ivs), key=lambda iv: iv.start_minutes) for day, ivs in by_day.items()
        }


def _day(value: str, field_path: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument.field(field_path, "is not a calendar date", "DATE_INVALID") from None


class ClinicAdminHandlers:
    """Catalog and calendar changes.  Every change runs in one transaction that also bumps the catalog
    version (:meth:`BookingRepository.bump_catalog`), so no cached read offers what it removed.  The
    membership check comes first, with the principal the servicer authenticated."""

    def __init__(self, bookings: BookingHandlers) -> None:
        self.b = bookings
        self.uow = bookings.uow
        self.read = bookings.read
        self.clock = bookings.clock

    async def _clinic_locked(self, repo: BookingRepository, clinic_id: uuid.UUID) -> Clinic:
        clinic = await repo.clinic(clinic_id, for_update=True)
        if clinic is None:
            raise ClinicNotFound("clinic not found")
        return clinic

    async def _affected(self, repo: BookingRepository, clinic: Clinic) -> list[Booking]:
        """Upcoming confirmed bookings that the clinic's calendar (as changed) no longer covers."""
        return [
            b
            for b in await repo.upcoming_bookings(clinic.id, self.clock())
            if outside_schedule(clinic, b.start, b.end)
        ]

    # -- clinics -----------------------------------------------------------------------------------
    async def create_clinic(
        self,
        caller: Principal,
        profile: ClinicProfile,
        hours: WeeklyHours,
        request_id: uuid.UUID | None = None,
    ) -> Clinic:
        require_platform_admin(caller)
        violations = []
        if not profile.name.strip():
            violations.append(FieldViolation("clinic.name", "is required", "REQUIRED"))
        if violations:
            raise InvalidArgument("clinic.name: is required", violations=violations)
        check_time_zone(profile.time_zone)
        clinic = Clinic(
            uuid.uuid4(),
            profile.name.strip(),
            profile.time_zone,
            hours.check(),
            profile.address.strip(),
            profile.phone.strip(),
            profile.email.strip().lower(),
        )
        async with self.uow() as repo:
            stored = await repo.add_clinic(clinic, request_id)
            if stored != clinic.id:  # a retry (AIP-155): the first answer
                first = await repo.clinic(stored)
                assert first is not None
                return first
            await repo.bump_catalog()
        return clinic

    async def update_clinic(
        self, caller: Principal, clinic_id: uuid.UUID, profile: ClinicProfile, paths: list[str], etag: str
    ) -> Clinic:
        require_clinic(caller, str(clinic_id), admin=True)
        check_mask(paths, CLINIC_FIELDS)
        if "time_zone" in paths:
            check_time_zone(profile.time_zone)
        if "name" in paths and not profile.name.strip():
            raise InvalidArgument.field("clinic.name", "is required", "REQUIRED")
        async with self.uow() as repo:
            clinic = await self._clinic_locked(repo, clinic_id)
            check_etag(clinic.etag, etag)
            for path in paths:
                value = getattr(profile, path).strip()
                setattr(clinic, path, value.lower() if path == "email" else value)
            await repo.save_clinic(clinic)
            await repo.bump_catalog()
        return clinic

    async def set_opening_hours(
        self, caller: Principal, clinic_id: uuid.UUID, hours: WeeklyHours, etag: str
    ) -> tuple[Clinic, list[Booking]]:
        require_clinic(caller, str(clinic_id), admin=True)
        weekly = hours.check()
        async with self.uow() as repo:
            clinic = await self._clinic_locked(repo, clinic_id)
            check_etag(clinic.etag, etag)
            clinic.opening_hours = weekly
            await repo.save_clinic(clinic)
            await repo.bump_catalog()
            return clinic, await self._affected(repo, clinic)

    async def create_closure(
        self, caller: Principal, clinic_id: uuid.UUID, start: str, end: str, reason: str
    ) -> tuple[Closure, list[Booking]]:
        require_clinic(caller, str(clinic_id), admin=True)
        first, last = _day(start, "closure.start_date"), _day(end, "closure.end_date")
        if last < first:
            raise InvalidArgument.field(
                "closure.end_date", "must not be before start_date", "CLOSURE_END_BEFORE_START"
            )
        if (last - first).days > 366:
            raise InvalidArgument.field(
                "closure.end_date", "a closure lasts at most a year", "CLOSURE_TOO_LONG"
            )
        closure = Closure(uuid.uuid4(), clinic_id, first, last, reason.strip())
        async with self.uow() as repo:
            clinic = await self._clinic_locked(repo, clinic_id)
            await repo.add_closure(closure)
            await repo.bump_catalog()
            clinic.closures.append(closure)
            return closure, await self._affected(repo, clinic)

    async def list_closures(
        self, caller: Principal, clinic_id: uuid.UUID, size: int, token: str
    ) -> tuple[list[Closure], str]:
        require_clinic(caller, str(clinic_id))
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_closures(clinic_id, paging.decode(token), limit)
        return rows, paging.next_token(rows, limit, lambda c: (c.start_date.isoformat(), str(c.id)))

    async def delete_closure(self, caller: Principal, clinic_id: uuid.UUID, closure_id: uuid.UUID) -> None:
        require_clinic(caller, str(clinic_id), admin=True)
        async with self.uow() as repo:
            if await repo.delete_closure(clinic_id, closure_id):
                await repo.bump_catalog()

    async def set_day_override(
        self, caller: Principal, clinic_id: uuid.UUID, day: str, intervals: list[tuple[str, Interval]]
    ) -> tuple[date, list[Interval], list[Booking]]:
        require_clinic(caller, str(clinic_id), admin=True)
        local_day = _day(day, "override.date")
        violations = check_intervals(intervals)
        if violations:
            raise InvalidArgument(
                "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
            )
        ivs = sorted((iv for _, iv in intervals), key=lambda iv: iv.start_minutes)
        async with self.uow() as repo:
            clinic = await self._clinic_locked(repo, clinic_id)
            await repo.put_override(clinic_id, local_day, ivs)
            await repo.bump_catalog()
            clinic.overrides[local_day] = ivs
            return local_day, ivs, await self._affected(repo, clinic)

    async def delete_day_override(self, caller: Principal, clinic_id: uuid.UUID, day: str) -> None:
        require_clinic(caller, str(clinic_id), admin=True)
        local_day = _day(day, "date")
        async with self.uow() as repo:
            if await repo.delete_override(clinic_id, local_day):
                await repo.bump_catalog()

    # -- services ----------------------------------------------------------------------------------
    async def create_service(
        self, caller: Principal, clinic_id: uuid.UUID, draft: Service, request_id: uuid.UUID | None = None
    ) -> Service:
        require_clinic(caller, str(clinic_id), admin=True)
        svc = replace(
            draft,
            id=uuid.uuid4(),
            clinic_id=clinic_id,
            name=draft.name.strip(),
            description=draft.description.strip(),
            archived=False,
            version=1,
        )
        svc.check_rules()
        async with self.uow() as repo:
            await self._clinic_locked(repo, clinic_id)
            stored = await repo.add_service(svc, request_id)
            if stored != svc.id:  # a retry (AIP-155): the first answer, if it is this clinic's
                first = await repo.service(stored)
                if first is None or first.clinic_id != clinic_id:
                    raise IdempotencyKeyReused("this request_id was used for another clinic's service")
                return first
            await repo.bump_catalog()
        return svc

    async def _service_locked(
        self, repo: BookingRepository, caller: Principal, service_id: uuid.UUID
    ) -> Service:
        svc = await repo.service(service_id, for_update=True)
        if svc is None or caller.clinic_role(str(svc.clinic_id)) is None:
            raise ServiceNotFound("service not found")  # another clinic's service is not revealed
        require_clinic(caller, str(svc.clinic_id), admin=True)
        return svc

    async def update_service(
        self, caller: Principal, service_id: uuid.UUID, changes: Service, paths: list[str], etag: str
    ) -> Service:
        check_mask(paths, SERVICE_FIELDS)
        async with self.uow() as repo:
            svc = await self._service_locked(repo, caller, service_id)
            check_etag(svc.etag, etag)
            if svc.archived:
                raise ServiceNotBookable("an archived service cannot be changed")
            for path in paths:
                if path == "price":
                    svc.price_minor, svc.currency = changes.price_minor, changes.currency
                else:
                    setattr(svc, path, getattr(changes, path))
            svc.name, svc.description = svc.name.strip(), svc.description.strip()
            svc.check_rules()
            # existing bookings keep their own time range and amount: nothing else to touch
            await repo.save_service(svc)
            await repo.bump_catalog()
        return svc

    async def archive_service(self, caller: Principal, service_id: uuid.UUID, etag: str) -> Service:
        async with self.uow() as repo:
            svc = await self._service_locked(repo, caller, service_id)
            check_etag(svc.etag, etag)
            if not svc.archived:
                svc.archived, svc.active = True, False
                await repo.save_service(svc, archive_at=self.clock())
                await repo.bump_catalog()
        return svc

    # -- the schedule ------------------------------------------------------------------------------
    async def list_clinic_bookings(
        self,
        caller: Principal,
        clinic_id: uuid.UUID,
        start: datetime,
        end: datetime,
        states: list[str],
        size: int,
        token: str,
    ) -> tuple[list[ClinicBooking], str]:
        require_clinic(caller, str(clinic_id))
        if end <= start:
            raise InvalidArgument.field("end_time", "must be after start_time", "RANGE_EMPTY")
        if end - start > MAX_SCHEDULE_RANGE:
            raise InvalidArgument.field("end_time", "at most 31 days after start_time", "RANGE_TOO_LONG")
        limit = paging.page_size(size)
        async with self.read() as repo:
            rows = await repo.list_clinic_bookings(clinic_id, start, end, states, paging.decode(token), limit)
        return rows, paging.next_token(
            rows, limit, lambda r: (r.booking.start.isoformat(), str(r.booking.id))
        )
