"""Booking queries: a booking made of its reservation with its event, reads and the clinic's schedule,
lifecycle changes and their request ids, refund bookkeeping, and the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg.errors import UniqueViolation
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from booking_svc.adapters.repository.rows import Queries, booking_from_row, is_violation
from booking_svc.adapters.tables import SCHEMA, booking_requests, bookings, pets, reservations, services
from booking_svc.domain import OPEN_REFUND_STATES, Booking, ClinicBooking, DuplicateRequest, RefundState
from booking_svc.ports import OutboxEvent
from petpro.db import raw_execute
from petpro.outbox import NOTIFY_CHANNEL

INSERT_OUTBOX = """INSERT INTO outbox (event_id, topic, key, event_type, payload, traceparent)
  VALUES (%(event_id)s, %(topic)s, %(key)s, %(event_type)s, %(payload)s, %(traceparent)s)"""
# NOTIFY outbox (delivered at commit) wakes the relay; the payload names the schema, so the relays of the
# other services sharing the database (auth's) do not wake for booking's rows (petpro.outbox)
NOTIFY_OUTBOX = f"SELECT pg_notify('{NOTIFY_CHANNEL}', '{SCHEMA}')"
ADD_OUTBOX = f"WITH o AS ({INSERT_OUTBOX}) {NOTIFY_OUTBOX}"
# ConfirmBooking's second statement: the reservation confirmed, the booking and its event
CONFIRM_BOOKING = f"""
WITH r AS (
  UPDATE reservations SET state = 'CONFIRMED', payment_id = %(payment_id)s, updated_at = %(created_at)s
  WHERE lock_id = %(lock_id)s),
b AS (
  INSERT INTO bookings (id, lock_id, payment_id, owner_user_id, clinic_id, service_id, pet_id, start_time, end_time,
    state, amount_minor, currency, created_at, updated_at, version, policy_full_refund_hours,
    policy_late_refund_percent, policy_reschedule_cutoff_hours, provider_id, assignment, resource_ids, pay_at_clinic)
  VALUES (%(id)s, %(lock_id)s, %(payment_id)s, %(owner)s, %(clinic_id)s, %(service_id)s, %(pet_id)s, %(start)s,
    %(end)s, %(state)s, %(amount_minor)s, %(currency)s, %(created_at)s, %(created_at)s, %(version)s,
    %(full_refund_hours)s, %(late_refund_percent)s, %(reschedule_cutoff_hours)s, %(provider_id)s,
    %(assignment)s, %(resource_ids)s::uuid[], %(pay_at_clinic)s)),
