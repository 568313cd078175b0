"""The ports booking's use cases depend on: the repository of one unit of work, the unit of work
itself, and the encoder of the ``booking.created`` event.  ``repository.py`` implements them with
SQLAlchemy; ``tests/unit`` with hand-written fakes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from booking_svc.domain import Booking, Clinic, HoldAttempt, Pet, Reservation, ReservationState, Service


class BookingRepository(Protocol):
    """Queries of one unit of work.  Raises domain errors (``UnitTaken``, ``DuplicateRequest``), never
    driver errors, for the races the schema decides."""

    # catalog
    async def list_clinics(self, after: tuple[str, ...] | None, limit: int) -> list[Clinic]: ...
    async def clinic(self, clinic_id: uuid.UUID) -> Clinic | None: ...
    async def list_services(self, clinic_id: uuid.UUID, after: tuple[str, ...] | None,
                            limit: int) -> list[Service]: ...
    async def service_with_clinic(self, service_id: uuid.UUID) -> tuple[Service, Clinic] | None: ...

    # pets
    async def add_pet(self, pet: Pet) -> None: ...
    async def pet(self, pet_id: uuid.UUID) -> Pet | None: ...
    async def list_pets(self, owner: uuid.UUID, after: tuple[str, ...] | None, limit: int) -> list[Pet]: ...

    # reservations
    async def reservation(self, lock_id: uuid.UUID, *, for_update: bool = False) -> Reservation | None: ...
    async def reservation_by_request(self, owner: uuid.UUID, request_id: str) -> Reservation | None: ...
    async def expire_overlapping(self, service_id: uuid.UUID, start: datetime, end: datetime,
                                 now: datetime) -> int: ...
    async def taken_units(self, service_id: uuid.UUID, start: datetime, end: datetime) -> set[int]: ...
    async def insert_reservation(self, res: Reservation) -> None:
        """Raises UnitTaken or DuplicateRequest; must be the transaction's last statement."""
        ...
    async def try_hold(self, res: Reservation, capacity: int) -> HoldAttempt:
        """Reserve's fast path, one statement on its own: unless ``res.request_id`` was used by this
        owner or the pet is not theirs, insert ``res`` on the lowest unit of ``capacity`` free of live
        (confirmed, or held and not expired at ``res.created_at``) reservations; conflicts with the
        schema's constraints insert nothing (never raise)."""
        ...
    async def try_set_state(self, lock_id: uuid.UUID, state: ReservationState, now: datetime, *,
                            payment_id: uuid.UUID | None = None, failure_reason: str | None = None) -> bool:
        """False when re-activating the reservation would overlap another active one."""
        ...
    async def confirm_held(self, lock_id: uuid.UUID, payment_id: uuid.UUID,
                           now: datetime) -> tuple[Reservation, Pet] | None:
        """Confirm's fast path: a reservation still HELD and not expired at ``now`` becomes CONFIRMED
        with ``payment_id``, in one statement that also returns its pet; None for anything else."""
        ...
    async def add_booking_with_event(self, b: Booking, event_id: uuid.UUID, topic: str, key: str, event_type: str,
                                     payload: bytes, traceparent: str) -> None:
        """``add_booking`` + ``add_outbox`` in one round trip."""
        ...
    async def expire_due(self, now: datetime, limit: int = 500) -> list[uuid.UUID]: ...
    async def active_counts(self, service_id: uuid.UUID, start: datetime, end: datetime,
                            now: datetime) -> list[tuple[datetime, datetime]]: ...

    # bookings
    async def add_booking(self, b: Booking) -> None: ...
    async def booking(self, booking_id: uuid.UUID) -> Booking | None: ...
    async def booking_by_lock(self, lock_id: uuid.UUID) -> Booking | None: ...
    async def list_bookings(self, *, owner: uuid.UUID | None, clinic: uuid.UUID | None,
                            start_from: datetime | None, after: tuple[str, ...] | None,
                            limit: int) -> list[Booking]: ...
    async def add_outbox(self, event_id: uuid.UUID, topic: str, key: str, event_type: str, payload: bytes,
                         traceparent: str) -> None: ...


# ``async with uow() as repo``: one transaction, committed when the block exits normally
UnitOfWork = Callable[[], AbstractAsyncContextManager[BookingRepository]]

# the serialized BookingCreated event for the outbox: (event id, booking, reservation, service, clinic,
# pet, now) → bytes
EventEncoder = Callable[[uuid.UUID, Booking, Reservation, Service, Clinic, Pet, datetime], bytes]
