"""notif's channels where the adapters meet the real things: a booking event (protobuf, as booking will
send it with the owner's and the clinic's locale and address) recorded in PostgreSQL, mailed through
the SMTP sink with its calendar event, and pushed through the FCM and APNs stand-in, in the owner's
language (else the clinic's), with one instant everywhere and a gone token removed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import icalendar
import ics
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from notif_worker.adapters.apns import ApnsPush
from notif_worker.adapters.codecs import decode_booking_created, encode_clinic_event
from notif_worker.adapters.fcm import FcmPush
from notif_worker.adapters.mail import SmtpMailer
from notif_worker.adapters.push import InboxPush
from notif_worker.adapters.repository import NotifRepository
from notif_worker.adapters.tables import SCHEMA
from notif_worker.domain import FeedRow
from notif_worker.handlers import DevicePushes, NotifyHandlers, Retry
from petpro.db import Database
from petpro.migrations import migrate
from petpro.smtp import SmtpClient
from petpro_api.booking.v1 import booking_pb2, events_pb2
from petpro_api.common.v1 import money_pb2
from petpro_dev.devstack import Stack
from petpro_dev.devstack.mail import list_messages

pytestmark = pytest.mark.integration
SENDER = "PetPro <bookings@petpro.dev>"


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


def booking_created(start: datetime, owner_locale: str, clinic_locale: str) -> bytes:
    return events_pb2.BookingCreated(
        event_id=str(uuid.uuid4()),
        occurred_at=ts(datetime.now(UTC)),
        booking_id=str(uuid.uuid4()),
        clinic_id=str(uuid.uuid4()),
        clinic_name="Tierarztpraxis Mitte",
        clinic_time_zone="Europe/Berlin",
        clinic_locale=clinic_locale,
        clinic_address="Torstraße 1, 10119 Berlin",
        service=events_pb2.BookingCreated.Service(service_id=str(uuid.uuid4()), name="Impfung"),
        slot_start_time=ts(start),
        slot_end_time=ts(start + timedelta(minutes=30)),
        pet=events_pb2.BookingCreated.Pet(
            pet_id=str(uuid.uuid4()), name="Bello", species=booking_pb2.SPECIES_DOG
        ),
        owner=events_pb2.BookingCreated.Owner(
            user_id=str(uuid.uuid4()),
            email=f"owner-{uuid.uuid4().hex[:8]}@example.test",
            name="Jana",
            locale=owner_locale,
        ),
        amount=money_pb2.Money(amount_minor=4550, currency="EUR"),
        reminder_offsets_minutes=[120],
    ).SerializeToString()


@pytest.fixture(scope="module")
def env(devstack: Stack) -> dict[str, str]:
    env = devstack.env()
    migrate("notif_worker", env["DATABASE_URL"])
    return env


async def nothing(clinic_id: uuid.UUID, row: FeedRow) -> None:
    return None


class Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.db = Database(env["DATABASE_URL"], SCHEMA, app_name="test-notif-channels", pool_size=2)
        self.uow, self.read = self.db.repositories(NotifRepository)
        self.smtp = SmtpClient(env["SMTP_URL"])
        self.fcm = FcmPush(
            env["NOTIF_FCM_CREDENTIALS_FILE"],
            api_base=env["NOTIF_FCM_API_BASE"],
            token_uri=env["NOTIF_FCM_TOKEN_URI"],
        )
        self.apns = ApnsPush(
            env["NOTIF_APNS_KEY_FILE"],
            env["NOTIF_APNS_KEY_ID"],
            env["NOTIF_APNS_TEAM_ID"],
            env["NOTIF_APNS_TOPIC"],
            api_base=env["NOTIF_APNS_API_BASE"],
        )
        retry = Retry(attempts=3, base_delay=0.05)
        self.notify = NotifyHandlers(
            self.read,
            SmtpMailer(self.smtp, SENDER, "https://app.petpro.dev/bookings"),
            InboxPush(),
            encode_clinic_event,
            nothing,
            retry,
            devices=DevicePushes([self.fcm, self.apns], retry),
        )

    async def close(self) -> None:
        await self.fcm.close()
        await self.apns.close()
        await self.smtp.close()
        await self.db.close()


@pytest.fixture
async def worker(env: dict[str, str]) -> AsyncIterator[Worker]:
    w = Worker(env)
    yield w
    await w.close()


async def sandbox(env: dict[str, str], method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=env["PUSH_API_BASE"]) as c:
        r = await c.request(method, path, json=body)
        r.raise_for_status()
        return r.json()


@pytest.mark.parametrize(
    ("owner_locale", "clinic_locale", "expected"), [("de", "", "de"), ("", "fr-FR", "fr")]
)
async def test_an_event_reaches_mail_and_phones_in_the_chosen_language_at_one_instant(
    worker: Worker, env: dict[str, str], devstack: Stack, owner_locale: str, clinic_locale: str, expected: str
) -> None:
    start = datetime(2026, 10, 26, 9, tzinfo=UTC)  # the Monday after the autumn change: 10:00 CET
    n = decode_booking_created(booking_created(start, owner_locale, clinic_locale))
    assert (n.owner_locale, n.clinic_locale, n.clinic_address) == (
        owner_locale,
        clinic_locale,
        "Torstraße 1, 10119 Berlin",
    )
    android, iphone, gone = f"int-{uuid.uuid4().hex}:x", uuid.uuid4().hex * 2, f"int-{uuid.uuid4().hex}:gone"
    await sandbox(env, "POST", "/_sandbox/unregister", {"token": gone})
    async with worker.uow() as repo:
        for platform, token in (("ANDROID", android), ("IOS", iphone), ("WEB", gone)):
            await repo.upsert_device(n.owner_user_id, platform, token)

    await worker.notify.notify(n)
    await worker.notify.notify(n)  # a redelivery: nothing twice

    (mail,) = [m for m in list_messages(devstack.ctx.mail_dir) if n.owner_email in m.to]
    assert mail.message["Content-Language"] == expected
    words = {
        "de": ("Buchung bestätigt", "Impfung für Bello"),
        "fr": ("Réservation confirmée", "Impfung pour Bello"),
    }
    assert mail.subject.startswith(words[expected][0])
    (part,) = [p for p in mail.message.walk() if p.get_content_type() == "text/calendar"]
    data = part.get_payload(decode=True)
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    (other,) = ics.Calendar(data.decode()).events
    assert event.decoded("dtstart").astimezone(UTC) == other.begin.datetime.astimezone(UTC) == start
    assert event.decoded("dtstart").utcoffset() == timedelta(hours=1)  # CET
    assert words[expected][1] in str(event["summary"]) and "Torstraße 1" in str(event["location"])
    money = "45,50\xa0€"
    assert money in mail.body() and "Torstraße 1, 10119 Berlin" in mail.body()

    pushed = await sandbox(env, "GET", f"/_sandbox/messages?token={android}") + await sandbox(
        env, "GET", f"/_sandbox/messages?token={iphone}"
    )
    assert sorted(m["provider"] for m in pushed) == ["apns", "fcm"]
    for m in pushed:
        assert m["title"].startswith(words[expected][0]) and "10:00" in m["body"]
        assert datetime.fromisoformat(m["data"]["start_time"]) == start
    async with worker.read() as repo:
        assert sorted(d.platform for d in await repo.devices_of(n.owner_user_id)) == ["ANDROID", "IOS"]
