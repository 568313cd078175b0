"""Reservations (ReserveSlot, GetReservation, ConfirmBooking) and the expiry of lapsed holds.

ReserveSlot holds a free unit of a slot for ``hold_ttl``; ConfirmBooking turns a paid reservation into
a booking and writes its ``booking.created`` event to the outbox in the same transaction.  Which unit
is free, and that lapsed holds never block, is decided once, by the repository's statements
(``hold``, ``try_set_state``); whether a payment confirms, by the domain (``decide_confirm``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta

from booking_svc.domain import (
    EVENT_BOOKING_CREATED,
    TOPIC_BOOKING_CREATED,
    Assignment,
    Booking,
    Busy,
    Clinic,
    ClinicSchedule,
    ConfirmDecision,
    DuplicateRequest,
    GridSlot,
    IdempotencyKeyReused,
    Pet,
    PetBusy,
    ProviderTaken,
    Reservation,
    ReservationClosed,
    ReservationNotFound,
    ReservationState,
    ResourceTaken,
    Service,
    ServiceNotBookable,
    SlotLost,
    SlotUnavailable,
    check_pet_owner,
    check_slot,
    claim_end,
    decide_confirm,
    decide_reclaim,
    hold_claims,
    hold_options,
    hold_unit,
    local_day_range,
    plan_hold,
    request_fingerprint,
    require_items,
    scheduled,
    subjects_of,
)
from booking_svc.handlers.catalog import CatalogHandlers
from booking_svc.ports import (
    BookingRepository,
    EventEncoder,
    OutboxEvent,
    ReservationChanges,
    ReservationNews,
    UnitOfWork,
)
from petpro.clock import utcnow
from petpro.errors import DomainError


@dataclass(frozen=True)
class ReserveCommand:
    request_id: str
    owner_user_id: uuid.UUID
    owner_email: str
    owner_name: str
    service_id: uuid.UUID
    pet_id: uuid.UUID
    start: datetime
    _: KW_ONLY  # the optional parts by name: a positional one would land in the wrong field
    owner_locale: str = ""
    provider_id: uuid.UUID | None = None  # scheduled services: the wanted provider, None = any


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
        changes: ReservationChanges | None = None,
        statements: UnitOfWork | None = None,
    ) -> None:
        self.uow = uow
        self.read = read
        # the hot single statements (the hold, GetReservation's read), all plain SQL: a psycopg
        # connection of its own pool (petpro.db.Database.statements), else the reader's
        self.statements = statements or read
        self.catalog = catalog
        self.encode_created = encode_created
        self.hold_ttl = hold_ttl
        self.clock = clock
        self.traceparent = traceparent
        self.changes = changes  # None: GetReservation answers at once (no long-poll)

    async def reserve(self, cmd: ReserveCommand) -> Reservation:
        """Hold the lowest free unit of the slot: one statement (``BookingRepository.hold``) on the read
        connection in the common case, no transaction.  The service comes from the catalog memo
        unchecked; the statement compares the catalog's version itself and inserts nothing once it
        moved on, and the request is then decided on the service loaded again."""
        now = self.clock()
        fingerprint = request_fingerprint(cmd.service_id, cmd.pet_id, cmd.start.astimezone(UTC).isoformat())
        if cmd.provider_id is not None:
            fingerprint = request_fingerprint(fingerprint, cmd.provider_id)
        cached = self.catalog.cached_service(cmd.service_id)
        verified = cached is None  # loaded for this request: the current catalog
        version, (svc, clinic) = cached or await self._load_service(cmd.service_id)
        races = reloads = 0
        while True:
            if scheduled(svc):  # a service with providers or items: its own transaction
                held = await self._reserve_scheduled(cmd, fingerprint, now)
                if held is not None:
                    return held
                version, (svc, clinic) = await self._load_service(cmd.service_id)  # no longer: capacity
                verified = True
                continue
            try:
                res = await self._new_hold(cmd, svc, clinic, fingerprint, now)
            except DomainError:
                if not verified:  # decided on the memo's copy: decide again on the current catalog
                    version, (svc, clinic) = await self._load_service(cmd.service_id)
                    verified = True
                    continue
                earlier = await self._earlier(cmd)
                if earlier is None:
                    raise
                return self._replay(earlier, fingerprint)  # a retry gets its first answer, even now
            async with self.statements() as repo:
                attempt = await repo.hold(res, svc.capacity, version)
            if attempt.inserted:
                assert attempt.unit is not None
                res.unit = attempt.unit
                return res
            if attempt.catalog_version != version and reloads < 3:  # the catalog moved on: load again
                reloads += 1
                version, (svc, clinic) = await self._load_service(cmd.service_id, attempt.catalog_version)
                verified = True
                continue
            if attempt.earlier:
                earlier = await self._earlier(cmd)
                assert earlier is not None  # request ids are never deleted
                return self._replay(earlier, fingerprint)
            check_pet_owner(attempt.pet_owner, cmd.owner_user_id)
            if attempt.conflict == "pet":
                raise PetBusy(
                    "this pet already has an appointment at that time", metadata={"field": "pet_id"}
                )
            if attempt.unit is None or races > svc.capacity:
                raise SlotUnavailable(
                    "this slot is no longer available", metadata={"slot": res.start.isoformat()}
                )
            races += 1  # a concurrent transaction won that unit (or this request id): ask again

    async def _load_service(
        self, service_id: uuid.UUID, version: int | None = None
    ) -> tuple[int, tuple[Service, Clinic]]:
        """The service and its clinic at the catalog's current version (read first if not given)."""
        if version is None:
            version = await self.catalog.version()
        return version, await self.catalog.get_service(service_id, version)

    async def _new_hold(
        self,
        cmd: ReserveCommand,
        svc: Service,
        clinic: Clinic,
        fingerprint: str,
        now: datetime,
        *,
        pet: Pet | None = None,
    ) -> Reservation:
        """The hold ``cmd`` asks for, once the rules the statement does not check hold: the service
        is bookable, the slot on its grid and within its window, and (for a service limited to some
        species) the pet one of them, which takes a read first."""
        if not svc.bookable:
            raise ServiceNotBookable("this service is not bookable at the moment")
        if svc.species_allowed and pet is not None:
            svc.check_species(pet.species)
        elif svc.species_allowed:  # a pet's owner and species never change: checked before the statement
            async with self.read() as repo:
                pet = await repo.pet(cmd.pet_id)
            check_pet_owner(pet.owner_user_id if pet else None, cmd.owner_user_id)
            assert pet is not None
            svc.check_species(pet.species)
        return self._reservation(cmd, svc, clinic, check_slot(clinic, svc, cmd.start, now), fingerprint, now)

    def _reservation(
        self,
        cmd: ReserveCommand,
        svc: Service,
        clinic: Clinic,
        slot: GridSlot,
        fingerprint: str,
        now: datetime,
    ) -> Reservation:
        return Reservation(
            lock_id=uuid.uuid4(),
            owner_user_id=cmd.owner_user_id,
            owner_email=cmd.owner_email,
            owner_name=cmd.owner_name,
            owner_locale=cmd.owner_locale,
            request_id=cmd.request_id,
            request_hash=fingerprint,
            service_id=svc.id,
            clinic_id=clinic.id,
            pet_id=cmd.pet_id,
            unit=0,  # the statement picks it
            start=slot.start,
            end=slot.end,
            state=ReservationState.HELD,
            expires_at=now + self.hold_ttl,
            amount_minor=svc.price_minor,
            currency=svc.currency,
            created_at=now,
            claim_end=claim_end(svc, slot.end),
        )

    async def _reserve_scheduled(
        self, cmd: ReserveCommand, fingerprint: str, now: datetime
    ) -> Reservation | None:
        """The scheduled hold, or None when the service (at the current catalog) needs neither providers
        nor items any more: the caller takes the capacity path."""
        try:
            return await self._hold_scheduled(cmd, fingerprint, now)
        except DuplicateRequest:  # a retry of this request committed meanwhile: its first answer
            earlier = await self._earlier(cmd)
            assert earlier is not None
            return self._replay(earlier, fingerprint)
        except DomainError:  # refused: unless it is a retry, whose first answer stands (even now)
            earlier = await self._earlier(cmd)
            if earlier is None:
                raise
            return self._replay(earlier, fingerprint)

    async def _hold_scheduled(
        self, cmd: ReserveCommand, fingerprint: str, now: datetime
    ) -> Reservation | None:
        """A service with providers or resources: one transaction that expires the lapsed holds in the
        way, reads the live claims of the clinic (and of the pet) that day, and inserts the hold with
        all its claims in a savepoint per candidate.  A lost race on the provider moves on to the next
        candidate (never the same one twice); on an item, the items are picked again (bounded)."""
        cached = self.catalog.cached_service(cmd.service_id)
        if cached is None:
            cached = await self._load_service(cmd.service_id)
        version, (svc, clinic) = cached
        if not scheduled(svc):  # the service lost its providers and items meanwhile
            return None
        sched = await self.catalog.schedule(clinic.id, version)
        held = await self._hold_in_one(cmd, svc, clinic, sched, version, fingerprint, now)
        if held is not None:
            return held
        async with self.read() as repo:  # autocommit: one read, then one all-or-nothing insert per try
            start = cmd.start.astimezone(UTC)
            until = claim_end(svc, start + svc.duration)
            lo, hi = start, until
            if cmd.provider_id is None:  # "any" counts each candidate's claims that local day
                day_lo, day_hi = local_day_range(clinic, start.astimezone(clinic.zone).date())
                lo, hi = min(day_lo, start), max(day_hi, until)
            subjects = subjects_of(svc, sched, cmd.pet_id)
            seen, owner, species, claims = await repo.prepare_hold(
                clinic.id, cmd.pet_id, start, until, lo, hi, now, subjects
            )
            if seen != version:  # the catalog moved on: decide on the current one
                version = seen
                svc, clinic = await self.catalog.get_service(cmd.service_id, version, repo)
                if not scheduled(svc):
                    return None
                sched = await self.catalog.schedule(clinic.id, version, repo)
                subjects = subjects_of(svc, sched, cmd.pet_id)
                claims = await repo.live_claims(clinic.id, cmd.pet_id, lo, hi, now, subjects)
            check_pet_owner(owner, cmd.owner_user_id)
            assert species is not None
            pet = Pet(cmd.pet_id, cmd.owner_user_id, "", species)
            res = await self._new_hold(cmd, svc, clinic, fingerprint, now, pet=pet)
            slot = GridSlot(res.start, res.end)
            until = claim_end(svc, res.end)
            busy = Busy(claims)
            plan = plan_hold(svc, sched, clinic, slot, busy, pet.id, cmd.provider_id)
            lost: set[uuid.UUID] = set()
            for provider in plan.providers:
                for _ in range(len(sched.resources) + 1):
                    items = require_items(svc, sched, slot, busy, pet.species, frozenset(lost))
                    res.unit = hold_unit(provider, items)
                    res.provider_id = provider.id if provider else None
                    res.assignment = plan.assignment.value if plan.assignment and provider else None
                    res.resource_ids = tuple(i.id for i in items)
                    conflict = await repo.insert_hold(
                        res, hold_claims(svc, clinic.id, pet.id, slot, provider, items)
                    )
                    if conflict is None:
                        return res
                    if conflict == "request":
                        raise DuplicateRequest(cmd.request_id)
                    if conflict == "pet":
                        raise PetBusy(
                            "this pet already has an appointment at that time", metadata={"field": "pet_id"}
                        )
                    if conflict not in ("resource", "retry"):
                        break  # the provider (or the unit) was taken concurrently: the next candidate
                    busy = Busy(
                        await repo.live_claims(
                            clinic.id, pet.id, lo, hi, now, subjects_of(svc, sched, pet.id)
                        )
                    )
                    lost |= {i.id for i in items if not busy.free(i.id, slot.start, until)}
                else:
                    raise ResourceTaken("a room or equipment this service needs is taken at that time")
            if plan.assignment == Assignment.CHOSEN:
                raise ProviderTaken("this provider was booked at that time meanwhile")
            raise SlotUnavailable(
                "this slot is no longer available", metadata={"slot": res.start.isoformat()}
            )

    async def _hold_in_one(
        self,
        cmd: ReserveCommand,
        svc: Service,
        clinic: Clinic,
        sched: ClinicSchedule,
        version: int,
        fingerprint: str,
        now: datetime,
    ) -> Reservation | None:
        """The common case in one statement (``BookingRepository.hold_scheduled``: the plan folded into
        the insert), or None: whatever it did not insert (a refusal, a lost race, a lapsed hold in the
        way, the catalog moved on) is decided by the planned path, which says why in its order."""
        if not svc.bookable:
            return None
        try:
            slot = check_slot(clinic, svc, cmd.start, now)
        except DomainError:
            return None
        options = hold_options(svc, sched, clinic, slot, cmd.provider_id)
        if options is None:
            return None
        res = self._reservation(cmd, svc, clinic, slot, fingerprint, now)
        async with self.read() as repo:
            attempt = await repo.hold_scheduled(res, options, version)
            if attempt.raced:  # once more: a concurrent winner's claims are committed by now
                attempt = await repo.hold_scheduled(res, options, version)
        if attempt.earlier:
            raise DuplicateRequest(cmd.request_id)  # its first answer (``_reserve_scheduled``)
        if not attempt.inserted:
            return None
        res.unit = attempt.unit
        res.provider_id = attempt.provider_id
        res.assignment = options.assignment.value if options.assignment and attempt.provider_id else None
        res.resource_ids = attempt.resource_ids
        return res

    async def _earlier(self, cmd: ReserveCommand) -> Reservation | None:
        async with self.read() as repo:
            return await repo.reservation_by_request(cmd.owner_user_id, cmd.request_id)

    @staticmethod
    def _replay(earlier: Reservation, fingerprint: str) -> Reservation:
        if earlier.request_hash != fingerprint:
            raise IdempotencyKeyReused("this idempotency key was used for a different booking request")
        return earlier

    async def get_reservation(self, lock_id: uuid.UUID, owner: uuid.UUID | None) -> Reservation:
        async with self.statements() as repo:
            res = await repo.reservation(lock_id)
        if res is None or (owner is not None and res.owner_user_id != owner):
            raise ReservationNotFound("reservation not found")
        res.state = res.effective_state(self.clock())
        return res

    async def await_reservation(
        self, lock_id: uuid.UUID, owner: uuid.UUID | None, wait: timedelta
    ) -> Reservation:
        """GetReservation's long-poll: a HELD reservation is answered once it is no longer HELD (a
        committed change, or its lapse at ``expires_at``, which writes nothing) or when ``wait`` is
        over, whichever comes first; any other state at once.  One read before waiting, none while
        waiting, and none after a change whose signal says all that changed (:func:`_apply_news`)."""
        if wait <= timedelta(0) or self.changes is None:
            return await self.get_reservation(lock_id, owner)
        deadline = self.clock() + wait
        async with self.changes.watch(lock_id) as watch:
            res = await self.get_reservation(lock_id, owner)
            while res.state == ReservationState.HELD and not watch.ended:
                step = (min(deadline, res.expires_at) - self.clock()).total_seconds()
                if step <= 0:
                    break
                news = watch.news() if await watch.changed(step) else None
                if news is None or not _apply_news(res, news, self.clock()):
                    res = await self.get_reservation(lock_id, owner)
        return res

    async def confirm(self, lock_id: uuid.UUID, payment_id: uuid.UUID) -> Booking:
        """The booking a payment makes of its reservation, in one transaction with its event: a live
        hold is confirmed; a lapsed one only if its slot is still free (else the reservation fails
        and ``SlotLost`` asks for a refund); a replayed payment gets the booking it made."""
        now = self.clock()
        async with self.uow() as repo:
            found = await repo.lock_for_confirm(lock_id)
            if found is None:
                raise ReservationNotFound("reservation not found")
            res, pet, version = found
            decision = decide_confirm(res, payment_id, now)
            if decision == ConfirmDecision.ALREADY_CONFIRMED:
                existing = await repo.booking_by_lock(lock_id)
                assert existing is not None
                return existing
            if decision == ConfirmDecision.CONFIRM_HELD or await self._reclaim(repo, res, payment_id, now):
                booking = Booking.confirm(res, payment_id, now)
                await self._add_booking(repo, booking, res, pet, now, version)
                return booking
        raise SlotLost("payment arrived after the hold expired and the slot was taken; refund it")

    @staticmethod
    async def _reclaim(
        repo: BookingRepository, res: Reservation, payment_id: uuid.UUID, now: datetime
    ) -> bool:
        """Paid after the hold lapsed: confirmed if the slot is still free (the exclusion constraint
        decides, once the lapsed holds in its way are expired); else the reservation fails."""
        await repo.expire_overlapping(res.service_id, res.start, res.end, now)
        free = await repo.try_set_state(res.lock_id, ReservationState.CONFIRMED, now, payment_id=payment_id)
        reclaim = decide_reclaim(free)
        if reclaim.lost:
            await repo.try_set_state(
                res.lock_id, reclaim.state, now, payment_id=payment_id, failure_reason=reclaim.failure_reason
            )
        return not reclaim.lost

    async def _add_booking(
        self,
        repo: BookingRepository,
        booking: Booking,
        res: Reservation,
        pet: Pet,
        now: datetime,
        catalog_version: int,
    ) -> None:
        """The booking (its reservation confirmed) and its ``booking.created`` event, in the caller's
        unit of work.  The service is looked up through that unit of work too (never a second
        connection: see petpro.db.Database), at the catalog version the caller's statement read."""
        svc, clinic = await self.catalog.get_service(res.service_id, catalog_version, repo)
        # the booking's own copy of the policy (the catalog memo never outlives a committed change)
        booking.policy = svc.policy
        event_id = uuid.uuid4()
        assigned = booking.provider_id is not None or bool(booking.resource_ids)
        names = (await self.catalog.schedule(clinic.id, catalog_version, repo),) if assigned else ()
        payload = self.encode_created(event_id, booking, res, svc, clinic, pet, now, *names)
        event = OutboxEvent(
            event_id,
            TOPIC_BOOKING_CREATED,
            str(booking.id),
            EVENT_BOOKING_CREATED,
            payload,
            self.traceparent(),
        )
        await repo.confirm_booking(booking, event)

    async def confirm_unpaid(self, lock_id: uuid.UUID, clinic_id: uuid.UUID) -> Booking:
        """Staff confirm a live hold of their clinic without a payment: the booking is to be paid at
        the clinic (``pay_at_clinic``), in one transaction with its event.  A hold already confirmed
        returns its booking (a retry); a lapsed or closed one is RESERVATION_CLOSED."""
        now = self.clock()
        async with self.uow() as repo:
            found = await repo.lock_for_confirm(lock_id)
            if found is None or found[0].clinic_id != clinic_id:
                raise ReservationNotFound("reservation not found")
            res, pet, version = found
            if res.state == ReservationState.CONFIRMED:
                existing = await repo.booking_by_lock(lock_id)
                assert existing is not None
                return existing
            if res.effective_state(now) != ReservationState.HELD:
                raise ReservationClosed(
                    f"the hold is {res.effective_state(now).value.lower()}; book again",
                    metadata={"field": "reservation_lock_id"},
                )
            booking = Booking.confirm(res, None, now)
            await self._add_booking(repo, booking, res, pet, now, version)
            return booking

    async def expire_due(self) -> list[uuid.UUID]:
        async with self.uow() as repo:
            return await repo.expire_due(self.clock())


def _apply_news(res: Reservation, news: ReservationNews, now: datetime) -> bool:
    """``res`` (read while HELD) as the committed change ``news`` left it, when the signal says all that
    changes with that state: a booking's confirmation with its booking (the same statement commits
    both), an expiry or a cancellation.  False (read it again) for anything else: a FAILED one (its
    reason is not in the signal), a confirmation whose booking a later statement of its transaction
    inserts (a lapsed hold reclaimed), or a state the long-poll would wait on."""
    if news.state == ReservationState.CONFIRMED:
        if news.booking_id is None:
            return False
    elif news.state not in (ReservationState.EXPIRED, ReservationState.CANCELLED):
        return False
    res.state = news.state
    res.payment_id = news.payment_id
    res.booking_id = news.booking_id
    res.state = res.effective_state(now)
    return True
