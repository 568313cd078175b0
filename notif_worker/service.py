"""ClinicFeedService (server stream) and NotificationService servicers, and the event ↔ proto mapping."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from notif_worker.domain import BookingNotice, PoisonEvent
from notif_worker.handlers import NotifyHandlers
from petpro.authn import Authenticator
from petpro.convert import dt, ts, uid
from petpro.errors import PermissionDenied
from petpro_api.booking.v1 import booking_pb2, events_pb2
from petpro_api.common.v1 import money_pb2
from petpro_api.notification.v1 import (
    clinic_feed_pb2,
    clinic_feed_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
)

log = logging.getLogger("notif_worker.feed")

# subscribe(clinic_id) → (queue of serialized ClinicEvent, unsubscribe)
Subscribe = Callable[[uuid.UUID], Awaitable[tuple[asyncio.Queue[bytes], Callable[[], Awaitable[None]]]]]


def decode_booking_created(payload: bytes) -> BookingNotice:
    """protobuf ``BookingCreated`` → domain notice; anything unusable is a PoisonEvent."""
    try:
        e = events_pb2.BookingCreated.FromString(payload)
        notice = BookingNotice(
            event_id=uuid.UUID(e.event_id), occurred_at=dt(e.occurred_at), booking_id=e.booking_id,
            clinic_id=uuid.UUID(e.clinic_id), clinic_name=e.clinic_name, clinic_time_zone=e.clinic_time_zone or "UTC",
            service_name=e.service.name, start=dt(e.slot_start_time), end=dt(e.slot_end_time),
            pet_name=e.pet.name, pet_species=booking_pb2.Species.Name(e.pet.species),
            owner_user_id=uuid.UUID(e.owner.user_id), owner_email=e.owner.email, owner_name=e.owner.name,
            amount_minor=e.amount.amount_minor, currency=e.amount.currency,
        )
        notice.local_start  # noqa: B018 — validates the time zone
    except Exception as exc:
        raise PoisonEvent(f"undecodable booking.created event: {type(exc).__name__}: {exc}") from exc
    if not notice.booking_id or not notice.owner_email:
        raise PoisonEvent("booking.created event lacks booking_id or owner email")
    return notice


def encode_clinic_event(n: BookingNotice, cursor: int) -> bytes:
    return clinic_feed_pb2.ClinicEvent(
        cursor=cursor, event_id=str(n.event_id), type=clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_CREATED,
        occurred_at=ts(n.occurred_at),
        booking=clinic_feed_pb2.BookingSummary(
            booking_id=n.booking_id, service_name=n.service_name, slot_start_time=ts(n.start),
            slot_end_time=ts(n.end), pet_name=n.pet_name, pet_species=booking_pb2.Species.Value(n.pet_species),
            owner_name=n.owner_name, owner_email=n.owner_email,
            amount=money_pb2.Money(amount_minor=n.amount_minor, currency=n.currency),
        ),
    ).SerializeToString()


class ClinicFeedServicer(clinic_feed_pb2_grpc.ClinicFeedServiceServicer):
    """Replay after the cursor, then live — no gap, no duplicate at the switch-over.

    Live messages are subscribed to *before* the replay query, and every message with a cursor at or
    below the last one sent is dropped.  Per-clinic cursors are committed in order, so a jump means a
    missed live message: the gap is filled from the database.  An idle stream re-checks the database
    every ``resync_seconds`` (covers a lost pub/sub message or a Redis restart)."""

    def __init__(self, handlers: NotifyHandlers, authn: Authenticator, subscribe: Subscribe, *,
                 resync_seconds: float = 15.0) -> None:
        self.h = handlers
        self.authn = authn
        self.subscribe = subscribe
        self.resync = resync_seconds
        self.closing = asyncio.Event()

    async def close(self) -> None:
        self.closing.set()

    async def Subscribe(self, request, context) -> AsyncIterator[clinic_feed_pb2.SubscribeResponse]:  # type: ignore[no-untyped-def, override]
        principal = await self.authn.principal(context)
        if not principal.can_read_clinic(request.clinic_id):
            raise PermissionDenied("not staff of this clinic", reason="CLINIC_FORBIDDEN")
        clinic = uid(request.clinic_id, "clinic_id")
        queue, unsubscribe = await self.subscribe(clinic)
        last = request.after_cursor
        try:
            async for event in self._catch_up(clinic, last):
                last = event.cursor
                yield clinic_feed_pb2.SubscribeResponse(event=event)
            closing = asyncio.ensure_future(self.closing.wait())
            try:
                while not self.closing.is_set():
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait({getter, closing}, timeout=self.resync,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        if self.closing.is_set():
                            break
                        pending = self._catch_up(clinic, last)  # idle: re-check the database
                    else:
                        event = clinic_feed_pb2.ClinicEvent.FromString(getter.result())
                        if event.cursor <= last:
                            continue
                        pending = self._single(event) if event.cursor == last + 1 else self._catch_up(clinic, last)
                    async for event in pending:
                        last = event.cursor
                        yield clinic_feed_pb2.SubscribeResponse(event=event)
            finally:
                closing.cancel()
        finally:
            await unsubscribe()

    async def _catch_up(self, clinic: uuid.UUID, after: int) -> AsyncIterator[clinic_feed_pb2.ClinicEvent]:
        while True:
            rows = await self.h.feed_after(clinic, after)
            for row in rows:
                after = row.cursor
                yield clinic_feed_pb2.ClinicEvent.FromString(row.payload)
            if len(rows) < 500:
                return

    @staticmethod
    async def _single(event: clinic_feed_pb2.ClinicEvent) -> AsyncIterator[clinic_feed_pb2.ClinicEvent]:
        yield event


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    def __init__(self, handlers: NotifyHandlers) -> None:
        self.h = handlers

    async def ListNotifications(self, request, context):  # type: ignore[no-untyped-def]
        rows, token = await self.h.inbox(uid(request.user_id, "user_id"), request.page_size, request.page_token)
        return notification_pb2.ListNotificationsResponse(
            notifications=[notification_pb2.Notification(
                notification_id=str(r.id), user_id=str(r.user_id), title=r.title, body=r.body, data=r.data,
                event_id=str(r.event_id), create_time=ts(r.created_at)) for r in rows],
            next_page_token=token)

    async def RegisterDevice(self, request, context):  # type: ignore[no-untyped-def]
        platform = notification_pb2.DevicePlatform.Name(request.platform).removeprefix("DEVICE_PLATFORM_")
        d = await self.h.register_device(uid(request.user_id, "user_id"), platform, request.token)
        return notification_pb2.RegisterDeviceResponse(device=notification_pb2.Device(
            device_id=str(d.id), user_id=str(d.user_id),
            platform=notification_pb2.DevicePlatform.Value(f"DEVICE_PLATFORM_{d.platform}"),
            create_time=ts(d.created_at)))
