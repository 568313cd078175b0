"""The booking events consumer's group join, started by ``python -m notif_worker`` before it imports
the worker (:class:`petpro.events.EarlyJoin`), with the consumer's settings (the part of NotifSettings
it needs: only pydantic-settings and kafka-python are imported here, ~0.3 s of CPU).  The worker's
imports and build (~1.2 s of CPU, seconds of wall time while the other services start too) then
overlap the broker's join delay (a new group's first join: ~3 s with the 6 s session timeout) instead
of coming before it; the worker is ready once in its group (``BookingEventsConsumer.wait_joined``)."""

from __future__ import annotations

from kafka import KafkaConsumer
from pydantic_settings import SettingsConfigDict

from petpro import events, mesh
from petpro.settings import ServiceSettings, load


class ConsumerSettings(ServiceSettings):
    """The booking events consumer's part of :class:`notif_worker.server.NotifSettings`."""

    component = "notif"
    model_config = SettingsConfigDict(env_prefix="NOTIF_", env_file=".env", extra="ignore")

    # the consumer group of the mesh manifest: booking.created, its DLQ, and the lifecycle topics
    # consumed by the same group (per booking: key = booking id)
    topic: str = mesh.BOOKING_CREATED.name
    change_topics: tuple[str, ...] = tuple(t.name for t in mesh.LIFECYCLE_TOPICS)
    dlq_topic: str = mesh.BOOKING_CREATED.dlq
    consumer_group: str = mesh.NOTIF_CONSUMER.group

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.topic, *self.change_topics)


def booking_events_consumer(settings: ConsumerSettings, *, subscribed: bool = True) -> KafkaConsumer:
    """The booking events consumer (``subscribed=False``: not subscribed to its topics yet)."""
    topics = settings.topics if subscribed else ()
    return events.consumer(settings.url("kafka_bootstrap_servers"), settings.consumer_group, *topics)


def join_early() -> events.EarlyJoin:
    settings = load(ConsumerSettings)
    return events.EarlyJoin(
        lambda: booking_events_consumer(settings, subscribed=False), settings.topics
    ).start()
