"""ClinicFeedService (server stream) and NotificationService servicers: request → handler → response,
and the pb <-> domain conversions they need.  NotificationService's inbox, device and preference
methods serve the BFF (which names the user); its calendar feed token and quiet-hours methods are
served through the REST edge and authenticate the caller here, the feed itself by its token."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import parse_qsl

import grpc
from google.api import httpbody_pb2

from notif_worker.domain import ClinicSms, FeedToken, PaymentRequest, Preferences, QuietHours, SmsPhone
from notif_worker.handlers import (
    AccountErasure,
    CalendarHandlers,
    ClinicFeed,
    InboxHandlers,
    PaymentRequestHandlers,
    PreferenceHandlers,
    QuietHoursHandlers,
    SmsHandlers,
)
from petpro.authn import Authenticator, require_clinic
from petpro.convert import dt, ts, uid
from petpro.errors import NotFound
from petpro_api.notification.v1 import (
    clinic_feed_pb2,
    clinic_feed_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
)


class ClinicFeedServicer(clinic_feed_pb2_grpc.ClinicFeedServiceServicer):
    """Authenticates the subscriber, checks clinic membership (``require_clinic``), then streams ``ClinicFeed.follow``."""

    def __init__(self, feed: ClinicFeed, authn: Authenticator) -> None:
        self.feed = feed
        self.authn = authn

    async def close(self) -> None:
        await self.feed.close()

    async def Subscribe(
        self,
        request: clinic_feed_pb2.SubscribeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[clinic_feed_pb2.SubscribeResponse]:
        principal = await self.authn.principal(context)
        # a non-member (another clinic's staff, an owner) is told NOT_FOUND, as on every clinic-scoped
        # method: the clinic's existence is not revealed
        require_clinic(principal, request.clinic_id)
        clinic = uid(request.clinic_id, "clinic_id")
        async with contextlib.aclosing(self.feed.follow(clinic, request.after_cursor)) as rows:
            async for row in rows:
                yield clinic_feed_pb2.SubscribeResponse(
                    event=clinic_feed_pb2.ClinicEvent.FromString(row.payload)
                )


class SmsPhoneNotFound(NotFound):
    reason = "SMS_PHONE_NOT_FOUND"


PreferenceField = Literal[
    "reminders_email", "reminders_push", "changes_email", "changes_push", "reminders_sms", "changes_sms"
]
PREFERENCE_FIELDS: tuple[PreferenceField, ...] = (
    "reminders_email",
    "reminders_push",
    "changes_email",
    "changes_push",
    "reminders_sms",
    "changes_sms",
)


def preferences_pb(p: Preferences) -> notification_pb2.NotificationPreferences:
    return notification_pb2.NotificationPreferences(**{f: getattr(p, f) for f in PREFERENCE_FIELDS})


def feed_token_pb(t: FeedToken) -> notification_pb2.CalendarFeedToken:
    return notification_pb2.CalendarFeedToken(
        token=t.token, feed_path=t.feed_path, create_time=ts(t.created_at)
    )


def quiet_hours_pb(q: QuietHours) -> notification_pb2.QuietHours:
    return notification_pb2.QuietHours(start=f"{q.start:%H:%M}", end=f"{q.end:%H:%M}")


def sms_phone_pb(p: SmsPhone) -> notification_pb2.SmsPhone:
    return notification_pb2.SmsPhone(
        phone_number=p.phone,
        state=notification_pb2.SmsPhoneState.Value(f"SMS_PHONE_STATE_{p.state}"),
        verify_time=ts(p.verified_at),
    )


def sms_settings_pb(s: ClinicSms, used: int) -> notification_pb2.SmsSettings:
    return notification_pb2.SmsSettings(enabled=s.enabled, monthly_cap=s.monthly_cap, sent_this_month=used)


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    def __init__(
        self,
        inbox: InboxHandlers,
        preferences: PreferenceHandlers,
        calendar: CalendarHandlers,
        quiet_hours: QuietHoursHandlers,
        authn: Authenticator,
        payment_requests: PaymentRequestHandlers,
        sms: SmsHandlers | None = None,
        accounts: AccountErasure | None = None,
    ) -> None:
        self.accounts = accounts
        self.payment_requests = payment_requests
        self.inbox = inbox
        self.preferences = preferences
        self.calendar = calendar
        self.quiet = quiet_hours
        self.authn = authn
        self.sms = sms or SmsHandlers(inbox.uow, inbox.read, None)

    async def ExportUserData(
        self, request: notification_pb2.ExportUserDataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> notification_pb2.ExportUserDataResponse:
        assert self.accounts is not None
        out = notification_pb2.ExportUserDataResponse()
        out.data.update(await self.accounts.export(uid(request.user_id, "user_id"), request.email))
        return out

    async def SendPaymentRequest(
        self,
        request: notification_pb2.SendPaymentRequestRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.SendPaymentRequestResponse:
        sent = await self.payment_requests.send(
            PaymentRequest(
                lock_id=uid(request.lock_id, "lock_id"),
                user_id=uid(request.user_id, "user_id"),
                email=request.email,
                name=request.name,
                payment_url=request.payment_url,
                service_name=request.service_name,
                start=dt(request.slot_start_time),
                amount=request.amount,
                expires_at=dt(request.expires_at),
            )
        )
        return notification_pb2.SendPaymentRequestResponse(sent=sent)

    async def GetCalendarFeed(
        self, request: notification_pb2.GetCalendarFeedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> httpbody_pb2.HttpBody:
        data = await self.calendar.feed(request.token)
        return httpbody_pb2.HttpBody(content_type="text/calendar; charset=utf-8", data=data)

    async def CreateCalendarFeedToken(
        self,
        request: notification_pb2.CreateCalendarFeedTokenRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.CreateCalendarFeedTokenResponse:
        me = await self.authn.principal(context)
        t = await self.calendar.create_token(uid(me.user_id, "user_id"))
        return notification_pb2.CreateCalendarFeedTokenResponse(feed_token=feed_token_pb(t))

    async def RotateCalendarFeedToken(
        self,
        request: notification_pb2.RotateCalendarFeedTokenRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.RotateCalendarFeedTokenResponse:
        me = await self.authn.principal(context)
        t = await self.calendar.rotate_token(uid(me.user_id, "user_id"))
        return notification_pb2.RotateCalendarFeedTokenResponse(feed_token=feed_token_pb(t))

    async def RevokeCalendarFeedToken(
        self,
        request: notification_pb2.RevokeCalendarFeedTokenRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.RevokeCalendarFeedTokenResponse:
        me = await self.authn.principal(context)
        revoked = await self.calendar.revoke_token(uid(me.user_id, "user_id"))
        return notification_pb2.RevokeCalendarFeedTokenResponse(revoked=revoked)

    async def GetClinicQuietHours(
        self,
        request: notification_pb2.GetClinicQuietHoursRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.GetClinicQuietHoursResponse:
        require_clinic(await self.authn.principal(context), request.clinic_id)
        q, default = await self.quiet.quiet_hours(uid(request.clinic_id, "clinic_id"))
        return notification_pb2.GetClinicQuietHoursResponse(
            quiet_hours=quiet_hours_pb(q), platform_default=default
        )

    async def UpdateClinicQuietHours(
        self,
        request: notification_pb2.UpdateClinicQuietHoursRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.UpdateClinicQuietHoursResponse:
        require_clinic(await self.authn.principal(context), request.clinic_id, admin=True)
        q = QuietHours.parse(request.quiet_hours.start, request.quiet_hours.end)
        q = await self.quiet.set_quiet_hours(uid(request.clinic_id, "clinic_id"), q)
        return notification_pb2.UpdateClinicQuietHoursResponse(quiet_hours=quiet_hours_pb(q))

    async def ListNotifications(
        self, request: notification_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> notification_pb2.ListNotificationsResponse:
        rows, token = await self.inbox.inbox(
            uid(request.user_id, "user_id"), request.page_size, request.page_token
        )
        return notification_pb2.ListNotificationsResponse(
            notifications=[
                notification_pb2.Notification(
                    notification_id=str(r.id),
                    user_id=str(r.user_id),
                    title=r.title,
                    body=r.body,
                    data=r.data,
                    event_id=str(r.event_id),
                    create_time=ts(r.created_at),
                )
                for r in rows
            ],
            next_page_token=token,
        )

    async def GetNotificationPreferences(
        self,
        request: notification_pb2.GetNotificationPreferencesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.GetNotificationPreferencesResponse:
        p = await self.preferences.preferences(uid(request.user_id, "user_id"))
        return notification_pb2.GetNotificationPreferencesResponse(preferences=preferences_pb(p))

    async def UpdateNotificationPreferences(
        self,
        request: notification_pb2.UpdateNotificationPreferencesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.UpdateNotificationPreferencesResponse:
        changes: dict[str, bool] = {
            f: bool(getattr(request, f)) for f in PREFERENCE_FIELDS if request.HasField(f)
        }
        p = await self.preferences.update_preferences(uid(request.user_id, "user_id"), changes)
        return notification_pb2.UpdateNotificationPreferencesResponse(preferences=preferences_pb(p))

    async def RegisterDevice(
        self, request: notification_pb2.RegisterDeviceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> notification_pb2.RegisterDeviceResponse:
        platform = notification_pb2.DevicePlatform.Name(request.platform).removeprefix("DEVICE_PLATFORM_")
        d = await self.inbox.register_device(uid(request.user_id, "user_id"), platform, request.token)
        return notification_pb2.RegisterDeviceResponse(
            device=notification_pb2.Device(
                device_id=str(d.id),
                user_id=str(d.user_id),
                platform=notification_pb2.DevicePlatform.Value(f"DEVICE_PLATFORM_{d.platform}"),
                create_time=ts(d.created_at),
            )
        )

    # -- SMS ----------------------------------------------------------------------------------------------
    async def StartSmsVerification(
        self,
        request: notification_pb2.StartSmsVerificationRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.StartSmsVerificationResponse:
        me = await self.authn.principal(context)
        p = await self.sms.start_verification(uid(me.user_id, "user_id"), request.phone_number, me.locale)
        return notification_pb2.StartSmsVerificationResponse(
            sms_phone=sms_phone_pb(p), expire_time=ts(p.code_expires_at)
        )

    async def ConfirmSmsVerification(
        self,
        request: notification_pb2.ConfirmSmsVerificationRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.ConfirmSmsVerificationResponse:
        me = await self.authn.principal(context)
        p = await self.sms.confirm_verification(uid(me.user_id, "user_id"), request.code)
        return notification_pb2.ConfirmSmsVerificationResponse(sms_phone=sms_phone_pb(p))

    async def GetSmsPhone(
        self, request: notification_pb2.GetSmsPhoneRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> notification_pb2.GetSmsPhoneResponse:
        me = await self.authn.principal(context)
        p = await self.sms.phone(uid(me.user_id, "user_id"))
        if p is None:
            raise SmsPhoneNotFound("no number for texts; start a verification first")
        return notification_pb2.GetSmsPhoneResponse(sms_phone=sms_phone_pb(p))

    async def GetClinicSmsSettings(
        self,
        request: notification_pb2.GetClinicSmsSettingsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.GetClinicSmsSettingsResponse:
        require_clinic(await self.authn.principal(context), request.clinic_id)
        s, used = await self.sms.clinic_setting(uid(request.clinic_id, "clinic_id"))
        return notification_pb2.GetClinicSmsSettingsResponse(sms_settings=sms_settings_pb(s, used))

    async def UpdateClinicSmsSettings(
        self,
        request: notification_pb2.UpdateClinicSmsSettingsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notification_pb2.UpdateClinicSmsSettingsResponse:
        require_clinic(await self.authn.principal(context), request.clinic_id, admin=True)
        wanted = ClinicSms(request.sms_settings.enabled, request.sms_settings.monthly_cap)
        s, used = await self.sms.set_clinic_setting(uid(request.clinic_id, "clinic_id"), wanted)
        return notification_pb2.UpdateClinicSmsSettingsResponse(sms_settings=sms_settings_pb(s, used))

    async def HandleInboundSms(
        self, request: notification_pb2.HandleInboundSmsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> notification_pb2.HandleInboundSmsResponse:
        params = dict(parse_qsl(request.payload.decode("utf-8", "replace"), keep_blank_values=True))
        outcome = await self.sms.inbound(params, request.signature)
        return notification_pb2.HandleInboundSmsResponse(outcome=outcome)
