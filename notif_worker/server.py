"""notif_worker composition root: NotifSettings, build(settings) wiring PostgreSQL, Redis, SMTP, Kafka,
the push providers (FCM, APNs), Twilio (SMS) and the auth service into the use cases: the booking events consumer,
the reminder, parked-event and stale-text sweeps, the clinic feed (gRPC stream with Redis fan-out), the owner's
inbox, preferences, calendar feed and SMS number, the clinics' quiet hours and SMS setting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from notif_worker.adapters import calendar
from notif_worker.adapters.apns import APNS_API_BASE, ApnsPush
from notif_worker.adapters.codecs import clinic_event_cursor, decode_event, encode_clinic_event
from notif_worker.adapters.consumer import BookingEventsConsumer
from notif_worker.adapters.fanout import RedisFanout
from notif_worker.adapters.fcm import FCM_API_BASE, FcmPush
from notif_worker.adapters.joining import ConsumerSettings, booking_events_consumer
from notif_worker.adapters.mail import SmtpMailer
from notif_worker.adapters.push import InboxPush
from notif_worker.adapters.repository import NotifRepository
from notif_worker.adapters.sms import TWILIO_API_BASE, TwilioSms
from notif_worker.adapters.tables import SCHEMA
from notif_worker.domain import QuietHours
from notif_worker.domain.wording import preload
from notif_worker.handlers import (
    AccountErasure,
    CalendarHandlers,
    ClinicFeed,
    DevicePushes,
    InboxHandlers,
    NotifyHandlers,
    PaymentRequestHandlers,
    PreferenceHandlers,
    QuietHoursHandlers,
    ReminderHandlers,
    Retry,
    SmsHandlers,
)
from notif_worker.ports import DevicePush, LiveFanout, Mailer, PaymentRequestMail, SmsSender, UnitOfWork
from notif_worker.service import ClinicFeedServicer, NotificationServicer
from petpro import cache, events, grpc_client, grpc_server, mesh
from petpro.authn import Authenticator
from petpro.db import Database
from petpro.erasure import account_deleted_subscriber
from petpro.settings import load
from petpro.smtp import SmtpClient
from petpro_api.auth.v1 import auth_pb2_grpc
from petpro_api.notification.v1 import clinic_feed_pb2_grpc, notification_pb2_grpc


class NotifSettings(ConsumerSettings):
    # (the booking events consumer's topics and group: ConsumerSettings)
    model_config = SettingsConfigDict(env_prefix="NOTIF_", env_file=".env", extra="ignore")

    mail_from: str = "PetPro <bookings@petpro.dev>"
    retry_attempts: int = Field(default=4, ge=1, le=20)
    retry_base_seconds: float = Field(default=0.2, gt=0)
    concurrency: int = Field(default=16, ge=1, le=256)
    feed_resync_seconds: float = Field(default=15.0, gt=0)
    busy_fetch_wait_ms: int = Field(
        default=25,
        ge=0,
        le=500,
        description="how long the broker may hold an empty fetch while events flow (latency against polling CPU)",
    )
    db_pool_size: int = Field(default=20, ge=1, le=100)
    reminder_offsets_minutes: tuple[int, ...] = Field(
        default=(2880, 120), description="reminders before a booking's start unless its clinic sets its own"
    )
    reminder_sweep_seconds: float = Field(
        default=1.0, gt=0, description="how often due reminders are looked for"
    )
    parked_max_seconds: float = Field(
        default=300.0, gt=0, description="how long a lifecycle event waits for its predecessor"
    )
    quiet_hours: str = Field(
        default="21:00-08:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$",
        description="the clinics' default quiet hours (their local time): no reminders in them",
    )
    booking_link_base: str = Field(
        default="https://app.petpro.dev/bookings",
        description="the link back to a booking in calendar events (the booking id is appended)",
    )
    fcm_credentials_file: str | None = Field(
        default=None, description="FCM service-account JSON key; unset: no push to Android and web devices"
    )
    fcm_api_base: str = Field(default=FCM_API_BASE, description="FCM HTTP v1 endpoint")
    fcm_token_uri: str | None = Field(
        default=None, description="OAuth 2.0 token endpoint; unset: the key file's token_uri"
    )
    fcm_project_id: str | None = Field(default=None, description="Firebase project; unset: the key file's")
    apns_key_file: str | None = Field(
        default=None, description="APNs auth key (.p8, ES256); unset: no push to iOS devices"
    )
    apns_key_id: str = Field(default="", description="the .p8 key's id (the provider token's kid)")
    apns_team_id: str = Field(default="", description="Apple developer team id (the provider token's iss)")
    apns_topic: str = Field(default="", description="the iOS app's bundle id (apns-topic)")
    apns_api_base: str = Field(
        default=APNS_API_BASE,
        description="APNs endpoint (https://api.sandbox.push.apple.com for development builds)",
    )

    sms_account_sid: str | None = Field(
        default=None, description="Twilio Account SID; unset: no text messages (the SMS channel is off)"
    )
    sms_auth_token: str = Field(default="", description="Twilio auth token (signs the webhooks too)")
    sms_from: str = Field(default="", description="the sending number (E.164), unless a messaging service")
    sms_messaging_service_sid: str = Field(default="", description="Twilio Messaging Service SID (MG...)")
    sms_api_base: str = Field(default=TWILIO_API_BASE, description="Twilio's REST API (the stand-in in dev)")
    sms_webhook_url: str = Field(
        default="",
        description="the public URL Twilio posts incoming texts to (…/webhooks/twilio/sms): their signature covers it",
    )
    sms_owner_limit_per_hour: int = Field(
        default=5, ge=1, le=100, description="texts an owner gets per hour at most"
    )
    sms_monthly_cap: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="a clinic's texts per month until its admin sets its own cap",
    )
    sms_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="a text whose send started this long ago and is not settled: its worker stopped or the"
        " outcome is unknown (the provider is asked, the text resent only if it did not go); at least twice"
        " sms_timeout_seconds",
    )
    sms_timeout_seconds: float = Field(
        default=10.0, gt=0, description="how long a call to Twilio may take (then its outcome is unknown)"
    )
    sms_sweep_seconds: float = Field(default=5.0, gt=0, description="how often such texts are looked for")

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotifSettings:
        if self.sms_lease_seconds < 2 * self.sms_timeout_seconds:
            raise ValueError(
                "sms_lease_seconds must be at least twice sms_timeout_seconds: else a text whose send is"
                " still on its way looks abandoned and is sent twice"
            )
        return self

    def quiet_hours_default(self) -> QuietHours:
        start, end = self.quiet_hours.split("-")
        return QuietHours.parse(start, end)


def push_providers(settings: NotifSettings) -> list[FcmPush | ApnsPush]:
    """The device push providers whose credentials are configured."""
    out: list[FcmPush | ApnsPush] = []
    if settings.fcm_credentials_file:
        out.append(
            FcmPush(
                settings.fcm_credentials_file,
                api_base=settings.fcm_api_base,
                token_uri=settings.fcm_token_uri,
                project_id=settings.fcm_project_id,
            )
        )
    if settings.apns_key_file:
        out.append(
            ApnsPush(
                settings.apns_key_file,
                settings.apns_key_id,
                settings.apns_team_id,
                settings.apns_topic,
                api_base=settings.apns_api_base,
            )
        )
    return out


def sms_sender(settings: NotifSettings) -> TwilioSms | None:
    """Twilio, when its credentials are configured."""
    if not settings.sms_account_sid:
        return None
    return TwilioSms(
        settings.sms_account_sid,
        settings.sms_auth_token,
        settings.sms_from,
        api_base=settings.sms_api_base,
        messaging_service_sid=settings.sms_messaging_service_sid,
        timeout=settings.sms_timeout_seconds,
    )


async def preload_wording() -> None:
    """Babel's locale data, loaded in a worker thread right after start (see ``wording.preload``)."""
    await asyncio.to_thread(preload)


