"""The notification use cases that reach beyond the inbox, with fakes: pushes to the owner's devices
(once per device, gone tokens removed, transient failures retried, never another owner's token),
reminders outside quiet hours, the calendar feed and its token, the clinics' quiet hours."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from notif_worker.adapters.calendar import feed
from notif_worker.adapters.codecs import encode_clinic_event
from notif_worker.adapters.push import InboxPush
from notif_worker.domain import BookingNotice, ChannelFailed, QuietHours, token_hash
from notif_worker.handlers import (
    CalendarHandlers,
    DevicePushes,
    InboxHandlers,
    NotifyHandlers,
    QuietHoursHandlers,
    ReminderHandlers,
    Retry,
)
from petpro.errors import AlreadyExists, NotFound
from tests.unit.fakes.notif import LiveHub, NotifStore, RecordingMailer, RecordingPush, notif_uow

BERLIN = ZoneInfo("Europe/Berlin")
NO_WAIT = Retry(attempts=3, base_delay=0, max_delay=0)
VISIT = datetime(2030, 1, 16, 10, tzinfo=BERLIN)


def notice(owner: uuid.UUID | None = None, **changes: object) -> BookingNotice:
    n = BookingNotice(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2030, 1, 7, 8, tzinfo=UTC),
        booking_id=str(uuid.uuid4()),
        clinic_id=uuid.uuid4(),
        clinic_name="Vet Mitte",
        clinic_time_zone="Europe/Berlin",
        service_name="Check-up",
        start=VISIT.astimezone(UTC),
        end=(VISIT + timedelta(minutes=30)).astimezone(UTC),
        pet_name="Rex",
        pet_species="SPECIES_DOG",
        owner_user_id=owner or uuid.uuid4(),
        owner_email="o@example.test",
        owner_name="Olga",
        amount_minor=4500,
        currency="EUR",
    )
    return replace(n, **changes)  # type: ignore[arg-type]


class World:
    def __init__(self, push: RecordingPush | None = None) -> None:
        self.now = datetime(2030, 1, 7, 8, tzinfo=UTC)
        self.store = NotifStore()
        self.uow = notif_uow(self.store)
        self.mailer = RecordingMailer()
        self.push = push or RecordingPush()
        devices = DevicePushes([self.push], NO_WAIT)
        self.notifier = NotifyHandlers(
            self.uow,
            self.mailer,
            InboxPush(),
            encode_clinic_event,
            LiveHub().publish,
            NO_WAIT,
            devices=devices,
            clock=lambda: self.now,
        )
        self.reminders = ReminderHandlers(
            self.uow, self.mailer, InboxPush(), devices=devices, clock=lambda: self.now
        )
        self.owners = InboxHandlers(self.uow)
        self.calendar = CalendarHandlers(
            self.uow,
            self.uow,
            lambda bs, loc: feed(bs, "PetPro <b@petpro.dev>", "", loc),
            clock=lambda: self.now,
        )
        self.quiet = QuietHoursHandlers(self.uow, self.uow)


async def test_one_push_per_device_of_the_owner_once_whatever_the_copies() -> None:
    w = World()
    n = notice()
    phone = await w.owners.register_device(n.owner_user_id, "ANDROID", "fcm-token-aaaaaaaaaaaaaaaa")
    tablet = await w.owners.register_device(n.owner_user_id, "IOS", "a" * 64)
    await w.owners.register_device(uuid.uuid4(), "ANDROID", "someone-elses-token-bbbbbbbb")
    await w.notifier.notify(n)
    await w.notifier.notify(n)  # a redelivered copy
    assert sorted(d.id for d, *_ in w.push.sent) == sorted([phone.id, tablet.id])
    (_, title, body, data) = w.push.sent[0]
    assert title == "Booking confirmed: Check-up" and "Rex at Vet Mitte" in body
    assert datetime.fromisoformat(data["start_time"]) == n.start
    assert {w.store.deliveries[(n.event_id, "device", str(d))]["status"] for d in (phone.id, tablet.id)} == {
        "delivered"
    }


async def test_a_gone_token_is_removed_and_not_retried() -> None:
    w = World()
    n = notice()
    await w.owners.register_device(n.owner_user_id, "ANDROID", "uninstalled-token-cccccccc")
    w.push.gone.add("uninstalled-token-cccccccc")
    await w.notifier.notify(n)
    assert w.push.sent == [] and w.store.devices == {}
    assert len(w.mailer.sent) == 1  # the email still went


async def test_a_transient_failure_is_retried_and_exhausted_retries_fail_the_channel() -> None:
    w = World(RecordingPush(failures=2))
    n = notice()
    await w.owners.register_device(n.owner_user_id, "ANDROID", "flaky-token-dddddddddddd")
    await w.notifier.notify(n)
    assert len(w.push.sent) == 1  # the third attempt
    w2 = World(RecordingPush(failures=10))
    n2 = notice()
    device = await w2.owners.register_device(n2.owner_user_id, "IOS", "b" * 64)
    with pytest.raises(ChannelFailed, match=r"push\.ios"):
        await w2.notifier.notify(n2)
    assert w2.store.deliveries[(n2.event_id, "device", str(device.id))]["status"] == "failed"
    w2.push.failures = 0
    await w2.notifier.notify(n2)  # the event again (from the DLQ): only the missing push
    assert len(w2.push.sent) == 1


async def test_a_token_registered_by_another_owner_is_theirs_alone() -> None:
    w = World()
    first, second = uuid.uuid4(), uuid.uuid4()
    await w.owners.register_device(first, "ANDROID", "handed-on-phone-eeeeeeeeee")
    await w.owners.register_device(second, "ANDROID", "handed-on-phone-eeeeeeeeee")  # the phone changed hands
    await w.notifier.notify(notice(first))
    assert w.push.sent == []
    await w.notifier.notify(notice(second))
    assert len(w.push.sent) == 1


async def test_no_push_for_a_platform_without_a_provider_and_none_when_switched_off() -> None:
    w = World(RecordingPush(platforms=frozenset({"IOS"})))
    n = notice()
    await w.owners.register_device(n.owner_user_id, "WEB", "web-token-ffffffffffffffff")
    await w.notifier.notify(n)
    assert w.push.sent == []
    moved = replace(n, event_id=uuid.uuid4(), kind="rescheduled", version=2)
    await w.owners.register_device(n.owner_user_id, "IOS", "c" * 64)
    w.store.preferences[n.owner_user_id] = replace(
        w.store.preferences.get(n.owner_user_id) or _prefs(), changes_push=False
    )
    await w.notifier.notify(moved)
    assert w.push.sent == []


def _prefs():  # type: ignore[no-untyped-def]
    from notif_worker.domain import Preferences

    return Preferences()


# -- reminders and quiet hours -------------------------------------------------------------------------


async def test_a_reminder_due_at_three_local_goes_at_the_end_of_quiet_hours() -> None:
    w = World()
    n = notice()
    await w.owners.register_device(n.owner_user_id, "ANDROID", "reminded-phone-gggggggggg")
    await w.notifier.notify(replace(n, reminder_offsets=(420,)))  # 7 h before 10:00: due at 03:00
    w.push.sent.clear()
    w.now = datetime(2030, 1, 16, 3, tzinfo=BERLIN).astimezone(UTC)
    assert await w.reminders.send_due_reminders() == 0
    (r,) = w.store.reminders.values()
    assert r["due"] == datetime(2030, 1, 16, 8, tzinfo=BERLIN) and r["state"] == "PENDING"
    w.now = datetime(2030, 1, 16, 7, 59, tzinfo=BERLIN).astimezone(UTC)
    assert await w.reminders.send_due_reminders() == 0
    w.now = datetime(2030, 1, 16, 8, tzinfo=BERLIN).astimezone(UTC)
    assert await w.reminders.send_due_reminders() == 1
    assert [m.kind for m in w.mailer.sent][-1] == "reminder"
    assert w.push.sent[-1][1] == "Reminder: Check-up for Rex"


async def test_a_reminder_whose_quiet_hours_last_until_the_visit_is_dropped() -> None:
    w = World()
    early = VISIT.replace(hour=7, minute=30)
    n = notice(
        start=early.astimezone(UTC),
        end=(early + timedelta(minutes=30)).astimezone(UTC),
        reminder_offsets=(120,),
    )
    await w.notifier.notify(n)
    w.now = early.astimezone(UTC) - timedelta(hours=2)  # 05:30
    assert await w.reminders.send_due_reminders() == 0
    (r,) = w.store.reminders.values()
    assert r["state"] == "DROPPED" and [m.kind for m in w.mailer.sent] == ["created"]


async def test_a_clinic_sets_its_own_quiet_hours() -> None:
    w = World()
    n = notice(reminder_offsets=(60,))  # due 09:00
    await w.notifier.notify(n)
    assert await w.quiet.quiet_hours(n.clinic_id) == (QuietHours(), True)
    await w.quiet.set_quiet_hours(n.clinic_id, QuietHours.parse("08:30", "09:30"))
    assert await w.quiet.quiet_hours(n.clinic_id) == (QuietHours.parse("08:30", "09:30"), False)
    w.now = VISIT.replace(hour=9).astimezone(UTC)
    assert await w.reminders.send_due_reminders() == 0
    w.now = VISIT.replace(hour=9, minute=30).astimezone(UTC)
    assert await w.reminders.send_due_reminders() == 1


# -- the calendar feed ---------------------------------------------------------------------------------


async def test_the_feed_lists_upcoming_bookings_by_token_and_a_revoked_token_is_not_found() -> None:
    w = World()
    owner = uuid.uuid4()
    kept, cancelled = notice(owner), notice(owner)
    past = notice(
        owner, start=w.now - timedelta(days=2), end=w.now - timedelta(days=2) + timedelta(minutes=30)
    )
    for n in (kept, cancelled, past):
        await w.notifier.notify(n)
    await w.notifier.notify(replace(cancelled, event_id=uuid.uuid4(), kind="cancelled", version=2))
    moved_start = kept.start + timedelta(days=1)
    await w.notifier.notify(
        replace(
            kept,
            event_id=uuid.uuid4(),
            kind="rescheduled",
            version=2,
            start=moved_start,
            end=moved_start + timedelta(minutes=30),
        )
    )
    await w.notifier.notify(notice())  # another owner's
    token = await w.calendar.create_token(owner)
    assert token.feed_path == f"/v1/me/calendar.ics?token={token.token}" and len(token.token) >= 43
    assert w.store.feed_tokens[owner][0] == token_hash(token.token) != token.token.encode()  # only the hash
    (event,) = icalendar.Calendar.from_ical(await w.calendar.feed(token.token)).walk("VEVENT")
    assert str(event["uid"]) == f"{kept.booking_id}@petpro.dev" and int(event["sequence"]) == 2
    assert event.decoded("dtstart") == moved_start
    with pytest.raises(AlreadyExists):
        await w.calendar.create_token(owner)
    rotated = await w.calendar.rotate_token(owner)
    with pytest.raises(NotFound):
        await w.calendar.feed(token.token)  # the old one stopped working
    assert await w.calendar.feed(rotated.token)
    assert await w.calendar.revoke_token(owner) is True
    assert await w.calendar.revoke_token(owner) is False
    with pytest.raises(NotFound):
        await w.calendar.feed(rotated.token)


async def test_a_push_outage_does_not_hold_back_the_email_nor_a_reminder() -> None:
    w = World(RecordingPush(failures=100))
    n = notice(reminder_offsets=(60,))
    await w.owners.register_device(n.owner_user_id, "ANDROID", "down-provider-hhhhhhhhhh")
    with pytest.raises(ChannelFailed, match="push"):
        await w.notifier.notify(n)
    assert [m.kind for m in w.mailer.sent] == ["created"]  # the email went before the event failed
    w.now = VISIT.replace(hour=9).astimezone(UTC)  # the reminder is due, the provider still down
    assert await w.reminders.send_due_reminders() == 1
    assert [m.kind for m in w.mailer.sent] == ["created", "reminder"]
