"""The SMS channel with fakes: off until a clinic switches it on, only to a number verified by a code
(throttled), once per (booking version, kind, channel) across retries, redeliveries and a worker that
stopped while sending, STOP honoured (the webhook and the provider's 21610), the clinic's monthly cap
and the owner's hourly limit, in the owner's language."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from notif_worker.adapters.codecs import encode_clinic_event
from notif_worker.adapters.push import InboxPush
from notif_worker.domain import BookingNotice, ClinicSms, Preferences, QuietHours, SmsPhone
from notif_worker.domain.sms import CodeInvalid, NoVerificationPending, PhoneInvalid, sms_key, sms_ref
from notif_worker.handlers import NotifyHandlers, ReminderHandlers, Retry, SmsHandlers
from notif_worker.handlers.sms import WebhookSignatureInvalid
from petpro.backoff import TooManyAttempts
from tests.unit.fakes.notif import LiveHub, NotifStore, RecordingMailer, RecordingSms, notif_uow
from tests.unit.test_notif_handlers import CLINIC, notice

PHONE = "+4915112345678"
NO_WAIT = Retry(attempts=3, base_delay=0, max_delay=0)


class Env:
    def __init__(self, *, owner_limit: int = 5, cap: int = 1000) -> None:
        self.store, self.mailer, self.provider = NotifStore(), RecordingMailer(), RecordingSms()
        self.now: datetime | None = None
        self.provider.clock = self.clock
        uow = notif_uow(self.store)
        self.sms = SmsHandlers(
            uow,
            uow,
            self.provider,
            owner_limit_per_hour=owner_limit,
            monthly_cap=cap,
            retry=NO_WAIT,
            clock=self.clock,
        )
        self.notifier = NotifyHandlers(
            uow,
            self.mailer,
            InboxPush(),
            encode_clinic_event,
            LiveHub().publish,
            NO_WAIT,
            sms=self.sms,
            clock=self.clock,
        )
        self.reminders = ReminderHandlers(
            uow,
            self.mailer,
            InboxPush(),
            sms=self.sms,
            retry=NO_WAIT,
            quiet_default=QuietHours.parse("00:00", "00:00"),  # none: the test passes at any hour
            clock=self.clock,
        )

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)

    async def notify(self, n: BookingNotice) -> None:
        """The event, its booking's earlier versions applied already."""
        self.store.progress[n.booking_id] = max(self.store.progress.get(n.booking_id, 0), n.version - 1)
        await self.notifier.notify(n)

    def enable(self, clinic: uuid.UUID = CLINIC, cap: int = 1000) -> None:
        self.store.clinic_sms[clinic] = ClinicSms(True, cap)

    def verified(self, n: BookingNotice, phone: str = PHONE) -> BookingNotice:
        self.store.sms_phones[n.owner_user_id] = SmsPhone(n.owner_user_id, phone, "VERIFIED")
        return n


def moved(n: BookingNotice | None = None, **changes: object) -> BookingNotice:
    base = n or notice()
    start = datetime.now(UTC) + timedelta(days=3)
    values: dict[str, object] = {"kind": "rescheduled", "version": 2, "start": start}
    values.update(changes)
    values["end"] = values["start"] + timedelta(minutes=30)  # type: ignore[operator]
    return dataclasses.replace(base, **values)  # type: ignore[arg-type]


@pytest.fixture
def env() -> Env:
    return Env()


async def test_a_change_goes_by_text_once_where_the_clinic_sends_texts_and_the_number_is_verified(env):
    env.enable()
    n = env.verified(moved(owner_locale="de-AT"))
    await env.notify(n)
    await env.notify(n)  # redelivered
    [text] = env.provider.texts_to(PHONE)
    assert text.startswith("Buchung verschoben: Check-up"), text
    assert text.endswith(f"STOP zum Abmelden. Ref {sms_ref(sms_key(n))}"), text  # the text's reference
    assert env.store.deliveries[(sms_key(n), "sms", PHONE)]["status"] == "delivered"
    assert await env.sms.clinic_setting(CLINIC) == (ClinicSms(True, 1000), 1)


