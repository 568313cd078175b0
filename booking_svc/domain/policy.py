"""The cancellation policy: what a cancellation refunds, and until when a booking can be moved.  A
service carries one for its new bookings; each booking keeps its own copy from its confirmation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class CancellationPolicy:
    """Full refund up to ``full_refund_hours`` before the start, ``late_refund_percent`` of the price
    inside that window, nothing (and no owner cancellation) once started; rescheduling until
    ``reschedule_cutoff_hours`` before the start."""

    full_refund_hours: int = 24
    late_refund_percent: int = 50
    reschedule_cutoff_hours: int = 24

    def __post_init__(self) -> None:
        if not 0 <= self.late_refund_percent <= 100:
            raise ValueError("late_refund_percent must be within 0..100")
        if self.full_refund_hours < 0 or self.reschedule_cutoff_hours < 0:
            raise ValueError("policy hours must not be negative")

    def refund_minor(self, amount_minor: int, start: datetime, now: datetime) -> int:
        """What an owner gets back when cancelling at ``now`` (rounded down to the minor unit)."""
        if now >= start:
            return 0
        if start - now >= timedelta(hours=self.full_refund_hours):
            return amount_minor
        return amount_minor * self.late_refund_percent // 100

    def reschedule_deadline(self, start: datetime) -> datetime:
        return start - timedelta(hours=self.reschedule_cutoff_hours)


DEFAULT_POLICY = CancellationPolicy()