def build(
    settings: NotifSettings,
    *,
    uow: UnitOfWork | None = None,
    read: UnitOfWork | None = None,
    mailer: Mailer | None = None,
    payment_mailer: PaymentRequestMail | None = None,
    fanout: LiveFanout | None = None,
    auth: Any = None,
    consumer_factory: Callable[[], KafkaConsumer] | None = None,
    producer_factory: Callable[[], KafkaProducer] | None = None,
    devices: list[DevicePush] | None = None,
    sms: SmsSender | None = None,
    joining: events.EarlyJoin | None = None,
) -> grpc_server.App:
    """The notification worker.  Tests pass fakes of the ports instead of the database, Redis, SMTP,
    the auth service (``auth``: an AuthService stub), Kafka (consumer/producer factories) and the push
    providers (``devices``).  ``joining``: the booking events consumer already joining its group
    (``python -m notif_worker``: notif_worker.adapters.joining), taken over by the consumer's first run."""
    closers: list[Callable[[], Awaitable[None]]] = []  # closed in this order
    if mailer is None:
        smtp = SmtpClient(settings.url("smtp_url"))
        mailer = SmtpMailer(smtp, settings.mail_from, settings.booking_link_base)
        closers.append(smtp.close)
    if devices is None:
        providers = push_providers(settings)
        closers += [p.close for p in providers]
        devices = list(providers)
    if sms is None:
        twilio = sms_sender(settings)
        if twilio is not None:
            closers.append(twilio.close)
        sms = twilio
    if fanout is None:
        redis = cache.make_redis(settings.url("redis_url"))
        redis_fanout = RedisFanout(redis)
        fanout = redis_fanout
        closers += [redis_fanout.close, redis.aclose]
    if auth is None:
        auth_channel = grpc_client.channel(settings.peer("auth"), services=["petpro.auth.v1.AuthService"])
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        closers.append(auth_channel.close)
    erasing = uow is None  # account.deleted is consumed with the database (not with test fakes)
    statements: UnitOfWork | None = None
    if uow is None:
        db = Database(
            settings.url("database_url"), SCHEMA, app_name="notif_worker", pool_size=settings.db_pool_size
        )
        uow, read = db.repositories(NotifRepository)
        # a booking event's statements (the erasure checks, its record, the deliveries' outcomes):
        # plain SQL on psycopg's own autocommit connections, without SQLAlchemy's checkout per step
        statements = db.statement_repositories(NotifRepository)
        closers.append(db.close)
    read = read or uow
    statements = statements or read

    push = InboxPush()
    accounts = AccountErasure(uow, read, check=statements)
    retry = Retry(settings.retry_attempts, settings.retry_base_seconds)
    pushes = DevicePushes(devices, retry)
    texts = SmsHandlers(
        uow,
        read,
        sms,
        owner_limit_per_hour=settings.sms_owner_limit_per_hour,
        monthly_cap=settings.sms_monthly_cap,
        lease=timedelta(seconds=settings.sms_lease_seconds),
        webhook_url=settings.sms_webhook_url,
        retry=retry,
    )
    quiet = settings.quiet_hours_default()
    notify = NotifyHandlers(
        statements,  # recording an event is one statement: autocommit
        mailer,
        push,
        encode_clinic_event,
        fanout.publish,
        retry,
        devices=pushes,
        sms=texts,
        reminder_offsets=settings.reminder_offsets_minutes,
        accounts=accounts,
    )
    reminders = ReminderHandlers(
        uow, mailer, push, devices=pushes, sms=texts, retry=retry, quiet_default=quiet
    )
    organizer = settings.mail_from

    def render_feed(bookings: list[Any], locale: str) -> bytes:
        return calendar.feed(bookings, organizer, settings.booking_link_base, locale)

    if consumer_factory is None or producer_factory is None:
        bootstrap = settings.url("kafka_bootstrap_servers")
        consumer_factory = consumer_factory or (lambda: booking_events_consumer(settings))
        producer_factory = producer_factory or (lambda: events.producer(bootstrap, "notif_worker-dlq"))
    erasure: list[Callable[[], Awaitable[None]]] = []
    if erasing:
        erasure.append(
            account_deleted_subscriber(
                "notif_worker.account_deleted",
                settings.url("kafka_bootstrap_servers"),
                mesh.NOTIF_ACCOUNT_CONSUMER,
                accounts.erase,
            ).run
        )
    consumer = BookingEventsConsumer(
        notify,
        consumer_factory,
        producer_factory,
        settings.dlq_topic,
        concurrency=settings.concurrency,
        busy_fetch_wait_ms=settings.busy_fetch_wait_ms,
        joining=joining,
    )
    authn = Authenticator(auth)
    feed = ClinicFeedServicer(
        ClinicFeed(read, fanout.subscribe, clinic_event_cursor, resync_seconds=settings.feed_resync_seconds),
        authn,
    )

    async def close() -> None:
        for closer in closers:
            await closer()

    return grpc_server.App(
        name="notif_worker",
        settings=settings,
        services=[
            grpc_server.Registration(
                clinic_feed_pb2_grpc.add_ClinicFeedServiceServicer_to_server,
                feed,
                "petpro.notification.v1.ClinicFeedService",
                authenticator=feed.authn,
            ),
            grpc_server.Registration(
                notification_pb2_grpc.add_NotificationServiceServicer_to_server,
                NotificationServicer(
                    InboxHandlers(uow, read),
                    PreferenceHandlers(uow, read),
                    CalendarHandlers(uow, read, render_feed),
                    QuietHoursHandlers(uow, read, quiet),
                    authn,
                    PaymentRequestHandlers(
                        read, mailer if isinstance(mailer, SmtpMailer) else payment_mailer
                    ),
                    sms=texts,
                    accounts=accounts,
                ),
                "petpro.notification.v1.NotificationService",
            ),
        ],
        background=[
            preload_wording,  # once, off the event loop: the first events do not pay for it
            fanout.run,
            consumer.run,
            *erasure,
            grpc_server.periodic(
                "notif_worker.reminders", settings.reminder_sweep_seconds, reminders.send_due_reminders
            ),
            grpc_server.periodic("notif_worker.sms", settings.sms_sweep_seconds, texts.resend_stale),
            grpc_server.periodic(
                "notif_worker.parked",
                min(settings.parked_max_seconds / 4, 30.0),
                lambda: notify.release_stale_parked(
                    decode_event, timedelta(seconds=settings.parked_max_seconds)
                ),
            ),
        ],
        on_shutdown=[feed.close],
        on_stop=[close],
        # ready once the booking events consumer is in its group (bounded: see App.ready)
        ready=[consumer.wait_joined],
    )


def main(joining: events.EarlyJoin | None = None) -> None:
    def build_joining(settings: NotifSettings) -> grpc_server.App:
        return build(settings, joining=joining)

    grpc_server.main(build_joining, load(NotifSettings))
