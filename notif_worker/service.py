"""ClinicFeedService (server stream) and NotificationService servicers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from notif_worker.handlers import ClinicFeed, NotifyHandlers
from petpro.authn import Authenticator
from petpro.convert import ts, uid
from petpro.errors import PermissionDenied
from petpro_api.notification.v1 import (
    clinic_feed_pb2,
    clinic_feed_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
)


class ClinicFeedServicer(clinic_feed_pb2_grpc.ClinicFeedServiceServicer):
    """Authenticates the subscriber, checks clinic membership, then streams ``ClinicFeed.follow``."""

    def __init__(self, feed: ClinicFeed, authn: Authenticator) -> None:
        self.feed = feed
        self.authn = authn

    async def close(self) -> None:
        await self.feed.close()

    async def Subscribe(self, request: clinic_feed_pb2.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any],
                        ) -> AsyncIterator[clinic_feed_pb2.SubscribeResponse]:
        principal = await self.authn.principal(context)
        if not principal.can_read_clinic(request.clinic_id):
            raise PermissionDenied("not staff of this clinic", reason="CLINIC_FORBIDDEN")
        clinic = uid(request.clinic_id, "clinic_id")
        async with contextlib.aclosing(self.feed.follow(clinic, request.after_cursor)) as rows:
            async for row in rows:
                yield clinic_feed_pb2.SubscribeResponse(event=clinic_feed_pb2.ClinicEvent.FromString(row.payload))


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    def __init__(self, handlers: NotifyHandlers) -> None:
        self.h = handlers

    async def ListNotifications(self, request: notification_pb2.ListNotificationsRequest,
                               context: grpc.aio.ServicerContext[Any, Any]) -> notification_pb2.ListNotificationsResponse:
        rows, token = await self.h.inbox(uid(request.user_id, "user_id"), request.page_size, request.page_token)
        return notification_pb2.ListNotificationsResponse(
            notifications=[notification_pb2.Notification(
                notification_id=str(r.id), user_id=str(r.user_id), title=r.title, body=r.body, data=r.data,
                event_id=str(r.event_id), create_time=ts(r.created_at)) for r in rows],
            next_page_token=token)

    async def RegisterDevice(self, request: notification_pb2.RegisterDeviceRequest,
                            context: grpc.aio.ServicerContext[Any, Any]) -> notification_pb2.RegisterDeviceResponse:
        platform = notification_pb2.DevicePlatform.Name(request.platform).removeprefix("DEVICE_PLATFORM_")
        d = await self.h.register_device(uid(request.user_id, "user_id"), platform, request.token)
        return notification_pb2.RegisterDeviceResponse(device=notification_pb2.Device(
            device_id=str(d.id), user_id=str(d.user_id),
            platform=notification_pb2.DevicePlatform.Value(f"DEVICE_PLATFORM_{d.platform}"),
            create_time=ts(d.created_at)))
