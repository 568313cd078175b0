"""The SMS channel's exactly-once promise under the interleavings that sent a reminder twice
(tests/e2e/test_sms_channel.py, a loaded machine), replayed with fakes and events (no sleeps):

- the lease ran from the claim, and a reminder's claim is made before its email goes: a slow email
  left the text "stale" before its send started, and the sweep, asking the provider while the
  worker's request was still on its way, sent it too;
- a send whose answer never came was retried at once, though the provider had taken it;
- a booking's two reminders read the same, so the provider's list could not tell one from the other;
- a claimer that stalled past its lease still sent after the sweep had taken the text over."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from notif_worker.domain import BookingNotice, SendOutcomeUnknown
from notif_worker.handlers import SmsHandlers
from tests.unit.fakes.notif import RecordingMailer, RecordingSms, notif_uow
from tests.unit.test_notif_sms import PHONE, Env, moved

LEASE = timedelta(seconds=60)  # SmsHandlers' default; RecordingSms answers within 10 s


class HeldSms(RecordingSms):
    """The provider, with a hand on its next request: ``hold_next`` keeps it on its way (``reached``
    set, not taken) until ``go``; ``lose_next_answer``: it is taken, and its answer never comes (the
    client's timeout); ``die_on_call``: the worker stops before that request (1, 2...) goes out."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_next = self.lose_next_answer = False
        self.die_on_call = 0
        self.reached, self.go = asyncio.Event(), asyncio.Event()
        self.calls = 0

    async def send(self, to: str, body: str) -> str:
        self.calls += 1
        if self.calls == self.die_on_call:
            raise SystemExit("worker killed before the request went out")
        if self.hold_next:
            self.hold_next = False
            self.reached.set()
            await self.go.wait()
        sid = await super().send(to, body)
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise SendOutcomeUnknown("twilio did not answer within 10 s")
        return sid


class HeldMailer(RecordingMailer):
    """A mailer whose next email takes as long as the test says: ``sending`` set, done on ``done``."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_next = False
        self.sending, self.done = asyncio.Event(), asyncio.Event()

    async def send(self, notice: BookingNotice) -> None:
        if self.hold_next:
            self.hold_next = False
            self.sending.set()
            await self.done.wait()
        await super().send(notice)


@pytest.fixture
def env() -> Env:
    e = Env()
    held, mailer = HeldSms(), HeldMailer()
    held.clock = e.clock
    e.provider = e.sms.sender = held  # type: ignore[assignment]
    e.mailer = e.reminders.mailer = e.notifier.mailer = mailer
    return e


async def reminders_due(env: Env, *offsets: int) -> BookingNotice:
    """A booking (its clinic sends texts, its owner's number verified) whose reminders at ``offsets``
    minutes before the visit are all due now."""
    env.enable()
    start = datetime.now(UTC) + timedelta(hours=5)
    n = env.verified(dataclasses.replace(moved(), kind="created", version=1, start=start))
    n = dataclasses.replace(n, end=start + timedelta(minutes=30), reminder_offsets=offsets)
    await env.notify(n)  # the confirmation: reminders scheduled
    env.now = start - timedelta(minutes=min(offsets) - 1)
    return n


def sms_rows(env: Env) -> list[dict[str, object]]:
    return [r for (_, ch, _), r in env.store.deliveries.items() if ch == "sms"]


async def test_a_slow_email_before_the_send_does_not_let_the_sweep_send_the_reminder_too(env):
    await reminders_due(env, 120)
    env.mailer.hold_next = True  # type: ignore[attr-defined]
    env.provider.hold_next = True  # type: ignore[attr-defined]
    worker = asyncio.create_task(env.reminders.send_due_reminders())
    await env.mailer.sending.wait()  # type: ignore[attr-defined]  # the text is claimed, the email slow
    env.now += LEASE + timedelta(seconds=1)  # type: ignore[operator]  # ... longer than the lease
    env.mailer.done.set()  # type: ignore[attr-defined]
    await env.provider.reached.wait()  # type: ignore[attr-defined]  # committed; the text on its way
    assert await env.sms.resend_stale() == 0  # its lease runs from the send's start: not stale
    env.provider.go.set()  # type: ignore[attr-defined]
    assert await worker == 1
    assert len(env.provider.texts_to(PHONE)) == 1
    assert [r["status"] for r in sms_rows(env)] == ["delivered"]


async def test_a_text_whose_answer_never_came_is_not_resent_blind_but_found_by_the_sweep(env):
    await reminders_due(env, 120)
    env.provider.lose_next_answer = True  # type: ignore[attr-defined]  # taken, then the timeout
    assert await env.reminders.send_due_reminders() == 1
    assert len(env.provider.texts_to(PHONE)) == 1  # not retried: it may have gone (it did)
    [row] = sms_rows(env)
    assert (row["status"], row["attempts"]) == ("sending", 1)  # outcome unknown
    assert await env.sms.resend_stale() == 0  # within the lease of that send
    env.now += LEASE + timedelta(seconds=1)  # type: ignore[operator]
    assert await env.sms.resend_stale() == 1  # the provider has it: recorded, not sent again
    assert env.provider.calls == 1  # type: ignore[attr-defined]
    assert [r["status"] for r in sms_rows(env)] == ["delivered"]


async def test_two_reminders_due_at_once_are_told_apart_when_the_provider_is_asked(env):
    await reminders_due(env, 150, 120)  # both due: their texts read the same but for the reference
    env.provider.die_on_call = 2  # type: ignore[attr-defined]  # the second text's worker stops
    with pytest.raises(SystemExit):
        await env.reminders.send_due_reminders()
    assert len(env.provider.texts_to(PHONE)) == 1
    env.now += LEASE + timedelta(seconds=1)  # type: ignore[operator]
    assert await env.sms.resend_stale() == 1  # not "found": the one sent is the other reminder's
    first, second = env.provider.texts_to(PHONE)
    assert first != second and first.split(" Ref ")[0] == second.split(" Ref ")[0]
    assert [r["status"] for r in sms_rows(env)] == ["delivered", "delivered"]
    assert await env.sms.resend_stale() == 0


async def test_a_claimer_that_stalled_past_its_lease_does_not_send_what_the_sweep_took_over(env):
    env.enable()
    n = env.verified(moved())
    async with env.sms.repos() as repo:
        text = await env.sms.claim(repo, n)  # claimed; this worker stalls before sending
    assert text is not None
    env.now = datetime.now(UTC) + LEASE + timedelta(seconds=1)
    assert await env.sms.resend_stale() == 1  # taken over: asked, not found, sent
    assert await env.sms.send(text) == "busy"  # the stalled claimer's lease is gone: fenced off
    assert len(env.provider.texts_to(PHONE)) == 1


async def test_the_sweep_never_sends_while_the_holders_send_may_still_be_on_its_way(env):
    """The lease is at least twice the provider call's timeout, so a send whose lease ran out has
    ended; a lease too short for the timeout is refused when the channel is made."""
    with pytest.raises(ValueError, match="twice the provider's timeout"):
        SmsHandlers(notif_uow(), notif_uow(), RecordingSms(), lease=timedelta(seconds=8))  # timeout 10 s
    await reminders_due(env, 120)
    env.provider.hold_next = True  # type: ignore[attr-defined]
    worker = asyncio.create_task(env.reminders.send_due_reminders())
    await env.provider.reached.wait()  # type: ignore[attr-defined]
    env.now += timedelta(seconds=env.provider.timeout)  # type: ignore[operator]  # at most this long
    assert await env.sms.resend_stale() == 0
    env.provider.go.set()  # type: ignore[attr-defined]
    assert await worker == 1
    assert len(env.provider.texts_to(PHONE)) == 1