async def test_no_text_while_the_clinic_has_texts_off_or_the_number_is_not_verified(env):
    n = env.verified(moved())
    await env.notify(n)  # SMS is off by default
    env.enable()
    other = moved()
    env.store.sms_phones[other.owner_user_id] = SmsPhone(other.owner_user_id, "+4915100000001", "PENDING")
    await env.notify(other)
    confirmation = env.verified(notice())  # a confirmation goes by email, not by text
    await env.notify(confirmation)
    assert env.provider.sent == []


async def test_a_transient_provider_failure_is_retried_and_texts_once(env):
    env.enable()
    env.provider.failures = 2
    n = env.verified(moved())
    await env.notify(n)
    assert len(env.provider.texts_to(PHONE)) == 1


async def test_stop_through_the_signed_webhook_ends_the_texts_and_start_resumes_them(env):
    env.enable()
    n = env.verified(moved())
    env.sms.webhook_url = "https://api.petpro.dev/webhooks/twilio/sms"
    stop = {"From": PHONE, "Body": "Stop", "OptOutType": "STOP"}
    with pytest.raises(WebhookSignatureInvalid):
        await env.sms.inbound(stop, "forged")
    assert await env.sms.inbound(stop, f"token:{env.sms.webhook_url}:{PHONE}") == "opted_out"
    assert env.store.sms_phones[n.owner_user_id].state == "OPTED_OUT"
    await env.notify(n)
    assert env.provider.sent == []
    start = {"From": PHONE, "Body": "START"}
    assert await env.sms.inbound(start, f"token:{env.sms.webhook_url}:{PHONE}") == "opted_in"
    await env.notify(moved(n, version=3))
    assert len(env.provider.texts_to(PHONE)) == 1


async def test_the_providers_unsubscribed_answer_marks_the_number_opted_out(env):
    env.enable()
    env.provider.opted_out.add(PHONE)
    n = env.verified(moved())
    await env.notify(n)  # not a failure of the event: nothing raised
    assert env.store.sms_phones[n.owner_user_id].state == "OPTED_OUT"
    assert env.store.deliveries[(sms_key(n), "sms", PHONE)]["status"] == "refused"


async def test_the_clinics_monthly_cap_and_the_owners_hourly_limit():
    env = Env(owner_limit=2)
    env.enable(cap=3)
    a = env.verified(moved())
    for version in (2, 3, 4):  # the owner's third text within the hour is over their limit
        await env.notify(moved(a, version=version))
    assert len(env.provider.texts_to(PHONE)) == 2
    for i in range(3):  # the clinic's cap: 3 a month, 2 used
        await env.notify(env.verified(moved(), phone=f"+49151000000{i}"))
    assert len(env.provider.sent) == 3
    assert (await env.sms.clinic_setting(CLINIC))[1] == 3


async def test_a_number_is_verified_by_its_code_with_few_codes_and_tries(env):
    user = uuid.uuid4()
    with pytest.raises(PhoneInvalid) as bad:
        await env.sms.start_verification(user, "0151 1234")
    assert bad.value.violations[0].field == "phone_number"
    p = await env.sms.start_verification(user, "+49 151 1234-5678", "fr")
    assert (p.phone, p.state) == (PHONE, "PENDING")
    [text] = env.provider.texts_to(PHONE)
    assert text.startswith("Votre code PetPro")
    code = re.search(r"\d{6}", text).group()  # type: ignore[union-attr]
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(CodeInvalid):
        await env.sms.confirm_verification(user, wrong)
    assert (await env.sms.confirm_verification(user, code)).state == "VERIFIED"
    with pytest.raises(NoVerificationPending):  # spent
        await env.sms.confirm_verification(user, code)
    await env.sms.start_verification(user, PHONE)
    await env.sms.start_verification(user, PHONE)
    with pytest.raises(TooManyAttempts):  # 3 codes an hour
        await env.sms.start_verification(user, PHONE)
    assert env.store.sms_phones[user].state == "PENDING"  # a new code makes it pending again


