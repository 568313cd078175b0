"""What an owner really receives, through the REST edge and the real SMTP sink and push stand-in: one
email whose calendar event two parsers read as the instant the pushes carry; a move that updates the
same event with a higher SEQUENCE and a cancellation that cancels it; one push per device on FCM and
APNs and a gone token removed; the private calendar feed and its revoked token; a reminder due in the
clinic's quiet hours sent at their end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
import ics
import psycopg
import pytest

from tests.e2e.conftest import HAPPY_PAWS, Api, User, confirmed_booking, eventually, mails_to
from tests.e2e.test_clinic_ops import bearer, platform_token
from tests.e2e.test_notifications import staff_token

pytestmark = pytest.mark.e2e


def fcm_token() -> str:
    return f"e2e-{uuid.uuid4().hex}:{uuid.uuid4().hex}"


def apns_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


async def push_sandbox(api: Api, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=api.stack.env()["PUSH_API_BASE"], timeout=10) as c:
        r = await c.request(method, path, json=body)
        r.raise_for_status()
        return r.json()


async def register(api: Api, owner: User, platform: str, token: str) -> None:
    r = await api.c.post(
        "/v1/me/devices", json={"platform": f"DEVICE_PLATFORM_{platform}", "token": token}, headers=owner.auth
    )
    assert r.status_code in (200, 201), r.text


async def device_count(api: Api, token: str) -> int:
    async with await psycopg.AsyncConnection.connect(api.stack.env()["DATABASE_URL"], autocommit=True) as db:
        cur = await db.execute("SELECT count(*) FROM notif.devices WHERE token = %s", (token,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0


def invitation(message: Any) -> tuple[str, icalendar.Event, ics.Event]:
    """(METHOD, the event as icalendar reads it, as ics reads it) of an email's text/calendar part."""
    (part,) = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    data = part.get_payload(decode=True)
    cal = icalendar.Calendar.from_ical(data)
    (event,) = cal.walk("VEVENT")
    (other,) = ics.Calendar(data.decode()).events
    assert part.get_param("method") == str(cal["METHOD"])
    return str(cal["METHOD"]), event, other


async def mails_of(api: Api, owner: User, count: int) -> list[Any]:
    async def enough() -> list[Any] | None:
        found = mails_to(api.stack, owner.email)
        return found if len(found) >= count else None

    return await eventually(enough)


async def test_a_booking_mails_one_invitation_and_pushes_each_device_once_at_the_same_instant(api: Api):
    owner = await api.user()
    android, ios_device, stale = fcm_token(), apns_token(), fcm_token()
    await push_sandbox(api, "POST", "/_sandbox/unregister", {"token": stale})  # the app was uninstalled
    for platform, token in (("ANDROID", android), ("IOS", ios_device), ("ANDROID", stale)):
        await register(api, owner, platform, token)
    owner, _, booking_id = await confirmed_booking(api, owner)

    (mail,) = await mails_of(api, owner, 1)
    method, event, other = invitation(mail.message)
    assert method == "REQUEST" and str(event["uid"]) == other.uid == f"{booking_id}@petpro.dev"
    assert int(event["sequence"]) == 1
    start = event.decoded("dtstart")
    assert start.tzinfo is not None and str(event["dtstart"].params["TZID"]) == "Europe/Berlin"
    assert start.astimezone(UTC) == other.begin.datetime.astimezone(UTC)
    view = (await api.c.get(f"/v1/bookings/{booking_id}", headers=owner.auth)).json()["booking"]
    assert start.astimezone(UTC) == datetime.fromisoformat(view["slot_start_time"].replace("Z", "+00:00"))

    async def pushed() -> list[dict[str, Any]] | None:
        sent = [
            m
            for t in (android, ios_device)
            for m in await push_sandbox(api, "GET", f"/_sandbox/messages?token={t}")
        ]
        return sent if len(sent) >= 2 else None

    sent = await eventually(pushed)
    assert sorted(m["provider"] for m in sent) == ["apns", "fcm"]
    for m in sent:
        assert m["data"]["booking_id"] == booking_id and m["title"].startswith("Booking confirmed")
        assert datetime.fromisoformat(m["data"]["start_time"]) == start  # the instant, in the clinic's zone
    local = start.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"{local:%-I:%M}" in mail.body() and "(Europe/Berlin)" in mail.body()

    async def stale_removed() -> bool:
        return await device_count(api, stale) == 0

    await eventually(stale_removed)
    assert await device_count(api, android) == 1 and await device_count(api, ios_device) == 1
    # exactly once: no second push or mail for the same event, whatever redeliveries happened
    assert len(mails_to(api.stack, owner.email)) == 1
    assert len(await push_sandbox(api, "GET", f"/_sandbox/messages?token={android}")) == 1


