"""Booking's use cases, one module per family: each opens a unit of work (a transaction), applies the
domain, commits; events go to the outbox in the same transaction as the state change.

- catalog: catalog reads and the catalog memo        - pets: an owner's pets
- reservations: holds and their confirmation         - lifecycle: bookings after confirmation
- refunds: refunds of cancelled bookings             - clinic_admin: ClinicAdminService's changes
"""

from __future__ import annotations

from booking_svc.handlers.catalog import AvailabilitySlot, CatalogHandlers
from booking_svc.handlers.clinic_admin import (
    CLINIC_FIELDS,
    PROVIDER_FIELDS,
    RESOURCE_FIELDS,
    SERVICE_FIELDS,
    ClinicAdminHandlers,
    ClinicProfile,
    WeeklyHours,
    check_mask,
)
from booking_svc.handlers.lifecycle import LifecycleHandlers
from booking_svc.handlers.owners import OwnerHandlers
from booking_svc.handlers.pets import PetDraft, PetHandlers
from booking_svc.handlers.refunds import RefundHandlers, refund_request_id
from booking_svc.handlers.reservations import ReservationHandlers, ReserveCommand

__all__ = [
    "CLINIC_FIELDS",
    "PROVIDER_FIELDS",
    "RESOURCE_FIELDS",
    "SERVICE_FIELDS",
    "AvailabilitySlot",
    "CatalogHandlers",
    "ClinicAdminHandlers",
    "ClinicProfile",
    "LifecycleHandlers",
    "OwnerHandlers",
    "PetDraft",
    "PetHandlers",
    "RefundHandlers",
    "ReservationHandlers",
    "ReserveCommand",
    "WeeklyHours",
    "check_mask",
    "refund_request_id",
]
