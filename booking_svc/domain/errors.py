"""Booking's domain errors: each a ``petpro.errors`` class (the kit maps it to a gRPC status and an
ErrorInfo reason), plus the two races the schema decides, raised by the repository."""

from __future__ import annotations

from petpro.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied


class SlotUnavailable(Conflict):
    reason = "SLOT_UNAVAILABLE"


class IdempotencyKeyReused(Conflict):
    reason = "IDEMPOTENCY_KEY_REUSED"


class ServiceNotFound(NotFound):
    reason = "SERVICE_NOT_FOUND"


class ClinicNotFound(NotFound):
    reason = "CLINIC_NOT_FOUND"


class PetNotFound(NotFound):
    reason = "PET_NOT_FOUND"


class PetNotOwned(PermissionDenied):
    reason = "PET_NOT_OWNED"


class PetArchived(FailedPrecondition):
    reason = "PET_ARCHIVED"


class PetHasBookings(FailedPrecondition):
    reason = "PET_HAS_BOOKINGS"


class PetHasFutureBookings(FailedPrecondition):
    reason = "PET_HAS_FUTURE_BOOKINGS"


class ReservationNotFound(NotFound):
    reason = "RESERVATION_NOT_FOUND"


class BookingNotFound(NotFound):
    reason = "BOOKING_NOT_FOUND"


class ReservationClosed(FailedPrecondition):
    """The reservation can no longer be confirmed (failed or cancelled, or paid by another payment)."""

    reason = "RESERVATION_CLOSED"


class SlotLost(FailedPrecondition):
    """Payment arrived after the hold expired and someone else has the slot now: refund."""

    reason = "SLOT_NO_LONGER_AVAILABLE"


class DuplicateRequest(Exception):
    """The request id was recorded concurrently by another transaction (an idempotent retry raced us)."""


class SpeciesNotAllowed(FailedPrecondition):
    reason = "SPECIES_NOT_ALLOWED"


class ServiceNotBookable(FailedPrecondition):
    reason = "SERVICE_NOT_BOOKABLE"


class EtagMismatch(Conflict):
    """AIP-154: the resource changed since the caller read it."""

    reason = "ETAG_MISMATCH"


class BookingNotConfirmed(FailedPrecondition):
    reason = "BOOKING_NOT_CONFIRMED"


class BookingStarted(FailedPrecondition):
    reason = "BOOKING_STARTED"


class BookingNotStarted(FailedPrecondition):
    reason = "BOOKING_NOT_STARTED"


class RescheduleCutoffPassed(FailedPrecondition):
    reason = "RESCHEDULE_CUTOFF_PASSED"


class SameSlot(FailedPrecondition):
    reason = "SLOT_SAME"


class ProviderTaken(Conflict):
    """The chosen provider (or every qualified one) has an overlapping claim."""

    reason = "PROVIDER_TAKEN"


class ResourceTaken(Conflict):
    """No free item of a resource type the service needs."""

    reason = "RESOURCE_TAKEN"


class PetBusy(Conflict):
    """The pet has an overlapping appointment (any service, any clinic)."""

    reason = "PET_BUSY"


class ProviderUnavailable(InvalidArgument):
    """The chosen provider does not work at that time (hours, time off)."""

    reason = "PROVIDER_UNAVAILABLE"


class ProviderNotFound(NotFound):
    reason = "PROVIDER_NOT_FOUND"


class ResourceNotFound(NotFound):
    reason = "RESOURCE_NOT_FOUND"


class HasUpcomingBookings(FailedPrecondition):
    """Archiving a provider or a resource that upcoming bookings use: they are listed."""

    reason = "HAS_UPCOMING_BOOKINGS"