DENTAL = "5d6f8a10-3c2b-4f7e-8d91-0a1b2c3d4e03"  # the demo's Happy Paws: one of Dr Weber / Dr Okafor


async def test_the_confirmation_of_a_vets_booking_names_the_assigned_vet(api: Api):
    """A Dental cleaning (the seed: one of two vets and the dental room), booked for "any available"
    vet: the email, its calendar event and the push name the vet the server assigned, and the room."""
    owner = await api.user()
    r = await api.book(owner, await api.pet(owner), await api.unique_slot(DENTAL), service_id=DENTAL)
    assert r.status_code == 201, r.text
    hold = r.json()
    vet = hold["provider"]["display_name"]
    assert vet in ("Dr Weber", "Dr Okafor")
    other = ({"Dr Weber", "Dr Okafor"} - {vet}).pop()
    assert (await api.pay(hold["payment_url"])).status_code == 200
    await api.wait_status(owner, hold["lock_id"], "CONFIRMED")

    (mail,) = await mails_of(api, owner, 1)
    body = mail.body()
    assert f"Dental cleaning with {vet}" in body and other not in body
    assert "(Dental room)" in body
    _, event, _ = invitation(mail.message)
    assert f"Dental cleaning with {vet}" in str(event["description"])
    assert str(event["summary"]).startswith(f"Dental cleaning with {vet} for ")

    async def pushed() -> list[dict[str, Any]] | None:
        found = [n for n in await api.inbox(owner) if n["data"]["type"] == "booking.created"]
        return found or None

    (push,) = await eventually(pushed)
    assert f"with {vet} at Happy Paws" in push["body"], push


async def test_a_move_updates_the_same_event_and_a_cancellation_cancels_it(api: Api):
    owner, _, booking_id = await confirmed_booking(api)
    (first,) = await mails_of(api, owner, 1)
    _, created, _ = invitation(first.message)
    slot = await api.unique_slot(min_days=3)
    r = await api.reschedule(owner, booking_id, slot)
    assert r.status_code == 200, r.text
    moved_mail = (await mails_of(api, owner, 2))[1]
    method, moved, moved_other = invitation(moved_mail.message)
    assert method == "REQUEST" and moved["uid"] == created["uid"] and moved_other.uid == str(created["uid"])
    assert int(moved["sequence"]) > int(created["sequence"])
    new_start = datetime.fromisoformat(slot.replace("Z", "+00:00"))
    assert moved.decoded("dtstart").astimezone(UTC) == moved_other.begin.datetime.astimezone(UTC) == new_start
    assert (await api.cancel(owner, booking_id, "plans changed")).status_code == 200
    cancel_mail = (await mails_of(api, owner, 3))[2]
    method, cancelled, cancelled_other = invitation(cancel_mail.message)
    assert method == "CANCEL" and cancelled["uid"] == created["uid"]
    assert int(cancelled["sequence"]) > int(moved["sequence"])
    assert str(cancelled["status"]) == "CANCELLED" and cancelled_other.status == "CANCELLED"


