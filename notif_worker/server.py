"""notif_worker composition root: the booking.created consumer, the clinic feed (gRPC stream with
Redis fan-out) and the owner's notification inbox."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from notif_worker.fanout import RedisFanout
from notif_worker.handlers import InboxPush, NotifyHandlers, Retry
from notif_worker.mailer import SmtpMailer
from notif_worker.repository import SCHEMA, NotifRepository
from notif_worker.service import ClinicFeedServicer, NotificationServicer, encode_clinic_event
from notif_worker.worker import BookingCreatedConsumer
from petpro import cache, events, grpc_client, grpc_server
from petpro.authn import Authenticator
from petpro.db import Database
from petpro.settings import ServiceSettings, load
from petpro_api.auth.v1 import auth_pb2_grpc
from petpro_api.notification.v1 import clinic_feed_pb2_grpc, notification_pb2_grpc


class NotifSettings(ServiceSettings):
    component = "notif"
    model_config = SettingsConfigDict(env_prefix="NOTIF_", env_file=".env", extra="ignore")

    topic: str = "booking.created"
    dlq_topic: str = "booking.created.dlq"
    consumer_group: str = "notif-worker"
    mail_from: str = "PetPro <bookings@petpro.dev>"
    retry_attempts: int = Field(default=4, ge=1, le=20)
    retry_base_seconds: float = Field(default=0.2, gt=0)
    concurrency: int = Field(default=16, ge=1, le=256)
    feed_resync_seconds: float = Field(default=15.0, gt=0)
    db_pool_size: int = Field(default=20, ge=1, le=100)


def build(settings: NotifSettings) -> grpc_server.App:
    db = Database(settings.url("database_url"), SCHEMA, app_name="notif_worker", pool_size=settings.db_pool_size)
    redis = cache.make_redis(settings.url("redis_url"))
    fanout = RedisFanout(redis)
    auth_channel = grpc_client.channel(settings.peer("auth"), idempotent=["petpro.auth.v1.AuthService/ValidateToken"])

    uow, read = db.repositories(NotifRepository)
    mailer = SmtpMailer(settings.url("smtp_url"), settings.mail_from)
    handlers = NotifyHandlers(
        uow, mailer, InboxPush(), encode_clinic_event,
        fanout.publish, Retry(settings.retry_attempts, settings.retry_base_seconds), read=read,
    )
    bootstrap = settings.url("kafka_bootstrap_servers")
    consumer = BookingCreatedConsumer(
        handlers,
        lambda: events.consumer(bootstrap, settings.consumer_group, settings.topic),
        lambda: events.producer(bootstrap, "notif_worker-dlq"),
        settings.dlq_topic, concurrency=settings.concurrency,
    )
    feed = ClinicFeedServicer(handlers, Authenticator(auth_pb2_grpc.AuthServiceStub(auth_channel)), fanout.subscribe,
                              resync_seconds=settings.feed_resync_seconds)

    async def close() -> None:
        await mailer.close()
        await fanout.close()
        await redis.aclose()
        await auth_channel.close()
        await db.close()

    return grpc_server.App(
        name="notif_worker",
        settings=settings,
        services=[
            grpc_server.Registration(clinic_feed_pb2_grpc.add_ClinicFeedServiceServicer_to_server, feed,
                                     "petpro.notification.v1.ClinicFeedService", authenticator=feed.authn),
            grpc_server.Registration(notification_pb2_grpc.add_NotificationServiceServicer_to_server,
                                     NotificationServicer(handlers), "petpro.notification.v1.NotificationService"),
        ],
        background=[fanout.run, consumer.run],
        on_shutdown=[feed.close],
        on_stop=[close],
    )


def main() -> None:
    grpc_server.main(build, load(NotifSettings))