async def test_five_wrong_codes_spend_the_code(env):
    user = uuid.uuid4()
    await env.sms.start_verification(user, PHONE)
    code = re.search(r"\d{6}", env.provider.texts_to(PHONE)[0]).group()  # type: ignore[union-attr]
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        with pytest.raises(CodeInvalid):
            await env.sms.confirm_verification(user, wrong)
    with pytest.raises(NoVerificationPending):
        await env.sms.confirm_verification(user, code)


async def reminder_due(env: Env) -> BookingNotice:
    """A booking whose 2 h reminder is due now (its clinic sends texts, its owner's number verified)."""
    env.enable()
    start = datetime.now(UTC) + timedelta(hours=3)
    n = env.verified(dataclasses.replace(notice(), start=start, end=start + timedelta(minutes=30)))
    n = dataclasses.replace(n, reminder_offsets=(120,))
    await env.notify(n)  # the confirmation: email, and the reminder scheduled
    env.now = start - timedelta(minutes=119)  # the reminder is due
    return n


async def test_a_reminder_texts_once(env):
    await reminder_due(env)
    assert await env.reminders.send_due_reminders() == 1
    assert await env.reminders.send_due_reminders() == 0
    [text] = env.provider.texts_to(PHONE)
    assert text.startswith("Reminder: Check-up for Rex")


async def test_a_worker_that_stopped_after_the_provider_took_the_text_never_texts_twice(env):
    await reminder_due(env)
    env.provider.die_after_send = True
    with pytest.raises(SystemExit):
        await env.reminders.send_due_reminders()
    env.provider.die_after_send = False
    assert await env.reminders.send_due_reminders() == 0  # the reminder was committed with its claim
    assert await env.sms.resend_stale() == 0  # within the lease: its worker may still be sending
    env.now += timedelta(minutes=2)  # type: ignore[operator]
    assert await env.sms.resend_stale() == 1  # the provider has it: recorded, not sent again
    assert len(env.provider.texts_to(PHONE)) == 1
    [row] = [r for (k, ch, to), r in env.store.deliveries.items() if ch == "sms"]
    assert row["status"] == "delivered"


async def test_a_text_claimed_by_a_worker_that_stopped_before_sending_is_sent_by_the_sweep(env):
    n = env.verified(moved())
    env.enable()
    async with env.sms.repos() as repo:
        assert await env.sms.claim(repo, n) is not None  # claimed; the worker stops here
    await env.notify(n)  # the redelivered event: being sent, leave it to the sweep
    assert env.provider.sent == []
    env.now = datetime.now(UTC) + timedelta(minutes=2)
    assert await env.sms.resend_stale() == 1
    assert await env.sms.resend_stale() == 0
    assert len(env.provider.texts_to(PHONE)) == 1


async def test_a_provider_outage_fails_no_event_and_the_sweep_sends_the_text_later(env):
    env.enable()
    env.provider.failures = 10  # more than the retries
    n = env.verified(moved())
    await env.notify(n)  # the email went; the event is done (no dead letter for a text)
    assert env.provider.sent == [] and len(env.mailer.sent) == 1
    env.provider.failures = 0
    env.now = datetime.now(UTC) + timedelta(minutes=2)
    assert await env.sms.resend_stale() == 1
    assert len(env.provider.texts_to(PHONE)) == 1
    assert await env.sms.resend_stale() == 0


async def test_an_owner_who_switched_sms_reminders_off_gets_none_but_still_the_cancellation(env):
    env.enable()
    n = env.verified(moved())
    env.store.preferences[n.owner_user_id] = dataclasses.replace(
        env.store.preferences.get(n.owner_user_id, Preferences()), changes_sms=False
    )
    await env.notify(n)  # a move: a change, switched off
    assert env.provider.sent == []
    await env.notify(dataclasses.replace(n, kind="cancelled", version=3))  # transactional: texted
    [text] = env.provider.texts_to(PHONE)
    assert text.startswith("Booking cancelled")