async def test_the_private_feed_lists_upcoming_bookings_and_a_revoked_token_is_404(api: Api):
    owner, _, booking_id = await confirmed_booking(api)
    await mails_of(api, owner, 1)  # notified: the worker has the booking
    assert (await api.c.post("/v1/me/calendar-feed-token", json={})).status_code == 401
    r = await api.c.post("/v1/me/calendar-feed-token", json={}, headers=owner.auth)
    assert r.status_code == 201, r.text
    token = r.json()["feed_token"]
    assert token["feed_path"] == f"/v1/me/calendar.ics?token={token['token']}"
    again = await api.c.post("/v1/me/calendar-feed-token", json={}, headers=owner.auth)
    assert again.status_code == 409

    feed = await api.c.get(token["feed_path"])  # no bearer: the token is the credential
    assert feed.status_code == 200, feed.text
    assert feed.headers["content-type"].startswith("text/calendar")
    uids = {str(e["uid"]) for e in icalendar.Calendar.from_ical(feed.content).walk("VEVENT")}
    assert uids == {f"{booking_id}@petpro.dev"} == {e.uid for e in ics.Calendar(feed.text).events}

    rotated = await api.c.post("/v1/me/calendar-feed-token:rotate", json={}, headers=owner.auth)
    assert rotated.status_code == 200, rotated.text
    assert (await api.c.get(token["feed_path"])).status_code == 404
    new_path = rotated.json()["feed_token"]["feed_path"]
    assert (await api.c.get(new_path)).status_code == 200
    r = await api.c.delete("/v1/me/calendar-feed-token", headers=owner.auth)
    assert (r.status_code, r.json()) == (200, {"revoked": True})
    gone = await api.c.get(new_path)
    assert gone.status_code == 404 and gone.headers["content-type"].startswith("application/problem+json")
    assert (await api.c.get("/v1/me/calendar.ics", params={"token": "x" * 43})).status_code == 404


async def test_a_reminder_due_in_the_clinics_quiet_hours_goes_at_their_end(api: Api):
    staff, root = await staff_token(api), await platform_token(api)
    path = f"/v1/clinics/{HAPPY_PAWS}/quiet-hours"
    r = await api.c.get(path, headers=bearer(staff))
    assert r.status_code == 200 and r.json()["platform_default"] is True, r.text
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime.now(berlin)
    end = (now + timedelta(seconds=75)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    window = {"start": f"{now - timedelta(hours=1):%H:%M}", "end": f"{end:%H:%M}"}
    r = await api.c.put(path, json=window, headers=bearer(staff))
    assert (r.status_code, r.json()["reason"]) == (403, "CLINIC_ADMIN_REQUIRED")
    r = await api.c.put(path, json=window, headers=bearer(root))
    assert r.status_code == 200 and r.json()["quiet_hours"] == window, r.text
    try:
        owner, _, booking_id = await confirmed_booking(api)
        await mails_of(api, owner, 1)
        due_now = await api.make_reminders_due(booking_id)  # the 2 h one, and the 48 h one if not past
        assert due_now >= 1

        async def deferred() -> bool:
            pending = [due for _, due, state in await api.reminders(booking_id) if state == "PENDING"]
            return len(pending) == due_now and all(due == end for due in pending)

        await eventually(deferred)
        assert len(mails_to(api.stack, owner.email)) == 1  # nothing inside the quiet hours

        async def sent() -> list[Any] | None:
            found = [m for m in mails_to(api.stack, owner.email) if m.subject.startswith("Reminder")]
            return found if len(found) == due_now else None

        mails = await eventually(sent, timeout=200)
        assert all(m.received >= end.astimezone(UTC) - timedelta(seconds=1) for m in mails)
        states = [state for _, _, state in await api.reminders(booking_id)]
        assert states.count("SENT") == due_now and "PENDING" not in states
    finally:
        r = await api.c.put(path, json={"start": "00:00", "end": "00:00"}, headers=bearer(root))
        assert r.status_code == 200, r.text
