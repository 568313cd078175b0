"""The events booking publishes through its outbox: topics and their CloudEvents types.  Every event is
keyed by its booking id (ordered per booking)."""

from __future__ import annotations

TOPIC_BOOKING_CREATED = "booking.created"
TOPIC_BOOKING_CANCELLED = "booking.cancelled"
TOPIC_BOOKING_RESCHEDULED = "booking.rescheduled"
TOPIC_BOOKING_COMPLETED = "booking.completed"
TOPIC_BOOKING_NO_SHOW = "booking.no-show"


def event_type(topic: str) -> str:
    """The CloudEvents type of a topic's events (``ce_type``)."""
    return f"dev.petpro.{topic}.v1"


EVENT_BOOKING_CREATED = event_type(TOPIC_BOOKING_CREATED)
