"""Bookings after confirmation: reads (GetBooking, ListBookings) and the lifecycle changes (CancelBooking,
RescheduleBooking, CompleteBooking, MarkNoShow).

Each change locks the booking row, answers a retried request id with the booking as it is, applies the
domain rule, and writes the change, its request id and its outbox event in ONE transaction."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from booking_svc.domain import (
    TOPIC_BOOKING_CANCELLED,
    TOPIC_BOOKING_COMPLETED,
    TOPIC_BOOKING_NO_SHOW,
    TOPIC_BOOKING_RESCHEDULED,
    Actor,
    Booking,
    BookingNotFound,
    BookingState,
    Clinic,
    ClinicSchedule,
    DuplicateRequest,
    GridSlot,
    IdempotencyKeyReused,
    PetBusy,
    ProviderTaken,
    ProviderUnavailable,
    ReservationState,
    ResourceTaken,
    Service,
    SlotUnavailable,
    check_changes,
    check_slot,
    claim_end,
    event_type,
    hold_claims,
    hold_unit,
    plan_move,
    request_fingerprint,
    scheduled,
)
from booking_svc.ports import BookingRepository, Change, ChangeEncoder, OutboxEvent, UnitOfWork
from petpro import paging
from petpro.clock import utcnow
from petpro.errors import FieldViolation


class LifecycleHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        read: UnitOfWork,
        encode_change: ChangeEncoder,
        *,
        clock: Callable[[], datetime] = utcnow,
        traceparent: Callable[[], str] = lambda: "",
    ) -> None:
        self.uow = uow
        self.read = read
        self.encode_change = encode_change
        self.clock = clock
        self.traceparent = traceparent

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
        b = change.booking
        res = await repo.reservation(b.lock_id)
        found = await repo.service_with_clinic(b.service_id)
        pet = await repo.pet(b.pet_id)
        assert res is not None and found is not None and pet is not None
        event_id = uuid.uuid4()
        assigned = b.provider_id is not None or bool(b.resource_ids)
        names = (await repo.clinic_schedule(b.clinic_id, now),) if assigned else ()
        payload = self.encode_change(event_id, change, res, found[0], found[1], pet, now, *names)
        await repo.add_outbox(
            OutboxEvent(
                event_id, change.topic, str(b.id), event_type(change.topic), payload, self.traceparent()
            )
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
            if scheduled(svc):
                moved = await self._move_claimed(repo, b, svc, clinic, slot.start, slot.end, now)
            else:
                moved = (
                    await repo.move_reservation(b.lock_id, svc.capacity, slot.start, slot.end, now)
                    is not None
                )
            if not moved:
                raise SlotUnavailable(  # the transaction rolls back: the booking keeps its slot
                    "this slot is no longer available",
                    metadata={"slot": slot.start.isoformat(), "field": "slot_start_time"},
                )
            previous = (b.start, b.end)
            b.reschedule(slot.start, slot.end, now)
            await repo.save_booking_change(b)
            return Change(TOPIC_BOOKING_RESCHEDULED, b, Actor.OWNER, *previous)

        fp = request_fingerprint("reschedule", owner, new_start.astimezone(UTC).isoformat())
        return await self._change(
            request_id, booking_id, "reschedule", fp, owner=owner, clinic=None, apply=apply
        )

    @staticmethod
    async def _move_claimed(
        repo: BookingRepository,
        b: Booking,
        svc: Service,
        clinic: Clinic,
        start: datetime,
        end: datetime,
        now: datetime,
    ) -> bool:
        """A scheduled booking keeps its provider and items: they must work and be free at the new time
        (the old claims released and the new ones taken in one statement)."""
        if b.provider_id is not None:
            sched = await repo.clinic_schedule(clinic.id, now)
            provider = sched.providers.get(b.provider_id)
            if provider is None or not provider.works(clinic, start, end, claim_end(svc, end)):
                raise ProviderUnavailable(
                    "the provider does not work at that time",
                    violations=[
                        FieldViolation(
                            "slot_start_time", "the provider does not work then", "PROVIDER_UNAVAILABLE"
                        )
                    ],
                )
        await repo.expire_lapsed_around(clinic.id, b.pet_id, start, claim_end(svc, end), now)
        return await repo.move_claimed(b.lock_id, start, end, now)

    async def move(
        self,
        request_id: str,
        booking_id: uuid.UUID,
        clinic: uuid.UUID,
        new_start: datetime | None,
        provider_id: uuid.UUID | None,
        resource_ids: tuple[uuid.UUID, ...],
    ) -> Booking:
        """Staff move a booking of their clinic to another time, provider or items (no reschedule
        cut-off): in one transaction the old claims are released and the new ones taken; a taken one
        raises, the transaction rolls back and the booking stays where it was.  The owner is told as
        for a reschedule (booking.rescheduled, actor CLINIC)."""

        async def apply(repo: BookingRepository, b: Booking, now: datetime) -> Change:
            found = await repo.service_with_clinic(b.service_id)
            assert found is not None
            svc, cl = found
            b.check_move(new_start or b.start, now)
            slot = check_slot(cl, svc, new_start, now) if new_start is not None else GridSlot(b.start, b.end)
            if not scheduled(svc):
                # a provider or items named for a service booked by time only: field violations
                target = plan_move(
                    svc, ClinicSchedule(), cl, slot, None, (None, ()), provider_id, resource_ids
                )
                check_changes(target, b.start, None, ())
                if await repo.move_reservation(b.lock_id, svc.capacity, slot.start, slot.end, now) is None:
                    raise SlotUnavailable(
                        "this slot is no longer available",
                        metadata={"slot": slot.start.isoformat(), "field": "slot"},
                    )
            else:
                pet = await repo.pet(b.pet_id)
                sched = await repo.clinic_schedule(cl.id, now)
                target = plan_move(
                    svc,
                    sched,
                    cl,
                    slot,
                    pet.species if pet else None,
                    (b.provider_id, b.resource_ids),
                    provider_id,
                    resource_ids,
                )
                check_changes(target, b.start, b.provider_id, b.resource_ids)
                until = claim_end(svc, slot.end)
                await repo.expire_lapsed_around(cl.id, b.pet_id, slot.start, until, now)
                try:
                    taken = await repo.reassign_claims(
                        b.lock_id,
                        slot.start,
                        slot.end,
                        hold_unit(target.provider, target.items),
                        target.provider_id,
                        target.resource_ids,
                        hold_claims(svc, cl.id, b.pet_id, slot, target.provider, target.items),
                        now,
                    )
                except LookupError:
                    raise BookingNotFound("booking not found") from None
                if taken == "provider":
                    raise ProviderTaken(
                        "the provider is booked at that time", metadata={"field": "provider_id"}
                    )
                if taken == "resource":
                    raise ResourceTaken(
                        "a room or equipment is taken at that time", metadata={"field": "resource_ids"}
                    )
                if taken == "pet":
                    raise PetBusy("this pet has another appointment at that time", metadata={"field": "slot"})
                if taken is not None:
                    raise SlotUnavailable(
                        "this slot is no longer available",
                        metadata={"slot": slot.start.isoformat(), "field": "slot"},
                    )
                b.provider_id, b.resource_ids = target.provider_id, target.resource_ids
            previous = (b.start, b.end)
            b.reschedule(slot.start, slot.end, now)
            await repo.save_booking_change(b)
            return Change(TOPIC_BOOKING_RESCHEDULED, b, Actor.CLINIC, *previous)

        fp = request_fingerprint(
            "move",
            clinic,
            new_start.astimezone(UTC).isoformat() if new_start else "",
            provider_id or "",
            ",".join(sorted(str(r) for r in resource_ids)),
        )
        return await self._change(request_id, booking_id, "move", fp, owner=None, clinic=clinic, apply=apply)

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
