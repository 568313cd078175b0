"""The NotifRepository port's behaviour, once: run against the in-memory fake (tests/unit) and the
PostgreSQL adapter (tests/integration).  Subclasses provide two fixtures: ``uow`` (a transaction per
block) and ``read`` (every statement its own transaction, as the worker records events).  Every test
makes its own ids (bookings, clinics, owners) and its own time, so it shares a database with others."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from notif_worker.adapters.codecs import cursor_field
from notif_worker.domain import (
    BookingNotice,
    ClinicSms,
    InboxRow,
    Preferences,
    QuietHours,
    ReminderChange,
    SmsPhone,
)
from notif_worker.ports import UnitOfWork


def moment() -> datetime:
    """A time of this test's own, far from any other test's (reminders are claimed across bookings)."""
    return datetime(2100, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(0, 24 * 365 * 500))


def notice(
    at: datetime,
    *,
    booking: str | None = None,
    clinic: uuid.UUID | None = None,
    owner: uuid.UUID | None = None,
    kind: str = "created",
    version: int = 1,
    start: datetime | None = None,
) -> BookingNotice:
    start = start or at + timedelta(days=5)
    return BookingNotice(
        event_id=uuid.uuid4(),
        occurred_at=at,
        booking_id=booking or str(uuid.uuid4()),
        clinic_id=clinic or uuid.uuid4(),
        clinic_name="Vet Mitte",
        clinic_time_zone="Europe/Berlin",
        service_name="Check-up",
        start=start,
        end=start + timedelta(minutes=30),
        pet_name="Rex",
        pet_species="SPECIES_DOG",
        owner_user_id=owner or uuid.uuid4(),
        owner_email=f"{uuid.uuid4().hex[:8]}@example.test",
        owner_name="Olga",
        amount_minor=4500,
        currency="EUR",
        kind=kind,
        version=version,
    )


def inbox_row(n: BookingNotice, created_at: datetime | None = None) -> InboxRow:
    return InboxRow(
        uuid.uuid4(),
        n.owner_user_id,
        n.event_id,
        f"about {n.kind}",
        "body",
        {"booking_id": n.booking_id},
        created_at or n.occurred_at,
    )


TAIL = b"\x12\x03abc"  # what the encoder writes after the cursor field (any bytes do here)


class NotifRepositoryContract:
    """``uow`` and ``read`` are fixtures of the subclass."""

    async def record(
        self,
        read: UnitOfWork,
        n: BookingNotice,
        *,
        push: bool = True,
        email: bool = True,
        reminders: ReminderChange = None,
        now: datetime | None = None,
        park: tuple[str, bytes] | None = None,
    ):  # type: ignore[no-untyped-def]
        async with read() as repo:
            return await repo.record(
                n,
                push=inbox_row(n) if push else None,
                email=email,
                feed_type=f"booking.{n.kind}",
                feed_tail=TAIL,
                reminders=reminders,
                park=park or (f"booking.{n.kind}", n.event_id.bytes),
                now=now or n.occurred_at,
            )

    # -- one event: progress, deliveries, feed ------------------------------------------------------
    async def test_the_next_version_is_applied_to_every_channel(self, read: UnitOfWork) -> None:
        at = moment()
        n = notice(at)
        r = await self.record(read, n)
        assert (r.outcome, r.email_due, r.parked) == ("applied", True, None)
        assert r.feed is not None and r.feed.cursor == 1 and r.feed.payload == cursor_field(1) + TAIL
        async with read() as repo:
            assert await repo.clinic_events_after(n.clinic_id, 0, 10) == [r.feed]
            [row] = await repo.list_inbox(n.owner_user_id, None, 10)
        assert (row.event_id, row.title, row.data) == (
            n.event_id,
            "about created",
            {"booking_id": n.booking_id},
        )

    async def test_a_copy_delivers_nothing_twice(self, read: UnitOfWork) -> None:
        n = notice(moment())
        await self.record(read, n)
        async with read() as repo:
            await repo.finish_delivery(n.event_id, "email", n.owner_email, ok=True)
        again = await self.record(read, n)
        assert (again.outcome, again.email_due, again.feed, again.parked) == ("applied", False, None, None)
        async with read() as repo:
            assert len(await repo.list_inbox(n.owner_user_id, None, 10)) == 1
            assert len(await repo.clinic_events_after(n.clinic_id, 0, 10)) == 1

    async def test_a_failed_email_is_due_again_and_a_pending_one_too(self, read: UnitOfWork) -> None:
        n = notice(moment())
        assert (await self.record(read, n)).email_due
        assert (await self.record(read, n)).email_due  # claimed, never finished (a crash): due again
        async with read() as repo:
            await repo.finish_delivery(n.event_id, "email", n.owner_email, ok=False, error="451 later")
        assert (await self.record(read, n)).email_due
        async with read() as repo:
            await repo.finish_delivery(n.event_id, "email", n.owner_email, ok=True)
        assert not (await self.record(read, n)).email_due

    async def test_no_push_and_no_email_when_not_wanted(self, read: UnitOfWork) -> None:
        n = notice(moment())
        r = await self.record(read, n, push=False, email=False)
        assert (r.outcome, r.email_due) == ("applied", False) and r.feed is not None
        async with read() as repo:
            assert await repo.list_inbox(n.owner_user_id, None, 10) == []

    async def test_finishing_an_unclaimed_delivery_changes_nothing(self, read: UnitOfWork) -> None:
        n = notice(moment())
        async with read() as repo:
            await repo.finish_delivery(n.event_id, "email", n.owner_email, ok=True)
        assert (await self.record(read, n)).email_due  # no delivery row was made by the finish

    async def test_a_delivery_claimed_outside_an_event_is_claimed_once_until_it_fails(
        self, read: UnitOfWork
    ) -> None:
        lock, to = uuid.uuid4(), "owner@example.test"
        async with read() as repo:
            assert await repo.claim_delivery(lock, "payment-link", to)
            assert not await repo.claim_delivery(lock, "payment-link", to)  # being delivered
            assert await repo.claim_delivery(lock, "payment-link", "other@example.test")
            await repo.finish_delivery(lock, "payment-link", to, ok=False, error="451 later")
            assert await repo.claim_delivery(lock, "payment-link", to)  # failed: claimable again
            await repo.finish_delivery(lock, "payment-link", to, ok=True)
            assert not await repo.claim_delivery(lock, "payment-link", to)  # delivered: never again

    # -- the booking's order --------------------------------------------------------------------------
    async def test_a_version_after_a_missing_one_is_parked_then_handed_over(self, read: UnitOfWork) -> None:
        at = moment()
        created = notice(at)
        clinic, booking, owner = created.clinic_id, created.booking_id, created.owner_user_id
        await self.record(read, created)
        third = notice(at, booking=booking, clinic=clinic, owner=owner, kind="cancelled", version=3)
        parked = await self.record(read, third, park=("booking.cancelled", b"third"))
        assert (parked.outcome, parked.email_due, parked.feed, parked.parked) == ("parked", False, None, None)
        async with read() as repo:
            assert len(await repo.clinic_events_after(clinic, 0, 10)) == 1  # nothing of it written
            assert len(await repo.list_inbox(owner, None, 10)) == 1
        second = notice(at, booking=booking, clinic=clinic, owner=owner, kind="rescheduled", version=2)
        applied = await self.record(read, second)
        assert (applied.outcome, applied.parked) == ("applied", ("booking.cancelled", b"third"))
        done = await self.record(read, third)
        assert done.outcome == "applied" and done.feed is not None and done.feed.cursor == 3

    async def test_a_first_event_that_is_not_version_one_waits(self, read: UnitOfWork) -> None:
        at = moment()
        second = notice(at, kind="rescheduled", version=2)
        assert (await self.record(read, second)).outcome == "parked"
        first = notice(at, booking=second.booking_id, clinic=second.clinic_id)
        r = await self.record(read, first)
        assert r.outcome == "applied" and r.parked is not None

    async def test_a_copy_of_an_older_version_only_completes_its_deliveries(self, read: UnitOfWork) -> None:
        at = moment()
        created = notice(at)
        await self.record(read, created, push=False)
        moved = notice(
            at, booking=created.booking_id, clinic=created.clinic_id, kind="rescheduled", version=2
        )
        await self.record(read, moved)
        copy = await self.record(read, created, push=True)  # push now wanted: it was missing
        assert (copy.outcome, copy.email_due, copy.feed, copy.parked) == ("copy", True, None, None)
        async with read() as repo:
            assert [r.event_id for r in await repo.list_inbox(created.owner_user_id, None, 10)] == [
                created.event_id
            ]

    async def test_parking_twice_keeps_the_first(self, read: UnitOfWork) -> None:
        at = moment()
        third = notice(at, kind="cancelled", version=3)
        await self.record(read, third, park=("booking.cancelled", b"first"))
        await self.record(read, third, park=("booking.cancelled", b"second"))
        async with read() as repo:
            assert await repo.release_parked(third.booking_id, 3) == ("booking.cancelled", b"first")
            assert await repo.release_parked(third.booking_id, 3) is None  # taken

    async def test_parked_events_are_due_after_the_wait_and_released_in_order(self, read: UnitOfWork) -> None:
        at = moment()
        created = notice(at)
        await self.record(read, created)
        third = notice(at, booking=created.booking_id, clinic=created.clinic_id, kind="cancelled", version=3)
        fourth = notice(at, booking=created.booking_id, clinic=created.clinic_id, kind="completed", version=4)
        await self.record(read, third, now=at, park=("booking.cancelled", b"3"))
        await self.record(read, fourth, now=at, park=("booking.completed", b"4"))
        async with read() as repo:
            assert (created.booking_id, 3) not in await repo.parked_due(at, limit=10_000)  # not yet
            due = await repo.parked_due(at + timedelta(seconds=1), limit=10_000)
            assert (created.booking_id, 3) in due and (created.booking_id, 4) not in due  # lowest first
            assert await repo.release_parked(created.booking_id, 3) == ("booking.cancelled", b"3")
        r = await self.record(read, third)  # version 2 presumed lost: the progress moved to 2
        assert (r.outcome, r.parked) == ("applied", ("booking.completed", b"4"))
        assert (await self.record(read, fourth)).outcome == "applied"

    async def test_releasing_what_is_not_parked_is_none_and_changes_nothing(self, read: UnitOfWork) -> None:
        at = moment()
        created = notice(at)
        await self.record(read, created)
        async with read() as repo:
            assert await repo.release_parked(str(uuid.uuid4()), 2) is None
            assert await repo.release_parked(created.booking_id, 3) is None
        third = notice(at, booking=created.booking_id, clinic=created.clinic_id, kind="cancelled", version=3)
        assert (await self.record(read, third)).outcome == "parked"  # the booking's order is untouched

    # -- the clinic feed ------------------------------------------------------------------------------
    async def test_the_feed_is_per_clinic_in_cursor_order(self, read: UnitOfWork) -> None:
        at = moment()
        clinic, other = uuid.uuid4(), uuid.uuid4()
        for i in range(5):
            await self.record(read, notice(at + timedelta(minutes=i), clinic=clinic))
        await self.record(read, notice(at, clinic=other))
        async with read() as repo:
            rows = await repo.clinic_events_after(clinic, 0, 100)
            assert [r.cursor for r in rows] == [1, 2, 3, 4, 5]
            assert all(r.payload == cursor_field(r.cursor) + TAIL for r in rows)
            assert [r.cursor for r in await repo.clinic_events_after(clinic, 2, 2)] == [3, 4]
            assert await repo.clinic_events_after(clinic, 5, 100) == []
            assert [r.cursor for r in await repo.clinic_events_after(other, 0, 100)] == [1]

    async def test_big_cursors_are_encoded_as_the_encoder_would(self) -> None:
        assert cursor_field(300) == b"\x08\xac\x02"  # the SQL's varint is held to this (feed rows above)

    # -- inbox and devices ----------------------------------------------------------------------------
    async def test_the_inbox_pages_newest_first_and_keeps_one_row_per_event(self, uow: UnitOfWork) -> None:
        at = moment()
        owner = uuid.uuid4()
        rows = [inbox_row(notice(at, owner=owner), at + timedelta(minutes=i)) for i in range(3)]
        async with uow() as repo:
            for row in rows:
                assert await repo.add_inbox(row)
            dup = InboxRow(uuid.uuid4(), owner, rows[1].event_id, "again", "b", {}, at)
            assert not await repo.add_inbox(dup)  # one row per (owner, event)
        async with uow() as repo:
            first = await repo.list_inbox(owner, None, 2)
            assert [r.id for r in first] == [rows[2].id, rows[1].id]
            rest = await repo.list_inbox(owner, (first[-1].created_at.isoformat(), str(first[-1].id)), 2)
            assert [r.id for r in rest] == [rows[0].id]
            assert await repo.list_inbox(uuid.uuid4(), None, 2) == []

    async def test_an_erased_user_has_nothing_left_and_is_erased_once(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        import hashlib

        at = moment()
        owner, other = uuid.uuid4(), uuid.uuid4()
        n, kept = notice(at, owner=owner), notice(at, owner=other)
        await self.record(read, n)
        await self.record(read, kept)
        async with uow() as repo:
            await repo.upsert_device(owner, "IOS", f"tok-{owner}")
            await repo.update_preferences(owner, {"reminders_email": False})
            await repo.save_sms_phone(SmsPhone(owner, "+4915112345678", "VERIFIED"))
            data = await repo.user_export(owner, n.owner_email)
        assert [r["body"] for r in data["inbox"]] == ["body"]
        assert {(d["channel"], d["recipient"]) for d in data["deliveries"]} >= {("email", n.owner_email)}
        assert [d["platform"] for d in data["devices"]] == ["IOS"]
        digest = hashlib.sha256(n.owner_email.encode()).hexdigest()
        event = uuid.uuid4()
        async with uow() as repo:
            assert await repo.erased_digests(owner) is None
            assert not await repo.record_erased(owner, at)  # never marked: nothing to record
            await repo.mark_erasing(owner, event, [digest])
        async with uow() as repo:
            assert await repo.erased_digests(owner) == [digest]  # gone from the mark on
            await repo.mark_erasing(owner, uuid.uuid4(), ["other"])  # a second mark changes nothing
            assert await repo.record_erased(owner, at)
            await repo.erase_user(owner, [digest])
        async with uow() as repo:
            assert not await repo.record_erased(owner, at)  # once per account
            assert await repo.erased_digests(owner) == [digest]
            data = await repo.user_export(owner, n.owner_email)
            assert (data["inbox"], data["devices"], data["deliveries"]) == ([], [], [])
            assert await repo.list_inbox(owner, None, 10) == [] and await repo.devices_of(owner) == []
            assert await repo.preferences(owner) == Preferences()
            assert await repo.sms_phone(owner) is None  # the number for texts too
            assert len(await repo.list_inbox(other, None, 10)) == 1  # another owner's stays
            assert (await repo.user_export(other, kept.owner_email))["deliveries"]

    async def test_a_device_is_registered_once_per_token(self, uow: UnitOfWork) -> None:
        user = uuid.uuid4()
        async with uow() as repo:
            a = await repo.upsert_device(user, "IOS", "tok-a")
            b = await repo.upsert_device(user, "ANDROID", "tok-a")
            c = await repo.upsert_device(user, "IOS", "tok-c")
        assert a.id == b.id and b.platform == "ANDROID" and c.id != a.id and c.user_id == user

    # -- reminders ------------------------------------------------------------------------------------
    async def test_reminders_are_scheduled_claimed_once_and_never_after_the_start(
        self, read: UnitOfWork, uow: UnitOfWork
    ) -> None:
        at = moment()
        start = at + timedelta(days=5)
        n = notice(at, start=start)
        await self.record(read, n, reminders=("schedule", (2880, 120)), now=at)
        async with uow() as repo:
            assert await repo.claim_due_reminder(start - timedelta(hours=49)) is None  # none due yet
        async with uow() as repo:
            r = await repo.claim_due_reminder(start - timedelta(hours=1))
            assert r is not None and r.offset_minutes == 2880  # the most overdue first
            assert r.booking_id == n.booking_id and r.due_at == start - timedelta(hours=48)
            assert (r.notice.kind, r.notice.owner_email, r.notice.start) == ("reminder", n.owner_email, start)
            await repo.mark_reminder_sent(r.id, start - timedelta(hours=1))
        async with uow() as repo:
            r2 = await repo.claim_due_reminder(start - timedelta(hours=1))
            assert r2 is not None and r2.offset_minutes == 120
        async with uow() as repo:  # not marked sent (rolled back, say): due again, but not after the start
            assert await repo.claim_due_reminder(start + timedelta(minutes=1)) is None

    async def test_reminders_already_past_when_scheduled_are_never_sent(
        self, read: UnitOfWork, uow: UnitOfWork
    ) -> None:
        at = moment()
        n = notice(at, start=at + timedelta(hours=1))
        await self.record(read, n, reminders=("schedule", (2880, 120)), now=at)
        async with uow() as repo:
            assert await repo.claim_due_reminder(at + timedelta(minutes=30)) is None

    async def test_reminders_follow_a_reschedule_and_go_with_a_cancellation(
        self, read: UnitOfWork, uow: UnitOfWork
    ) -> None:
        at = moment()
        start = at + timedelta(days=5)
        n = notice(at, start=start)
        await self.record(read, n, reminders=("schedule", (120,)), now=at)
        later = start + timedelta(days=1)
        moved = notice(
            at, booking=n.booking_id, clinic=n.clinic_id, kind="rescheduled", version=2, start=later
        )
        await self.record(read, moved, reminders=("move", ()), now=at)
        async with uow() as repo:
            assert await repo.claim_due_reminder(start - timedelta(hours=1)) is None  # not at the old time
        async with uow() as repo:
            r = await repo.claim_due_reminder(later - timedelta(hours=1))
            assert r is not None and r.notice.start == later
        cancel = notice(at, booking=n.booking_id, clinic=n.clinic_id, kind="cancelled", version=3)
        await self.record(read, cancel, reminders=("drop", ()), now=at)
        async with uow() as repo:
            assert await repo.claim_due_reminder(later - timedelta(hours=1)) is None

    async def test_a_reminder_names_the_provider_a_move_assigned_and_a_sent_one_stays_sent(
        self, read: UnitOfWork, uow: UnitOfWork
    ) -> None:
        at = moment()
        start = at + timedelta(days=5)
        room1, room2 = ("r-1", "Dental 1", "dental room"), ("r-2", "Dental 2", "dental room")
        n = replace(
            notice(at, start=start), provider_id="p-weber", provider_name="Dr Weber", resources=(room1,)
        )
        await self.record(read, n, reminders=("schedule", (2880, 120)), now=at)
        async with uow() as repo:  # the 48 h one goes, naming Dr Weber
            r = await repo.claim_due_reminder(start - timedelta(hours=47))
            assert r is not None and r.offset_minutes == 2880
            assert (r.notice.provider_id, r.notice.provider_name, r.notice.resources) == (
                "p-weber",
                "Dr Weber",
                (room1,),
            )
            await repo.mark_reminder_sent(r.id, start - timedelta(hours=47))
        # staff move it to Dr Okafor and Dental 2, at the same time
        moved = replace(
            notice(at, booking=n.booking_id, clinic=n.clinic_id, kind="rescheduled", version=2, start=start),
            provider_id="p-okafor",
            provider_name="Dr Okafor",
            resources=(room2,),
        )
        await self.record(read, moved, reminders=("move", ()), now=at)
        async with uow() as repo:
            r = await repo.claim_due_reminder(start - timedelta(hours=1))
            assert r is not None and r.offset_minutes == 120  # the sent 48 h one is not due again
            assert (r.notice.provider_id, r.notice.provider_name, r.notice.resources) == (
                "p-okafor",
                "Dr Okafor",
                (room2,),
            )

    async def test_an_older_copy_does_not_move_reminders_back(
        self, read: UnitOfWork, uow: UnitOfWork
    ) -> None:
        at = moment()
        start = at + timedelta(days=5)
        n = notice(at, start=start)
        later = start + timedelta(days=1)
        moved = notice(
            at, booking=n.booking_id, clinic=n.clinic_id, kind="rescheduled", version=2, start=later
        )
        await self.record(read, n, reminders=("schedule", (120,)), now=at)
        await self.record(read, moved, reminders=("move", ()), now=at)
        moved_back = notice(
            at, booking=n.booking_id, clinic=n.clinic_id, kind="rescheduled", version=1, start=start
        )
        assert (await self.record(read, moved_back, reminders=("move", ()), now=at)).outcome == "copy"
        async with uow() as repo:
            r = await repo.claim_due_reminder(later - timedelta(hours=1))
            assert r is not None and r.notice.start == later

    async def test_a_claimed_reminder_is_skipped_by_other_transactions(
        self, read: UnitOfWork, uow: UnitOfWork
    ) -> None:
        at = moment()
        start = at + timedelta(days=5)
        await self.record(read, notice(at, start=start), reminders=("schedule", (120,)), now=at)
        await self.record(read, notice(at, start=start), reminders=("schedule", (120,)), now=at)
        now = start - timedelta(hours=1)
        first_holds, second_done = asyncio.Event(), asyncio.Event()
        claimed: list[uuid.UUID | None] = []

        async def first() -> None:
            async with uow() as repo:
                r = await repo.claim_due_reminder(now)
                claimed.append(r.id if r else None)
                first_holds.set()
                await second_done.wait()  # still locked while the other transaction looks

        async def second() -> None:
            await first_holds.wait()
            async with uow() as repo:
                r = await repo.claim_due_reminder(now)
                claimed.append(r.id if r else None)
                again = await repo.claim_due_reminder(now)  # a transaction's own lock does not hide a row
                claimed.append(again.id if again else None)
            second_done.set()

        await asyncio.wait_for(asyncio.gather(first(), second()), 30)
        a, b, again = claimed
        assert a is not None and b is not None and a != b and again == b

    # -- preferences ----------------------------------------------------------------------------------
    async def test_preferences_default_on_and_change_per_field(self, uow: UnitOfWork) -> None:
        user = uuid.uuid4()
        async with uow() as repo:
            assert await repo.preferences(user) == Preferences()
            assert await repo.update_preferences(user, {}) == Preferences()
            p = await repo.update_preferences(user, {"changes_email": False})
            assert p == Preferences(changes_email=False)
            p = await repo.update_preferences(user, {"reminders_push": False})
            assert p == Preferences(changes_email=False, reminders_push=False)
        async with uow() as repo:
            assert await repo.preferences(user) == Preferences(changes_email=False, reminders_push=False)
            assert await repo.preferences(uuid.uuid4()) == Preferences()

    # -- devices: claimed with the push, a token belongs to its latest owner ---------------------------
    async def test_the_owners_devices_are_claimed_once_with_the_push(
        self, read: UnitOfWork, uow: UnitOfWork
    ) -> None:
        n = notice(moment())
        async with uow() as repo:
            phone = await repo.upsert_device(n.owner_user_id, "ANDROID", f"tok-{uuid.uuid4()}")
            tablet = await repo.upsert_device(n.owner_user_id, "IOS", f"tok-{uuid.uuid4()}")
            await repo.upsert_device(uuid.uuid4(), "IOS", f"tok-{uuid.uuid4()}")  # someone else's
            mine = await repo.devices_of(n.owner_user_id)
        assert [(d.id, d.platform) for d in mine] == [(phone.id, "ANDROID"), (tablet.id, "IOS")]
        r = await self.record(read, n)
        assert sorted(d.id for d in r.devices) == sorted([phone.id, tablet.id])
        assert {d.token for d in r.devices} == {d.token for d in mine}
        async with read() as repo:
            await repo.finish_delivery(n.event_id, "device", str(phone.id), ok=True)
            await repo.finish_delivery(n.event_id, "device", str(tablet.id), ok=False, error="503")
        again = await self.record(read, n)  # a copy: only the failed one is claimed again
        assert [d.id for d in again.devices] == [tablet.id]
        assert (await self.record(read, notice(moment()), push=False)).devices == ()

    async def test_a_token_registered_by_another_owner_leaves_the_first(self, uow: UnitOfWork) -> None:
        first, second, token = uuid.uuid4(), uuid.uuid4(), f"tok-{uuid.uuid4()}"
        async with uow() as repo:
            await repo.upsert_device(first, "ANDROID", token)
            moved = await repo.upsert_device(second, "ANDROID", token)
            assert await repo.devices_of(first) == []
            assert [d.id for d in await repo.devices_of(second)] == [moved.id]
            assert await repo.remove_device(moved.id) is True
            assert await repo.remove_device(moved.id) is False
            assert await repo.devices_of(second) == []

    # -- the owners' calendars ---------------------------------------------------------------------------
    async def test_upcoming_bookings_follow_the_applied_events(
        self, read: UnitOfWork, uow: UnitOfWork
    ) -> None:
        at, owner = moment(), uuid.uuid4()
        kept = notice(at, owner=owner, start=at + timedelta(days=3))
        gone = notice(at, owner=owner, start=at + timedelta(days=2))
        ended = notice(at, owner=owner, start=at - timedelta(days=1))
        for n in (kept, gone, ended, notice(at)):
            await self.record(read, n)
        later = at + timedelta(days=4)
        moved = BookingNotice(
            **{
                **kept.__dict__,
                "event_id": uuid.uuid4(),
                "kind": "rescheduled",
                "version": 2,
                "start": later,
                "end": later + timedelta(minutes=30),
            }
        )
        await self.record(read, moved)
        await self.record(
            read,
            BookingNotice(**{**gone.__dict__, "event_id": uuid.uuid4(), "kind": "cancelled", "version": 2}),
        )
        await self.record(read, kept)  # an older copy changes nothing
        async with read() as repo:
            (b,) = await repo.upcoming_bookings(owner, at, 10)
            assert await repo.upcoming_bookings(uuid.uuid4(), at, 10) == []
        assert (b.booking_id, b.version, b.kind, b.start, b.end) == (
            kept.booking_id,
            2,
            "rescheduled",
            later,
            later + timedelta(minutes=30),
        )
        assert (b.clinic_name, b.clinic_time_zone, b.service_name, b.pet_name, b.owner_email) == (
            kept.clinic_name,
            kept.clinic_time_zone,
            kept.service_name,
            kept.pet_name,
            kept.owner_email,
        )

    async def test_a_feed_token_is_made_once_rotated_and_revoked(self, uow: UnitOfWork) -> None:
        user, at = uuid.uuid4(), moment()
        one, two = uuid.uuid4().bytes * 2, uuid.uuid4().bytes * 2
        async with uow() as repo:
            assert await repo.feed_owner(one) is None
            assert await repo.create_feed_token(user, one, at) is True
            assert await repo.create_feed_token(user, two, at) is False
            assert await repo.feed_owner(one) == user and await repo.feed_owner(two) is None
            await repo.replace_feed_token(user, two, at)
            assert await repo.feed_owner(one) is None and await repo.feed_owner(two) == user
            assert await repo.revoke_feed_token(user) is True
            assert await repo.revoke_feed_token(user) is False
            assert await repo.feed_owner(two) is None
            other = uuid.uuid4()
            await repo.replace_feed_token(other, one, at)  # rotate without a token makes one
            assert await repo.feed_owner(one) == other

    # -- quiet hours and deferred reminders --------------------------------------------------------------
    async def test_quiet_hours_are_per_clinic(self, uow: UnitOfWork) -> None:
        clinic = uuid.uuid4()
        async with uow() as repo:
            assert await repo.quiet_hours(clinic) is None
            await repo.set_quiet_hours(clinic, QuietHours.parse("22:00", "06:30"))
            await repo.set_quiet_hours(clinic, QuietHours.parse("23:00", "07:00"))
            assert await repo.quiet_hours(clinic) == QuietHours.parse("23:00", "07:00")
            assert await repo.quiet_hours(uuid.uuid4()) is None

    async def test_a_deferred_reminder_is_due_again_later_and_a_dropped_one_never(
        self, read: UnitOfWork, uow: UnitOfWork
    ) -> None:
        at = moment()
        start = at + timedelta(days=5)
        n = notice(at, start=start)
        await self.record(read, n, reminders=("schedule", (2880, 120)), now=at)
        due = start - timedelta(hours=48)
        async with uow() as repo:
            r = await repo.claim_due_reminder(due)
            assert r is not None and r.offset_minutes == 2880
            await repo.defer_reminder(r.id, due + timedelta(hours=5))
        async with uow() as repo:
            assert await repo.claim_due_reminder(due + timedelta(hours=4)) is None
            again = await repo.claim_due_reminder(due + timedelta(hours=5))
            assert again is not None and again.id == r.id and again.due_at == due + timedelta(hours=5)
            await repo.drop_reminder(again.id)
        async with uow() as repo:
            r2 = await repo.claim_due_reminder(start - timedelta(minutes=1))
            assert r2 is not None and r2.offset_minutes == 120  # the dropped one is gone

    # -- SMS ----------------------------------------------------------------------------------------------
    async def test_an_owners_number_is_kept_and_stop_and_start_change_every_owner_with_it(
        self, uow: UnitOfWork
    ) -> None:
        phone = f"+49151{random.randrange(10**7, 10**8)}"
        a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        at = moment()
        async with uow() as repo:
            assert await repo.sms_phone(a) is None
            pending = SmsPhone(a, phone, "PENDING", b"h" * 32, at, 5, 1, at)
            await repo.save_sms_phone(pending)
            assert await repo.sms_phone(a) == pending
            verified = SmsPhone(a, phone, "VERIFIED", verified_at=at)
            await repo.save_sms_phone(verified)
            await repo.save_sms_phone(SmsPhone(b, phone, "VERIFIED", verified_at=at))
            await repo.save_sms_phone(SmsPhone(c, phone, "PENDING", b"x", at, 5, 1, at))
        async with uow() as repo:
            assert await repo.sms_phone(a) == verified
            assert await repo.set_phone_opted_out(phone, True) == 2  # the pending one is no subscriber yet
            assert [(await repo.sms_phone(u)).state for u in (a, b, c)] == [
                "OPTED_OUT",
                "OPTED_OUT",
                "PENDING",
            ]  # type: ignore[union-attr]
            assert await repo.set_phone_opted_out(phone, True) == 0
            assert await repo.set_phone_opted_out(phone, False) == 2
            assert (await repo.sms_phone(a)).state == "VERIFIED"  # type: ignore[union-attr]

    async def test_a_clinics_sms_setting_is_off_until_set(self, uow: UnitOfWork) -> None:
        clinic = uuid.uuid4()
        async with uow() as repo:
            assert await repo.clinic_sms(clinic) is None
            await repo.set_clinic_sms(clinic, ClinicSms(True, 10))
            await repo.set_clinic_sms(clinic, ClinicSms(True, 20))
            assert await repo.clinic_sms(clinic) == ClinicSms(True, 20)
            assert await repo.sms_used(clinic, "2100-01") == 0

    async def test_a_text_is_claimed_once_and_a_failed_one_is_left_to_the_sweep(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        clinic, key, at = uuid.uuid4(), uuid.uuid4(), moment()
        phone = f"+49151{random.randrange(10**7, 10**8)}"
        claim = {"month": "2100-01", "cap": 10, "owner_limit": 5, "since": at - timedelta(hours=1), "now": at}
        async with read() as repo:
            assert await repo.claim_sms(key, phone, "hi", clinic, **claim) == "send"  # type: ignore[arg-type]
            assert await repo.claim_sms(key, phone, "hi", clinic, **claim) == "busy"  # type: ignore[arg-type]
            await repo.finish_delivery(key, "sms", phone, ok=False, error="503")
            # an earlier send of it may have gone: only the sweep sends it again, after asking
            assert await repo.claim_sms(key, phone, "hi", clinic, **claim) == "busy"  # type: ignore[arg-type]
            await repo.finish_delivery(key, "sms", phone, ok=True)
            assert await repo.claim_sms(key, phone, "hi", clinic, **claim) == "done"  # type: ignore[arg-type]
            assert await repo.sms_used(clinic, "2100-01") == 1  # counted once

    async def test_a_texts_lease_is_renewed_only_by_its_holder_and_not_once_settled(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        clinic, key, at = uuid.uuid4(), uuid.uuid4(), moment()
        phone = f"+49151{random.randrange(10**7, 10**8)}"
        later, latest = at + timedelta(seconds=30), at + timedelta(seconds=90)
        claim = {"month": "2100-01", "cap": 10, "owner_limit": 5, "since": at - timedelta(hours=1), "now": at}
        async with read() as repo:
            assert await repo.claim_sms(key, phone, "hi", clinic, **claim) == "send"  # type: ignore[arg-type]
            assert await repo.renew_sms_claim(key, phone, at, later)  # the claimer starts its send
            assert not await repo.renew_sms_claim(key, phone, at, latest)  # a stale holder: fenced off
            await repo.sms_outcome_unknown(key, phone, "no answer")  # still "sending", a try counted
            [s] = [s for s in await repo.stale_texts(latest) if s.key == key]
            assert (s.claimed_at, s.first_claimed_at <= at) == (later, True)
            await repo.finish_delivery(key, "sms", phone, ok=False, error="503")
            assert await repo.renew_sms_claim(key, phone, later, latest)  # failed: the holder tries again
            await repo.finish_delivery(key, "sms", phone, ok=True)
            assert not await repo.renew_sms_claim(key, phone, latest, latest + timedelta(seconds=1))
            assert [s for s in await repo.stale_texts(latest + timedelta(hours=1)) if s.key == key] == []

    async def test_texts_past_the_owners_limit_or_the_clinics_cap_are_refused_for_good(
        self, read: UnitOfWork
    ) -> None:
        clinic, at = uuid.uuid4(), moment()
        phone, other = (f"+49151{random.randrange(10**7, 10**8)}" for _ in range(2))
        since = at - timedelta(hours=1)
        async with read() as repo:
            claims = [
                await repo.claim_sms(
                    uuid.uuid4(),
                    phone,
                    "t",
                    clinic,
                    month="2100-01",
                    cap=3,
                    owner_limit=2,
                    since=since,
                    now=at,
                )
                for _ in range(3)
            ]
            assert claims == ["send", "send", "limited"]
            assert (
                await repo.claim_sms(
                    uuid.uuid4(),
                    other,
                    "t",
                    clinic,
                    month="2100-01",
                    cap=3,
                    owner_limit=2,
                    since=since,
                    now=at,
                )
                == "send"
            )
            key = uuid.uuid4()
            assert (
                await repo.claim_sms(
                    key, other, "t", clinic, month="2100-01", cap=3, owner_limit=2, since=since, now=at
                )
                == "capped"
            )
            assert (
                await repo.claim_sms(
                    key, other, "t", clinic, month="2100-01", cap=3, owner_limit=2, since=since, now=at
                )
                == "done"
            )
            assert await repo.sms_used(clinic, "2100-01") == 3
            assert (
                await repo.claim_sms(
                    uuid.uuid4(),
                    other,
                    "t",
                    clinic,
                    month="2100-02",
                    cap=3,
                    owner_limit=9,
                    since=since,
                    now=at,
                )
                == "send"
            )

    async def test_stale_texts_are_the_ones_still_sending_or_failed_after_the_lease(
        self, uow: UnitOfWork, read: UnitOfWork
    ) -> None:
        clinic, at = uuid.uuid4(), moment()
        phone = f"+49151{random.randrange(10**7, 10**8)}"
        sending, failed, done = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        async with read() as repo:
            for key in (sending, failed, done):
                assert (
                    await repo.claim_sms(
                        key,
                        phone,
                        f"text {key}",
                        clinic,
                        month="2100-01",
                        cap=9,
                        owner_limit=9,
                        since=at - timedelta(hours=1),
                        now=at,
                    )
                    == "send"
                )
            await repo.finish_delivery(failed, "sms", phone, ok=False, error="503")
            await repo.finish_delivery(done, "sms", phone, ok=True)
        mine = {sending, failed, done}  # other cases' texts share the table (the PostgreSQL run)
        async with uow() as repo:
            early = await repo.stale_texts(at, limit=1000)
            assert [s.key for s in early if s.key in mine] == []  # not older than the lease yet
            stale = [
                s for s in await repo.stale_texts(at + timedelta(minutes=1), limit=1000) if s.key in mine
            ]
            assert {(s.key, s.phone, s.body, s.claimed_at) for s in stale} == {
                (sending, phone, f"text {sending}", at),
                (failed, phone, f"text {failed}", at),
            }
