"""ClinicFeedService and NotificationService servicers."""

from __future__ import annotations

from petpro.db import Database
from petpro.notification.v1 import clinic_feed_pb2_grpc, notification_pb2_grpc


class ClinicFeedServicer(clinic_feed_pb2_grpc.ClinicFeedServiceServicer):
    def __init__(self, db: Database) -> None:
        self.db = db


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    def __init__(self, db: Database) -> None:
        self.db = db
