"""The events booking publishes through its outbox: topics and their CloudEvents types, as the mesh
manifest (petpro/mesh.py) declares them.  Every event is keyed by its booking id (ordered per booking)."""

from __future__ import annotations

from petpro import mesh

TOPIC_BOOKING_CREATED = mesh.BOOKING_CREATED.name
TOPIC_BOOKING_CANCELLED = mesh.BOOKING_CANCELLED.name
TOPIC_BOOKING_RESCHEDULED = mesh.BOOKING_RESCHEDULED.name
TOPIC_BOOKING_COMPLETED = mesh.BOOKING_COMPLETED.name
TOPIC_BOOKING_NO_SHOW = mesh.BOOKING_NO_SHOW.name

_TYPES = {topic.name: topic.event_type for topic in (mesh.BOOKING_CREATED, *mesh.LIFECYCLE_TOPICS)}


def event_type(topic: str) -> str:
    """The CloudEvents type of a topic's events (``ce_type``)."""
    return _TYPES[topic]


EVENT_BOOKING_CREATED = mesh.BOOKING_CREATED.event_type
