"""notif_worker composition root: the ClinicFeed/Notification gRPC server (+ the consumer, later)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from notif_worker.repository import SCHEMA
from notif_worker.service import ClinicFeedServicer, NotificationServicer
from petpro import grpc_server
from petpro.db import Database
from petpro.notification.v1 import clinic_feed_pb2_grpc, notification_pb2_grpc
from petpro.settings import ServiceSettings, load


class NotifSettings(ServiceSettings):
    component = "notif"
    model_config = SettingsConfigDict(env_prefix="NOTIF_", env_file=".env", extra="ignore")


def build(settings: NotifSettings) -> grpc_server.App:
    db = Database(settings.url("database_url"), SCHEMA, app_name="notif_worker")
    return grpc_server.App(
        name="notif_worker",
        settings=settings,
        services=[
            grpc_server.Registration(
                clinic_feed_pb2_grpc.add_ClinicFeedServiceServicer_to_server, ClinicFeedServicer(db),
                "petpro.notification.v1.ClinicFeedService",
            ),
            grpc_server.Registration(
                notification_pb2_grpc.add_NotificationServiceServicer_to_server, NotificationServicer(db),
                "petpro.notification.v1.NotificationService",
            ),
        ],
        on_stop=[db.close],
    )


def main() -> None:
    grpc_server.main(build, load(NotifSettings))