o AS ({INSERT_OUTBOX})
{NOTIFY_OUTBOX}
"""


def _event(event: OutboxEvent) -> dict[str, object]:
    return {
        "event_id": event.event_id,
        "topic": event.topic,
        "key": event.key,
        "event_type": event.event_type,
        "payload": event.payload,
        "traceparent": event.traceparent,
    }


class BookingQueries(Queries):
    async def confirm_booking(self, booking: Booking, event: OutboxEvent) -> None:
        await raw_execute(
            self.session,
            CONFIRM_BOOKING,
            operation="INSERT",
            params={
                "id": booking.id,
                "lock_id": booking.lock_id,
                "payment_id": booking.payment_id,
                "owner": booking.owner_user_id,
                "clinic_id": booking.clinic_id,
                "service_id": booking.service_id,
                "pet_id": booking.pet_id,
                "start": booking.start,
                "end": booking.end,
                "state": booking.state.value,
                "provider_id": booking.provider_id,
                "assignment": booking.assignment,
                "resource_ids": list(booking.resource_ids),
                "pay_at_clinic": booking.pay_at_clinic,
                "amount_minor": booking.amount_minor,
                "currency": booking.currency,
                "created_at": booking.created_at,
                "version": booking.version,
                "full_refund_hours": booking.policy.full_refund_hours,
                "late_refund_percent": booking.policy.late_refund_percent,
                "reschedule_cutoff_hours": booking.policy.reschedule_cutoff_hours,
                **_event(event),
            },
        )

    async def booking(self, booking_id: uuid.UUID, *, for_update: bool = False) -> Booking | None:
        q = select(bookings).where(bookings.c.id == booking_id)
        if for_update:
            q = q.with_for_update()
        r = (await self.session.execute(q)).first()
        return booking_from_row(r) if r else None

    async def booking_by_lock(self, lock_id: uuid.UUID) -> Booking | None:
        r = (await self.session.execute(select(bookings).where(bookings.c.lock_id == lock_id))).first()
        return booking_from_row(r) if r else None

    async def list_bookings(
        self,
        *,
        owner: uuid.UUID | None,
        clinic: uuid.UUID | None,
        start_from: datetime | None,
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[Booking]:
        q = select(bookings).order_by(bookings.c.start_time, bookings.c.id).limit(limit)
        if owner:
            q = q.where(bookings.c.owner_user_id == owner)
        if clinic:
            q = q.where(bookings.c.clinic_id == clinic)
        if start_from:
            q = q.where(bookings.c.start_time >= start_from)
        if after:
            q = q.where(
                func.row(bookings.c.start_time, bookings.c.id)
                > func.row(datetime.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        return [booking_from_row(r) for r in await self.session.execute(q)]

    async def upcoming_bookings(
        self, clinic_id: uuid.UUID, now: datetime, start: datetime | None = None, end: datetime | None = None
    ) -> list[Booking]:
        """Confirmed bookings of the clinic starting after ``now`` (within [start, end) if given)."""
        q = (
            select(bookings)
            .where(
                bookings.c.clinic_id == clinic_id,
                bookings.c.state == "CONFIRMED",
                bookings.c.start_time > now,
            )
            .order_by(bookings.c.start_time, bookings.c.id)
        )
        if start is not None:
            q = q.where(bookings.c.start_time >= start)
        if end is not None:
            q = q.where(bookings.c.start_time < end)
        return [booking_from_row(r) for r in await self.session.execute(q)]

    async def list_clinic_bookings(
        self,
        clinic_id: uuid.UUID,
        start: datetime,
        end: datetime,
        states: list[str],
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[ClinicBooking]:
        q = (
            select(
                bookings,
                services.c.name.label("service_name"),
                pets.c.name.label("pet_name"),
                pets.c.species.label("pet_species"),
                reservations.c.owner_name,
                reservations.c.owner_email,
            )
            .join(reservations, reservations.c.lock_id == bookings.c.lock_id)
            .join(services, services.c.id == bookings.c.service_id)
            .join(pets, pets.c.id == bookings.c.pet_id)
            .where(
                bookings.c.clinic_id == clinic_id, bookings.c.start_time >= start, bookings.c.start_time < end
            )
            .order_by(bookings.c.start_time, bookings.c.id)
            .limit(limit)
        )
        if states:
            q = q.where(bookings.c.state.in_(states))
        if after:
            q = q.where(
                func.row(bookings.c.start_time, bookings.c.id)
                > func.row(datetime.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        return [
            ClinicBooking(
                booking_from_row(r), r.service_name, r.pet_name, r.pet_species, r.owner_name, r.owner_email
            )
            for r in await self.session.execute(q)
        ]

    async def save_booking_change(self, b: Booking, *, next_refund_at: datetime | None = None) -> None:
        """Write a lifecycle change of a locked booking (state, slot, cancellation, refund owed)."""
        values: dict[str, object] = dict(
            state=str(b.state),
            start_time=b.start,
            end_time=b.end,
            cancelled_at=b.cancelled_at,
            refund_minor=b.refund_minor,
            refund_state=b.refund_state.value,
            refund_updated_at=b.refund_updated_at,
            cancel_reason=b.cancel_reason,
            cancelled_by=b.cancelled_by.value if b.cancelled_by else None,
            updated_at=b.updated_at,
            version=b.version,
            reschedule_count=b.reschedule_count,
            provider_id=b.provider_id,
            resource_ids=list(b.resource_ids),
        )
        if next_refund_at is not None:
            values["refund_next_at"] = next_refund_at
        await self.session.execute(update(bookings).where(bookings.c.id == b.id).values(**values))

    async def lifecycle_request(self, request_id: uuid.UUID) -> tuple[uuid.UUID, str, str] | None:
        r = (
            await self.session.execute(
                select(booking_requests).where(booking_requests.c.request_id == request_id)
            )
        ).first()
        return (r.booking_id, r.kind, r.fingerprint) if r else None

    async def add_lifecycle_request(
        self, request_id: uuid.UUID, booking_id: uuid.UUID, kind: str, fingerprint: str, now: datetime
    ) -> None:
        try:
            await self.session.execute(
                insert(booking_requests).values(
                    request_id=request_id,
                    booking_id=booking_id,
                    kind=kind,
                    fingerprint=fingerprint,
                    created_at=now,
                )
            )
        except IntegrityError as exc:
            if is_violation(exc, UniqueViolation):
                raise DuplicateRequest from None
            raise

    async def claim_due_refunds(self, now: datetime, lease_until: datetime, limit: int = 50) -> list[Booking]:
        """Open refunds due for an attempt (or a status check), claimed with SKIP LOCKED and leased
        until ``lease_until`` so two replicas never work on the same one at once."""
        q = text(
            "UPDATE bookings SET refund_next_at = :lease, refund_attempts = refund_attempts + 1 WHERE id IN ("
            " SELECT id FROM bookings WHERE refund_state IN ('PENDING', 'PROCESSING', 'FAILED')"
            " AND (refund_next_at IS NULL OR refund_next_at <= :now)"
            " ORDER BY refund_next_at NULLS FIRST LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING id"
        )
        ids = [
            r.id for r in await self.session.execute(q, {"now": now, "lease": lease_until, "limit": limit})
        ]
        if not ids:
            return []
        return [
            booking_from_row(r)
            for r in await self.session.execute(select(bookings).where(bookings.c.id.in_(ids)))
        ]

    async def record_refund(
        self,
        booking_id: uuid.UUID,
        state: RefundState,
        provider_refund_id: str,
        error: str,
        now: datetime,
        next_at: datetime | None,
        *,
        refund_round: int | None = None,
        was_round: int | None = None,
    ) -> None:
        """The outcome of one attempt; ``refund_round``: the round it was made in (kept if None), only
        if the booking was still in ``was_round`` (a late answer about an older round changes nothing)."""
        q = update(bookings).where(bookings.c.id == booking_id)
        if was_round is not None:
            q = q.where(bookings.c.refund_round == was_round)
        values: dict[str, Any] = {
            "refund_state": state.value,
            "provider_refund_id": provider_refund_id,
            "refund_error": error[:2000],
            "refund_updated_at": now,
            "refund_next_at": next_at,
        }
        if refund_round is not None:
            values["refund_round"] = refund_round
        await self.session.execute(q.values(**values))

    async def open_refunds(self, limit: int) -> list[Booking]:
        q = (
            select(bookings)
            .where(bookings.c.refund_state.in_([s.value for s in OPEN_REFUND_STATES]))
            .order_by(bookings.c.cancelled_at, bookings.c.id)
            .limit(limit)
        )
        return [booking_from_row(r) for r in await self.session.execute(q)]

    async def add_outbox(self, event: OutboxEvent) -> None:
        await raw_execute(self.session, ADD_OUTBOX, _event(event), operation="INSERT")
