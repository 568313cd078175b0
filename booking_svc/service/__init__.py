"""Booking's gRPC servicers, one module per gRPC service: BookingService (booking.py) and
ClinicAdminService (clinic_admin.py), with the pb ⟷ domain conversions they share (convert.py)."""

from __future__ import annotations

from booking_svc.service.booking import BookingServicer
from booking_svc.service.clinic_admin import ClinicAdminServicer

__all__ = ["BookingServicer", "ClinicAdminServicer"]
