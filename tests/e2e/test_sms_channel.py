"""The owner's language end to end and the SMS channel, through the REST edge with the real SMTP sink
and the push and Twilio stand-ins: an owner registered with ``Accept-Language: de`` gets one German
email whose calendar event two parsers read as the instant the push carries; a clinic that switched
texts on texts an owner who verified their number, a reminder exactly once across a SIGKILLed
notif_worker and a restarted broker; STOP (the stand-in's signed webhook through the edge) ends the
texts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import HAPPY_PAWS, Api, User, confirmed_booking, eventually, mails_to
from tests.e2e.test_clinic_ops import bearer, platform_token
from tests.e2e.test_notification_channels import (
    fcm_token,
    invitation,
    mails_of,
    push_sandbox,
    register,
)
from tests.e2e.test_notifications import staff_token

pytestmark = pytest.mark.e2e


async def sms_sandbox(api: Api, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=api.stack.env()["SMS_API_BASE"], timeout=20) as c:
        r = await c.request(method, path, **kwargs)
        r.raise_for_status()
        return r.json()


async def texts_to(api: Api, phone: str) -> list[str]:
    return [m["body"] for m in await sms_sandbox(api, "GET", "/_sandbox/messages", params={"to": phone})]


async def german_owner(api: Api) -> User:
    email, password = f"owner-{uuid.uuid4().hex[:10]}@example.com", "correct-horse"
    r = await api.c.post(
        "/v1/auth/register",
        json={"email": email, "password": password, "name": "Jörg"},
        headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"},
    )
    assert r.status_code == 201 and r.json()["user"]["locale"] == "de-DE", r.text
    return User(email, await api.login(email, password), r.json()["user"]["user_id"])


async def test_a_german_owners_booking_mails_one_german_invitation_at_the_pushs_instant(api: Api):
    owner = await german_owner(api)
    android = fcm_token()
    await register(api, owner, "ANDROID", android)
    owner, _, booking_id = await confirmed_booking(api, owner)

    (mail,) = await mails_of(api, owner, 1)
    assert mail.subject.startswith("Buchung bestätigt:"), mail.subject
    method, event, other = invitation(mail.message)
    assert method == "REQUEST" and str(event["uid"]) == f"{booking_id}@petpro.dev"
    assert "Tierarztweg 1" in str(event["location"])  # the clinic's address travelled in the event
    start = event.decoded("dtstart")
    assert start.astimezone(UTC) == other.begin.datetime.astimezone(UTC)

    async def pushed() -> list[dict[str, Any]] | None:
        sent = await push_sandbox(api, "GET", f"/_sandbox/messages?token={android}")
        return sent or None

    (push,) = await eventually(pushed)
    assert push["title"].startswith("Buchung bestätigt")
    assert datetime.fromisoformat(push["data"]["start_time"]) == start  # the same instant
    assert len(mails_to(api.stack, owner.email)) == 1


async def test_an_owner_without_a_language_reads_happy_paws_german_and_an_english_one_keeps_english(api: Api):
    """The seeded Happy Paws has locale de-DE: it is the language of an owner who registered without
    Accept-Language (locale "") or with one PetPro does not speak; a chosen English stays English."""
    silent, unsupported, english = [await api.user(language=x) for x in ("", "pt-BR", "en")]
    for owner, subject in (
        (silent, "Buchung bestätigt:"),
        (unsupported, "Buchung bestätigt:"),
        (english, "Booking confirmed:"),
    ):
        owner, _, _ = await confirmed_booking(api, owner)
        (mail,) = await mails_of(api, owner, 1)
        assert mail.subject.startswith(subject), (owner.email, mail.subject)


async def verified_phone(api: Api, owner: User) -> str:
    phone = f"+4915{uuid.uuid4().int % 10**9:09d}"
    path = "/v1/me/sms-phone:startVerification"
    assert (await api.c.post(path, json={"phone_number": "12"}, headers=owner.auth)).status_code == 400
    r = await api.c.post(path, json={"phone_number": phone}, headers=owner.auth)
    assert r.status_code == 200 and r.json()["sms_phone"]["state"] == "SMS_PHONE_STATE_PENDING", r.text
    (text,) = await texts_to(api, phone)
    code = re.search(r"\b(\d{6})\b", text).group(1)  # type: ignore[union-attr]
    r = await api.c.post("/v1/me/sms-phone:confirmVerification", json={"code": code}, headers=owner.auth)
    assert r.status_code == 200 and r.json()["sms_phone"]["state"] == "SMS_PHONE_STATE_VERIFIED", r.text
    return phone


async def sms_states(api: Api, phone: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(api.stack.env()["DATABASE_URL"], autocommit=True) as db:
        cur = await db.execute(
            "SELECT status FROM notif.deliveries WHERE channel = 'sms' AND recipient = %s", (phone,)
        )
        return [r[0] for r in await cur.fetchall()]


async def _gone(pid: int) -> bool:
    try:
        stat = await asyncio.to_thread(Path(f"/proc/{pid}/stat").read_text)
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def _kill(api: Api, name: str) -> None:
    pid = api.stack.pid(name)
    assert pid, name
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: _gone(pid), timeout=60)


async def test_a_reminder_texts_once_across_a_killed_worker_and_a_restarted_broker_and_stop_ends_texts(
    api: Api,
):
    staff, root = await staff_token(api), await platform_token(api)
    path = f"/v1/clinics/{HAPPY_PAWS}/sms-settings"
    r = await api.c.get(path, headers=bearer(staff))
    assert r.status_code == 200 and "sent_this_month" in r.json()["sms_settings"], r.text
    r = await api.c.put(path, json={"enabled": True, "monthly_cap": 100000}, headers=bearer(staff))
    assert (r.status_code, r.json()["reason"]) == (403, "CLINIC_ADMIN_REQUIRED")
    r = await api.c.put(path, json={"enabled": True, "monthly_cap": 100000}, headers=bearer(root))
    assert r.status_code == 200 and r.json()["sms_settings"]["enabled"] is True, r.text
    owner = await api.user()
    assert (await api.c.get("/v1/me/sms-phone", headers=owner.auth)).status_code == 404
    phone = await verified_phone(api, owner)
    owner, _, booking_id = await confirmed_booking(api, owner)
    await mails_of(api, owner, 1)  # notified: the reminders are scheduled
    assert len(await texts_to(api, phone)) == 1  # the code only: a confirmation goes by email

    # the provider takes the first reminder's text but answers late: the worker is killed in between,
    # never learning that it went (the text stays "sending" in its database)
    await sms_sandbox(api, "POST", "/_sandbox/slow", json={"to": phone, "seconds": 30})
    due = await api.make_reminders_due(booking_id)
    assert due >= 1

    async def texted() -> list[str] | None:
        found = [t for t in await texts_to(api, phone) if t.startswith("Reminder:")]
        return found or None

    await eventually(texted, timeout=60)
    assert "sending" in await sms_states(api, phone)  # taken by the provider, not known to notif
    await _kill(api, "notif")  # while it waits for the provider's answer
    await _kill(api, "kafka")
    await asyncio.to_thread(api.stack.up, ["kafka"])
    await asyncio.to_thread(api.stack.up, ["notif"])

    async def all_reminders_texted() -> list[str] | None:
        found = [t for t in await texts_to(api, phone) if t.startswith("Reminder:")]
        return found if len(found) >= due else None

    await eventually(all_reminders_texted, timeout=120)

    async def settled() -> bool:  # no text of this owner is left "sending" (the sweep ran)
        return set(await sms_states(api, phone)) == {"delivered"}

    await eventually(settled, timeout=60)
    assert len([t for t in await texts_to(api, phone) if t.startswith("Reminder:")]) == due

    # STOP: the owner texts it, the stand-in posts it signed to the edge, notif marks the number
    stop = await sms_sandbox(api, "POST", "/_sandbox/inbound", json={"from": phone, "body": "STOP"})
    assert stop["delivered"] is True, stop
    me = await api.c.get("/v1/me/sms-phone", headers=owner.auth)
    assert me.json()["sms_phone"]["state"] == "SMS_PHONE_STATE_OPTED_OUT", me.text
    assert (await api.cancel(owner, booking_id, "plans changed")).status_code == 200
    await mails_of(api, owner, 2 + due)  # the cancellation went by email ...
    assert not [t for t in await texts_to(api, phone) if t.startswith("Booking cancelled")]  # ... not by text

    forged = await api.c.post(
        "/webhooks/twilio/sms",
        content=f"From={phone.replace('+', '%2B')}&Body=START",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "forged"},
    )
    assert forged.status_code == 403, forged.text
