"""Notification use cases with fakes: one event → feed row, push, email, each once in effect and
retried; the clinic feed's replay → live switch-over; the event decoder (events adapter)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from notif_worker.adapters.codecs import (
    clinic_event_cursor,
    cursor_field,
    decode_booking_created,
    decode_event,
    encode_clinic_event,
)
from notif_worker.adapters.push import InboxPush
from notif_worker.domain import BookingNotice, ChannelFailed, FeedRow, MessageRefused, PoisonEvent
from notif_worker.handlers import (
    ClinicFeed,
    InboxHandlers,
    NotifyHandlers,
    PreferenceHandlers,
    ReminderHandlers,
    Retry,
)
from petpro.convert import ts
from petpro_api.booking.v1 import booking_pb2, events_pb2
from petpro_api.common.v1 import money_pb2
from petpro_api.notification.v1 import clinic_feed_pb2
from tests.unit.fakes.notif import LiveHub, NotifStore, RecordingMailer, notif_uow

NOW = datetime(2030, 1, 7, 8, tzinfo=UTC)
CLINIC = uuid.uuid4()
NO_WAIT = Retry(attempts=3, base_delay=0, max_delay=0)


def notice(event_id: uuid.UUID | None = None, clinic: uuid.UUID = CLINIC) -> BookingNotice:
    return BookingNotice(
        event_id=event_id or uuid.uuid4(),
        occurred_at=NOW,
        booking_id=str(uuid.uuid4()),
        clinic_id=clinic,
        clinic_name="Vet Mitte",
        clinic_time_zone="Europe/Berlin",
        service_name="Check-up",
        start=NOW,
        end=NOW + timedelta(minutes=30),
        pet_name="Rex",
        pet_species="SPECIES_DOG",
        owner_user_id=uuid.uuid4(),
        owner_email="o@example.test",
        owner_name="Olga",
        amount_minor=4500,
        currency="EUR",
    )


class Handlers:
    """The notification use cases on one fake store, sharing one clock (``now``; None: the real time)."""

    def __init__(self, store: NotifStore, mailer: RecordingMailer, hub: LiveHub) -> None:
        self.now: datetime | None = None
        self.uow = notif_uow(store)
        self.notifier = NotifyHandlers(
            self.uow, mailer, InboxPush(), encode_clinic_event, hub.publish, NO_WAIT, clock=self.clock
        )
        self.reminders = ReminderHandlers(self.uow, mailer, InboxPush(), clock=self.clock)
        self.owners = InboxHandlers(self.uow)
        self.prefs = PreferenceHandlers(self.uow)
        self.notify = self.notifier.notify
        self.release_stale_parked = self.notifier.release_stale_parked
        self.send_due_reminders = self.reminders.send_due_reminders
        self.inbox = self.owners.inbox
        self.register_device = self.owners.register_device
        self.preferences = self.prefs.preferences
        self.update_preferences = self.prefs.update_preferences

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)


@pytest.fixture
def env():
    store, mailer, hub = NotifStore(), RecordingMailer(), LiveHub()
    return Handlers(store, mailer, hub), store, mailer, hub


# -- notify -------------------------------------------------------------------------------------------
async def test_one_event_reaches_feed_push_and_email(env):
    h, store, mailer, hub = env
    q, _ = await hub.subscribe(CLINIC)
    n = notice()
    await h.notify(n)
    [(event_id, row)] = store.feed[CLINIC]
    assert event_id == n.event_id and row.cursor == 1
    event = clinic_feed_pb2.ClinicEvent.FromString(row.payload)
    assert (event.cursor, event.booking.booking_id, event.booking.pet_name) == (1, n.booking_id, "Rex")
    assert q.get_nowait() == row.payload  # published after commit
    [push] = store.inbox
    assert (push.user_id, push.title) == (n.owner_user_id, "Booking confirmed: Check-up")
    assert mailer.sent == [n]
    assert {k[1]: v["status"] for k, v in store.deliveries.items()} == {
        "push": "delivered",
        "email": "delivered",
    }


async def test_a_redelivered_event_sends_nothing_twice(env):
    h, store, mailer, hub = env
    n = notice()
    await h.notify(n)
    q, _ = await hub.subscribe(CLINIC)
    await h.notify(n)
    assert len(store.feed[CLINIC]) == 1 and len(store.inbox) == 1 and mailer.sent == [n]
    assert q.empty()


async def test_a_failing_mail_is_retried_and_recorded(env):
    h, store, mailer, _ = env
    mailer.failures = 1
    n = notice()
    await h.notify(n)
    assert mailer.sent == [n]
    assert store.deliveries[(n.event_id, "email", n.owner_email)]["attempts"] == 2


async def test_a_mail_failing_every_attempt_is_a_channel_failure(env):
    h, store, mailer, _ = env
    mailer.failures = 99
    n = notice()
    with pytest.raises(ChannelFailed) as exc:
        await h.notify(n)
    assert exc.value.channel == "email"
    d = store.deliveries[(n.event_id, "email", n.owner_email)]
    assert (d["status"], d["attempts"], d["last_error"]) == ("failed", 3, "smtp down")
    assert len(store.feed[CLINIC]) == 1  # the other channels are done and stay done
    mailer.failures = 0
    await h.notify(n)  # the redelivery sends only the email
    assert mailer.sent == [n] and len(store.inbox) == 1


async def test_inbox_pages_newest_first_and_devices_upsert(env):
    h, _, _, _ = env
    owner = uuid.uuid4()
    for i in range(3):
        n = notice()
        object.__setattr__(n, "owner_user_id", owner)
        object.__setattr__(n, "occurred_at", NOW + timedelta(minutes=i))
        await h.notify(n)
    first, token = await h.inbox(owner, 2, "")
    rest, last = await h.inbox(owner, 2, token)
    assert len(first) == 2 and len(rest) == 1 and last == ""
    assert len({r.id for r in first + rest}) == 3
    a = await h.register_device(owner, "IOS", "tok-1")
    b = await h.register_device(owner, "ANDROID", "tok-1")
    assert a.id == b.id and b.platform == "ANDROID"


# -- clinic feed: replay, then live -------------------------------------------------------------------
def feed_env(rows: int = 0, resync: float = 3600.0):
    store, hub = NotifStore(), LiveHub()
    repo_uow = notif_uow(store)
    for i in range(1, rows + 1):
        store.feed.setdefault(CLINIC, []).append((uuid.uuid4(), FeedRow(i, str(i).encode())))
    feed = ClinicFeed(repo_uow, hub.subscribe, lambda b: int(b.decode()), resync_seconds=resync)
    return feed, store, hub


def append(store: NotifStore, cursor: int) -> FeedRow:
    row = FeedRow(cursor, str(cursor).encode())
    store.feed.setdefault(CLINIC, []).append((uuid.uuid4(), row))
    return row


async def take(stream, n: int) -> list[int]:
    return [(await anext(stream)).cursor for _ in range(n)]


async def test_replays_after_the_cursor_then_streams_live_without_duplicates():
    feed, store, hub = feed_env(rows=3)
    stream = feed.follow(CLINIC, 1)
    assert await take(stream, 2) == [2, 3]
    append(store, 4)
    hub.send(CLINIC, b"3")  # an old message (published before our replay read it): dropped
    hub.send(CLINIC, b"4")
    assert await take(stream, 1) == [4]
    await stream.aclose()
    assert hub.subscribers(CLINIC) == 0


async def test_subscribes_before_replaying_so_nothing_falls_in_between():
    feed, _store, hub = feed_env(rows=1)
    stream = feed.follow(CLINIC, 0)
    assert await take(stream, 1) == [1]
    assert hub.subscribers(CLINIC) == 1  # already listening while the replay ran
    await stream.aclose()


async def test_a_missed_live_message_is_filled_from_the_database():
    feed, store, hub = feed_env(rows=1)
    stream = feed.follow(CLINIC, 0)
    assert await take(stream, 1) == [1]
    append(store, 2)
    append(store, 3)
    hub.send(CLINIC, b"3")  # 2's message was lost
    assert await take(stream, 2) == [2, 3]
    await stream.aclose()


async def test_an_idle_stream_resyncs_from_the_database():
    feed, store, hub = feed_env(rows=0, resync=0.01)
    stream = feed.follow(CLINIC, 0)
    nxt = asyncio.ensure_future(anext(stream))
    await hub.subscribed.wait()
    append(store, 1)  # committed, but its live message never arrives
    assert (await nxt).cursor == 1
    await stream.aclose()


async def test_close_ends_every_stream_and_unsubscribes():
    feed, _, hub = feed_env(rows=0)
    stream = feed.follow(CLINIC, 0)
    nxt = asyncio.ensure_future(anext(stream))
    await hub.subscribed.wait()
    await feed.close()
    with pytest.raises(StopAsyncIteration):
        await nxt
    assert hub.subscribers(CLINIC) == 0


# -- the events adapter -------------------------------------------------------------------------------
def booking_created(**over: object) -> bytes:
    fields: dict[str, object] = dict(
        event_id=str(uuid.uuid4()),
        occurred_at=ts(NOW),
        booking_id=str(uuid.uuid4()),
        clinic_id=str(CLINIC),
        clinic_name="Vet Mitte",
        clinic_time_zone="Europe/Berlin",
        service=events_pb2.BookingCreated.Service(service_id=str(uuid.uuid4()), name="Check-up"),
        slot_start_time=ts(NOW),
        slot_end_time=ts(NOW + timedelta(minutes=30)),
        pet=events_pb2.BookingCreated.Pet(
            pet_id=str(uuid.uuid4()), name="Rex", species=booking_pb2.SPECIES_DOG
        ),
        owner=events_pb2.BookingCreated.Owner(user_id=str(uuid.uuid4()), email="o@example.test", name="Olga"),
        amount=money_pb2.Money(amount_minor=4500, currency="EUR"),
    )
    fields.update(over)
    return events_pb2.BookingCreated(**fields).SerializeToString()


def test_decoder_maps_the_event_to_a_notice():
    n = decode_booking_created(booking_created())
    assert (n.clinic_id, n.pet_species, n.amount_minor, n.local_start.hour) == (
        CLINIC,
        "SPECIES_DOG",
        4500,
        9,
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff not protobuf",
        booking_created(event_id="not-a-uuid"),
        booking_created(clinic_time_zone="Mars/Olympus"),
        booking_created(owner=events_pb2.BookingCreated.Owner(user_id=str(uuid.uuid4()), email="")),
    ],
)
def test_undecodable_or_incomplete_events_are_poison(payload: bytes):
    with pytest.raises(PoisonEvent):
        decode_booking_created(payload)


def test_clinic_event_round_trip_keeps_the_cursor():
    assert clinic_event_cursor(encode_clinic_event(notice(), 42)) == 42


def test_the_stored_feed_row_is_the_cursor_field_then_the_event_encoded_without_it():
    n = notice()
    for cursor in (1, 127, 128, 300, 16_384, 2**35 + 5, 2**62):
        assert cursor_field(cursor) + encode_clinic_event(n, 0) == encode_clinic_event(n, cursor)


async def test_a_refused_mail_is_not_retried(env):
    h, store, mailer, _ = env

    async def refuse(notice: BookingNotice) -> None:
        raise MessageRefused("550 no such user")

    mailer.send = refuse  # type: ignore[method-assign]
    n = notice()
    with pytest.raises(ChannelFailed):
        await h.notify(n)
    d = store.deliveries[(n.event_id, "email", n.owner_email)]
    assert (d["status"], d["attempts"]) == ("failed", 1)  # one try, not NO_WAIT's three


# -- lifecycle events: in the booking's order, though they come from several topics ----------------
def change_payload(kind: str, n: BookingNotice, version: int, refund: int = 0) -> tuple[str, bytes]:
    ctx = events_pb2.BookingChangeContext(
        event_id=str(uuid.uuid4()),
        occurred_at=ts(n.occurred_at),
        booking_id=n.booking_id,
        clinic_id=str(n.clinic_id),
        clinic_name=n.clinic_name,
        clinic_time_zone=n.clinic_time_zone,
        service=events_pb2.BookingCreated.Service(name=n.service_name),
        pet=events_pb2.BookingCreated.Pet(name=n.pet_name, species=booking_pb2.SPECIES_DOG),
        owner=events_pb2.BookingCreated.Owner(
            user_id=str(n.owner_user_id), email=n.owner_email, name=n.owner_name
        ),
        slot_start_time=ts(n.start + timedelta(days=1)),
        slot_end_time=ts(n.end + timedelta(days=1)),
        version=version,
        actor=booking_pb2.BOOKING_ACTOR_OWNER,
    )
    if kind == "cancelled":
        msg = events_pb2.BookingCancelled(
            context=ctx, refund_amount=money_pb2.Money(amount_minor=refund, currency="EUR")
        )
        return "booking.cancelled", msg.SerializeToString()
    return "booking.rescheduled", events_pb2.BookingRescheduled(
        context=ctx, previous_start_time=ts(n.start)
    ).SerializeToString()


async def test_a_change_arriving_before_its_predecessor_waits_for_it(env):
    h, store, mailer, _hub = env
    created = notice()
    await h.notify(created, "booking.created", b"created", decode_event)
    cancel_topic, cancel = change_payload("cancelled", created, 3, refund=4500)
    move_topic, move = change_payload("rescheduled", created, 2)

    await h.notify(decode_event(cancel_topic, cancel), cancel_topic, cancel, decode_event)  # version 3 first
    assert [m.kind for m in mailer.sent] == ["created"]  # parked: nothing told yet
    assert len(store.parked) == 1

    await h.notify(decode_event(move_topic, move), move_topic, move, decode_event)  # version 2 releases 3
    assert [m.kind for m in mailer.sent] == ["created", "rescheduled", "cancelled"]
    feed = [clinic_feed_pb2.ClinicEvent.FromString(row.payload) for _, row in store.feed[CLINIC]]
    assert [(e.type, e.booking.version) for e in feed] == [
        (clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_CREATED, 1),
        (clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_RESCHEDULED, 2),
        (clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_CANCELLED, 3),
    ]
    assert feed[2].booking.refund_amount.amount_minor == 4500
    assert store.parked == {} and store.progress[created.booking_id] == 3

    await h.notify(decode_event(move_topic, move), move_topic, move, decode_event)  # a redelivery: no-op
    assert len(mailer.sent) == 3


# -- reminders ----------------------------------------------------------------------------------------
async def test_reminders_made_at_confirmation_moved_on_reschedule_dropped_on_cancel(env):
    h, store, mailer, _ = env
    h.now = NOW - timedelta(days=5)
    created = notice()  # starts at NOW
    await h.notify(created, "booking.created", b"created", decode_event)
    assert sorted(r["due"] for r in store.reminders.values()) == [
        NOW - timedelta(hours=48),
        NOW - timedelta(hours=2),
    ]
    assert await h.send_due_reminders() == 0  # none due yet

    h.now = NOW - timedelta(hours=47)
    assert await h.send_due_reminders() == 1 and await h.send_due_reminders() == 0  # the 48 h one, once
    assert [m.kind for m in mailer.sent] == ["created", "reminder"]

    move_topic, move = change_payload("rescheduled", created, 2)  # +1 day: both reminders due again later
    await h.notify(decode_event(move_topic, move), move_topic, move, decode_event)
    assert sorted(r["due"] for r in store.reminders.values()) == [
        NOW - timedelta(hours=24),
        NOW + timedelta(hours=22),
    ]
    cancel_topic, cancel = change_payload("cancelled", created, 3)
    await h.notify(decode_event(cancel_topic, cancel), cancel_topic, cancel, decode_event)
    h.now = NOW + timedelta(hours=23)
    assert await h.send_due_reminders() == 0  # nothing for a cancelled booking
    assert [m.kind for m in mailer.sent] == ["created", "reminder", "rescheduled", "cancelled"]


async def test_no_reminder_after_the_start(env):
    h, _store, _mailer, _ = env
    h.now = NOW - timedelta(days=5)
    await h.notify(notice(), "booking.created", b"created", decode_event)
    h.now = NOW + timedelta(minutes=1)  # both overdue, but the visit has started
    assert await h.send_due_reminders() == 0


async def test_preferences_switch_off_changes_and_reminders_but_never_transactional_messages(env):
    h, store, mailer, _ = env
    created = notice()
    await h.update_preferences(
        created.owner_user_id, {"changes_email": False, "reminders_push": False, "reminders_email": False}
    )
    h.now = NOW - timedelta(days=5)
    await h.notify(created, "booking.created", b"created", decode_event)
    move_topic, move = change_payload("rescheduled", created, 2)
    await h.notify(decode_event(move_topic, move), move_topic, move, decode_event)
    h.now = NOW + timedelta(hours=1)  # the 48 h reminder of the new start is due
    assert await h.send_due_reminders() == 1
    cancel_topic, cancel = change_payload("cancelled", created, 3)
    await h.notify(decode_event(cancel_topic, cancel), cancel_topic, cancel, decode_event)
    assert [m.kind for m in mailer.sent] == ["created", "cancelled"]  # no move mail, no reminder mail
    assert [r.data["type"] for r in store.inbox] == [
        "booking.created",
        "booking.rescheduled",
        "booking.cancelled",
    ]
    assert (await h.preferences(created.owner_user_id)).changes_push is True


async def test_an_event_whose_predecessor_never_comes_is_applied_after_the_wait(env):
    h, store, mailer, _ = env
    created = notice()
    await h.notify(created, "booking.created", b"created", decode_event)
    cancel_topic, cancel = change_payload("cancelled", created, 3)  # version 2 was lost
    await h.notify(decode_event(cancel_topic, cancel), cancel_topic, cancel, decode_event)
    assert [m.kind for m in mailer.sent] == ["created"]
    h.now = datetime.now(UTC) + timedelta(minutes=4)
    assert await h.release_stale_parked(decode_event, timedelta(minutes=5)) == 0  # it may still come
    h.now = datetime.now(UTC) + timedelta(minutes=6)
    assert await h.release_stale_parked(decode_event, timedelta(minutes=5)) == 1
    assert [m.kind for m in mailer.sent] == ["created", "cancelled"] and store.parked == {}
    assert store.progress[created.booking_id] == 3
