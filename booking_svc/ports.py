"""The ports booking's use cases depend on: the repository of one unit of work, the unit of work itself,
the encoders of its events, and the refund gateway.  ``adapters/`` implements them (SQLAlchemy + psycopg,
protobuf, PaymentService over gRPC); ``tests/unit/fakes`` with hand-written fakes, held to the same
contract by ``tests/contracts``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from booking_svc.domain import (
    Actor,
    Booking,
    Claim,
    Clinic,
    ClinicBooking,
    ClinicSchedule,
    Closure,
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


@dataclass(frozen=True)
class OutboxEvent:
    """An event for the outbox: relayed to Kafka (``topic``, ``key``, CloudEvents ``event_type``) after
    the transaction that wrote it commits."""

    event_id: uuid.UUID
    topic: str
    key: str
    event_type: str
    payload: bytes
    traceparent: str


class BookingRepository(Protocol):
    """Queries of one unit of work.  The races the schema decides come back as results (``hold``,
    ``try_set_state``, ``move_reservation``) or as domain errors (``DuplicateRequest``), never as
    driver errors."""

    # catalog
    async def list_clinics(self, after: tuple[str, ...] | None, limit: int) -> list[Clinic]: ...
    async def clinic(self, clinic_id: uuid.UUID, *, for_update: bool = False) -> Clinic | None:
        """With its closures and day overrides that have not passed."""
        ...

    async def list_services(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Service]: ...
    async def service_with_clinic(self, service_id: uuid.UUID) -> tuple[Service, Clinic] | None: ...
    async def service(self, service_id: uuid.UUID, *, for_update: bool = False) -> Service | None: ...

    # catalog changes (ClinicAdminService); each transaction that changes the catalog bumps its version
    async def catalog_version(self) -> int: ...
    async def bump_catalog(self) -> None: ...
    async def add_clinic(self, clinic: Clinic, request_id: uuid.UUID | None = None) -> uuid.UUID:
        """The new clinic's id, or the first one's when ``request_id`` was used already (AIP-155)."""
        ...

    async def save_clinic(self, clinic: Clinic) -> None:
        """Profile + weekly hours, version + 1."""
        ...

    async def add_service(self, svc: Service, request_id: uuid.UUID | None = None) -> uuid.UUID:
        """The new service's id, or the first one's when ``request_id`` was used already (AIP-155)."""
        ...

    async def save_service(self, svc: Service, *, archive_at: datetime | None = None) -> None:
        """Every updatable field, version + 1; ``archive_at`` archives it."""
        ...

    async def add_closure(self, c: Closure) -> None: ...
    async def delete_closure(self, clinic_id: uuid.UUID, closure_id: uuid.UUID) -> bool: ...
    async def list_closures(
        self, clinic_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[Closure]: ...
    async def put_override(self, clinic_id: uuid.UUID, day: date, ivs: list[Interval]) -> None: ...
    async def delete_override(self, clinic_id: uuid.UUID, day: date) -> bool: ...
    async def upcoming_bookings(
        self, clinic_id: uuid.UUID, now: datetime, start: datetime | None = None, end: datetime | None = None
    ) -> list[Booking]: ...
    async def list_clinic_bookings(
        self,
        clinic_id: uuid.UUID,
        start: datetime,
        end: datetime,
        states: list[str],
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[ClinicBooking]: ...

    # pets
    async def add_pet(self, pet: Pet) -> None: ...
    async def pet(self, pet_id: uuid.UUID, *, for_update: bool = False) -> Pet | None: ...
    async def save_pet(self, pet: Pet) -> None:
        """Store the pet's changeable fields (name … notes, archived_at, version)."""
        ...

    async def pet_booked(self, pet_id: uuid.UUID) -> bool:
        """Whether the pet has any booking, in any state."""
        ...

    async def future_bookings_of_pet(self, pet_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        """Its CONFIRMED bookings starting after ``now``, by start."""
        ...

    async def list_pets(self, owner: uuid.UUID, after: tuple[str, ...] | None, limit: int) -> list[Pet]:
        """The owner's pets not archived, by creation."""
        ...

    # an owner across the tables: data export, erasure of a deleted account, processed events
    async def event_processed(self, event_id: uuid.UUID) -> bool: ...
    async def record_processed(self, event_id: uuid.UUID, topic: str, at: datetime) -> bool:
        """False when the event was already recorded."""
        ...

    async def owner_future_bookings(self, owner: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        """The owner's CONFIRMED bookings starting after ``now``, by start."""
        ...

    async def owner_held_reservations(self, owner: uuid.UUID) -> list[uuid.UUID]: ...
    async def owner_unsent_events(self, owner: uuid.UUID) -> int:
        """Outbox rows of the owner's bookings the relay has not sent yet."""
        ...

    async def erase_owner(self, owner: uuid.UUID, at: datetime) -> None:
        """Pets anonymised (name, breed, birth date, weight, notes) and archived; the reservations'
        owner email and name and the bookings' cancel reasons emptied; the bookings' sent outbox rows
        dropped.  Bookings keep ids, times, amounts and refunds (the clinic's accounting)."""
        ...

    async def owner_export(self, owner: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
        """Rows of the owner's pets, reservations and bookings as JSON-ready dicts."""
        ...

    # reservations.  A hold lapses at its ``expires_at``: from then on it never blocks and never confirms
    # (``Reservation.effective_state``); the statements below expire the lapsed holds in their way.
    async def reservation(self, lock_id: uuid.UUID) -> Reservation | None:
        """With its booking's id, if it became one."""
        ...

    async def reservation_by_request(self, owner: uuid.UUID, request_id: str) -> Reservation | None: ...
    async def hold(self, res: Reservation, capacity: int, catalog_version: int) -> HoldAttempt:
        """ReserveSlot, on its own (no transaction needed): unless the catalog's version is no longer
        ``catalog_version`` (the service and clinic the caller used are stale), ``res.request_id``
        was used by this owner, or the pet is not theirs, insert ``res`` on the lowest unit of
        ``capacity`` free of live reservations (confirmed, or held and not expired at
        ``res.created_at``).  One statement, unless a lapsed hold not expired yet is in the way: the
        lapsed holds overlapping ``res`` are then expired and the statement runs again.  A unit or
        request id won concurrently by another transaction inserts nothing (never raises): ask again."""
        ...

    async def lock_for_confirm(self, lock_id: uuid.UUID) -> tuple[Reservation, Pet, int] | None:
        """The reservation locked until the transaction ends, with its booking's id, its pet and the
        catalog's version, in one round trip; None when there is no such reservation."""
        ...

    async def expire_overlapping(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> int:
        """Expire the service's lapsed holds overlapping [start, end); how many."""
        ...

    async def try_set_state(
        self,
        lock_id: uuid.UUID,
        state: ReservationState,
        now: datetime,
        *,
        payment_id: uuid.UUID | None = None,
        failure_reason: str | None = None,
    ) -> bool:
        """False (nothing changed, the transaction goes on) when re-activating the reservation would
        overlap another active one."""
        ...

    async def set_reservation_state(
        self, lock_id: uuid.UUID, state: ReservationState, now: datetime
    ) -> None: ...
    async def move_reservation(
        self, lock_id: uuid.UUID, capacity: int, start: datetime, end: datetime, now: datetime
    ) -> int | None:
        """Move an active reservation to [start, end) on the lowest unit of ``capacity`` free of
        other live reservations (the lapsed holds on it there expired), in one statement; its unit, or
        None (nothing changed, the transaction goes on) when no unit is free or a concurrent
        transaction won it."""
        ...

    async def expire_due(self, now: datetime, limit: int = 500) -> list[uuid.UUID]:
        """Expire up to ``limit`` lapsed holds, the longest lapsed first; their lock ids."""
        ...

    async def active_counts(
        self, service_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> list[tuple[datetime, datetime]]:
        """The ranges of the service's live reservations overlapping [start, end)."""
        ...

    # bookings
    async def confirm_booking(self, booking: Booking, event: OutboxEvent) -> None:
        """The booking's reservation CONFIRMED with its payment, the booking, and its event in the
        outbox, in one round trip."""
        ...

    async def booking(self, booking_id: uuid.UUID, *, for_update: bool = False) -> Booking | None: ...
    async def booking_by_lock(self, lock_id: uuid.UUID) -> Booking | None: ...
    async def list_bookings(
        self,
        *,
        owner: uuid.UUID | None,
        clinic: uuid.UUID | None,
        start_from: datetime | None,
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[Booking]: ...
    async def add_outbox(self, event: OutboxEvent) -> None:
        """Relayed to Kafka once the transaction commits."""
        ...

    # lifecycle after confirmation
    async def save_booking_change(self, b: Booking, *, next_refund_at: datetime | None = None) -> None: ...
    async def lifecycle_request(self, request_id: uuid.UUID) -> tuple[uuid.UUID, str, str] | None: ...
    async def add_lifecycle_request(
        self, request_id: uuid.UUID, booking_id: uuid.UUID, kind: str, fingerprint: str, now: datetime
    ) -> None:
        """Raises DuplicateRequest when the request id exists (a concurrent retry)."""
        ...

    async def claim_due_refunds(
        self, now: datetime, lease_until: datetime, limit: int = 50
    ) -> list[Booking]: ...
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
    ) -> None: ...
    async def open_refunds(self, limit: int) -> list[Booking]: ...

    # scheduling (docs/design/scheduling.md): providers, time off, resources, service requirements
    async def clinic_schedule(self, clinic_id: uuid.UUID, now: datetime) -> ClinicSchedule:
        """The clinic's providers (archived too; their time off not ended by ``now``) and items."""
        ...

    async def provider(self, clinic_id: uuid.UUID, provider_id: uuid.UUID) -> Provider | None: ...
    async def list_providers(
        self, clinic_id: uuid.UUID, show_archived: bool, after: tuple[str, ...] | None, limit: int
    ) -> list[Provider]: ...
    async def resource(self, clinic_id: uuid.UUID, resource_id: uuid.UUID) -> Resource | None: ...
    async def list_resources(
        self, clinic_id: uuid.UUID, show_archived: bool, after: tuple[str, ...] | None, limit: int
    ) -> list[Resource]: ...
    async def upcoming_bookings_using(
        self, clinic_id: uuid.UUID, subject_id: uuid.UUID, now: datetime
    ) -> list[Booking]:
        """Confirmed bookings starting after ``now`` with that provider or resource item."""
        ...

    async def add_provider(self, p: Provider, request_id: uuid.UUID | None = None) -> uuid.UUID:
        """Insert with the clinic's next ``seq`` (set on ``p``); a used ``request_id``: the first's id."""
        ...

    async def save_provider(self, p: Provider, *, archive_at: datetime | None = None) -> None: ...
    async def add_time_off(self, t: TimeOff) -> bool:
        """False (nothing inserted, the transaction goes on) when it overlaps another of the provider's."""
        ...

    async def delete_time_off(self, provider_id: uuid.UUID, time_off_id: uuid.UUID) -> bool: ...
    async def add_resource(self, r: Resource, request_id: uuid.UUID | None = None) -> uuid.UUID: ...
    async def save_resource(self, r: Resource, *, archive_at: datetime | None = None) -> None: ...
    async def set_service_requirements(
        self,
        service_id: uuid.UUID,
        clinic_id: uuid.UUID,
        provider_ids: tuple[uuid.UUID, ...],
        needs: tuple[ServiceNeed, ...],
    ) -> None:
        """Replace who performs the service and what it needs (the needed types exist in the clinic)."""
        ...

    # claims of scheduled holds: live = of a confirmed reservation or a hold not expired at ``now``
    async def live_claims(
        self,
        clinic_id: uuid.UUID,
        pet_id: uuid.UUID | None,
        start: datetime,
        end: datetime,
        now: datetime,
        subjects: list[uuid.UUID] | None = None,
    ) -> list[Claim]:
        """Live provider/resource/pet claims over [start, end) at the clinic (of ``subjects`` only, if
        given), and the pet's anywhere."""
        ...

    async def expire_lapsed_around(
        self, clinic_id: uuid.UUID, pet_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> int:
        """Expire the lapsed holds with a claim over [start, end) at the clinic or of the pet."""
        ...

    async def prepare_hold(
        self,
        clinic_id: uuid.UUID,
        pet_id: uuid.UUID,
        start: datetime,
        end: datetime,
        lo: datetime,
        hi: datetime,
        now: datetime,
        subjects: list[uuid.UUID],
    ) -> tuple[int, uuid.UUID | None, str | None, list[Claim]]:
        """A scheduled hold's one read: the lapsed holds with a claim over [start, end) at the clinic or
        of the pet expired; then the catalog's version, the pet's owner and species (None: no such pet)
        and the live claims over [lo, hi) as :meth:`live_claims` with ``subjects``."""
        ...

    async def insert_hold(self, res: Reservation, claims: list[Claim]) -> str | None:
        """The reservation and its claims, all or nothing (one statement; a savepoint in a transaction):
        None, or what refused it: "provider", "resource", "pet", "unit" (the service unit), "request" (a
        used request id) or "retry" (PostgreSQL broke a deadlock between two racing holds)."""
        ...

    async def hold_scheduled(
        self, res: Reservation, options: HoldOptions, catalog_version: int
    ) -> ScheduledAttempt:
        """A scheduled hold in one statement, all or nothing (a savepoint in a transaction): from
        ``options`` the first free candidate with the fewest live provider claims starting in
        [day_start, day_end), then the candidates' order; per need the first free items fit for the pet's
        species; inserted with all its claims only while the request id is new, the pet the owner's and
        of an allowed species, the catalog at ``catalog_version`` and the pet free.  Anything else (a
        refusal, a race, a lapsed hold in the way) inserts nothing: ``earlier`` says a used request id."""
        ...

    async def move_claimed(self, lock_id: uuid.UUID, start: datetime, end: datetime, now: datetime) -> bool:
        """Move a scheduled reservation and all its claims (keeping their buffer); False when taken."""
        ...

    async def reassign_claims(
        self,
        lock_id: uuid.UUID,
        start: datetime,
        end: datetime,
        unit: int,
        provider_id: uuid.UUID | None,
        resource_ids: tuple[uuid.UUID, ...],
        claims: list[Claim],
        now: datetime,
    ) -> str | None:
        """A staff move: the active reservation at [start, end) on ``unit`` with ``provider_id`` and
        ``resource_ids``, its old claims released and ``claims`` taken, all or nothing (a savepoint).
        None when done, else what refused it ("provider", "resource", "pet", "unit"; nothing changed,
        the transaction goes on).  LookupError when the reservation is not active."""
        ...


# ``async with uow() as repo``: one transaction, committed when the block exits normally
UnitOfWork = Callable[[], AbstractAsyncContextManager[BookingRepository]]


@dataclass(frozen=True)
class ReservationNews:
    """What a committed change of a reservation's state says it changed to: the state, the payment and
    the booking committed with it (None: none, or not yet)."""

    state: ReservationState
    payment_id: uuid.UUID | None
    booking_id: uuid.UUID | None


class ReservationWatch(Protocol):
    """One watch of one reservation (:meth:`ReservationChanges.watch`)."""

    @property
    def ended(self) -> bool:
        """The watching stopped (the service shuts down): answer with what there is now."""
        ...

    async def changed(self, timeout: float) -> bool:
        """True as soon as the reservation's state may have changed since the watch began (or since
        the last True): a committed change, or changes the watcher may have missed (it lost its
        connection).  False after ``timeout`` seconds without one."""
        ...

    def news(self) -> ReservationNews | None:
        """After :meth:`changed` returned True: what the latest committed change said, or None when the
        reservation must be read again (several changes may have been missed, the signal said nothing
        of it).  Taken once: the next call says None until another change comes."""
        ...


class ReservationChanges(Protocol):
    """Committed state changes of reservations, whichever replica committed them: GetReservation's
    long-poll waits on them instead of reading again and again."""

    def watch(self, lock_id: uuid.UUID) -> AbstractAsyncContextManager[ReservationWatch]:
        """Changes count from entering the block: read the reservation inside it, then wait."""
        ...


class EventEncoder(Protocol):
    """The serialized BookingCreated event for the outbox; ``sched`` (the clinic's providers and items,
    for the names of the assignment) is passed only for a booking with a provider or items."""

    def __call__(
        self,
        event_id: uuid.UUID,
        booking: Booking,
        res: Reservation,
        svc: Service,
        clinic: Clinic,
        pet: Pet,
        now: datetime,
        sched: ClinicSchedule | None = None,
        /,
    ) -> bytes: ...


@dataclass(frozen=True)
class Change:
    """A committed lifecycle change, for its event: the booking after it, and what it came from."""

    topic: str
    booking: Booking
    actor: Actor
    previous_start: datetime | None = None
    previous_end: datetime | None = None


class ChangeEncoder(Protocol):
    """The serialized lifecycle event; ``sched`` as for :class:`EventEncoder`."""

    def __call__(
        self,
        event_id: uuid.UUID,
        change: Change,
        res: Reservation,
        svc: Service,
        clinic: Clinic,
        pet: Pet,
        now: datetime,
        sched: ClinicSchedule | None = None,
        /,
    ) -> bytes: ...


@dataclass(frozen=True)
class RefundResult:
    provider_refund_id: str
    status: str  # the provider's: pending, requires_action, succeeded, failed, canceled


class RefundPort(Protocol):
    """Sends the refund of a cancelled booking to the payment service (idempotent on request_id)."""

    async def refund(
        self, payment_id: uuid.UUID, amount_minor: int, currency: str, request_id: str, reason: str
    ) -> RefundResult: ...


@dataclass(frozen=True)
class RefusalFacts:
    """What an early refusal of ReserveSlot must still know from the database
    (booking_svc.service.refusals), read in one statement."""

    earlier: bool  # the owner's request id was used already: a retry gets its first answer
    catalog_version: int  # a changed catalog may have freed the slot
    pet_owner: uuid.UUID | None  # None: no such pet
    pet_species: str | None
    slot_full: bool  # the slot's live holds (unlapsed HELD, CONFIRMED) fill the service's capacity now


class RefusalRecheck(Protocol):
    async def __call__(
        self, owner: uuid.UUID, request_id: str, pet_id: uuid.UUID, service_id: uuid.UUID, start: datetime
    ) -> RefusalFacts: ...
