"""The SMS channel: an owner proves their number with a code (a few codes an hour, a few tries a
code), a clinic switches texts on (off by default) under a monthly cap, a change or reminder goes by
text to a verified number exactly once, and STOP (the provider's incoming-message webhook, or its
21610 refusal) ends the texts to that number.

Exactly once: a text's key is its (booking, version, kind, channel) (``sms_key``).  It is claimed
(committed as "sending", with its body, which ends with the key's reference ``sms_ref``) before it is
sent and recorded delivered after; a retry or a redelivered event finds the claim and sends nothing.

A text is never sent while an earlier send of it may still be on its way:

- each send renews the claim's lease first (``claimed_at``: the lease runs from the start of the
  send, not from the claim, which for a reminder was made before its email went), and only while the
  lease is still the one this sender holds (a fencing token: a text the sweep took over is not sent
  here, and not sent by the sweep while we hold it);
- the lease is at least twice the provider call's timeout, so a send whose lease ran out has ended
  (answered, timed out, or its worker stopped);
- a send whose outcome is unknown (no answer in time) is not retried: the text stays "sending";
- the sweep takes a text whose lease ran out (renewing it), asks the provider whether a message with
  exactly its body (so its reference) went since it was first claimed, and sends it only if not."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from notif_worker.domain import (
    SMS_KINDS,
    BookingNotice,
    ClinicSms,
    MessageRefused,
    PhoneOptedOut,
    SendOutcomeUnknown,
    SmsPhone,
    check_phone,
    confirm_verification,
    month_of,
    new_code,
    sms_code_text,
    sms_key,
    sms_text,
    start_verification,
)
from notif_worker.domain.sms import CodeInvalid, with_ref
from notif_worker.handlers.devices import Retry
from notif_worker.ports import NotifRepository, SmsSender, UnitOfWork
from petpro.errors import InvalidArgument, PermissionDenied

log = logging.getLogger("notif_worker.sms")

OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})


class SmsNotConfigured(InvalidArgument):
    reason = "SMS_NOT_CONFIGURED"


class WebhookSignatureInvalid(PermissionDenied):
    reason = "INVALID_SIGNATURE"


@dataclass(frozen=True)
class Text:
    """A claimed text: its exactly-once key, the number, the message (with its reference) and the lease
    its holder has (``claimed_at``, the fencing token).  ``first_claimed_at`` set (the sweep): whether
    it went since then is asked of the provider before it is sent."""

    key: uuid.UUID
    phone: str
    body: str
    claimed_at: datetime
    first_claimed_at: datetime | None = None


# what became of a claimed text: "sent" (or found sent), "opted_out", "refused" (for good); "unknown"
# (no answer in time: left "sending" to the sweep); "failed" (refused for now on every try: the
# sweep's); "busy" (its lease was taken over or it was settled meanwhile: not sent here)
Outcome = str


class SmsHandlers:
    """``uow``: units of work; ``repos``: every statement its own transaction (a claim and each lease
    renewal are committed before the provider is called).  ``lease``: how long after a send started
    the text may be taken over by the sweep; at least twice the provider call's timeout
    (``sender.timeout``), so that no send of a text whose lease ran out can still be on its way.
    ``retry``: tries and back-off of a send the provider refused for now."""

    def __init__(
        self,
        uow: UnitOfWork,
        repos: UnitOfWork,
        sender: SmsSender | None,
        *,
        owner_limit_per_hour: int = 5,
        monthly_cap: int = 1000,
        lease: timedelta = timedelta(seconds=60),
        webhook_url: str = "",
        retry: Retry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        timeout = getattr(sender, "timeout", None)
        if timeout is not None and lease < timedelta(seconds=2 * timeout):
            raise ValueError(
                f"the SMS lease ({lease.total_seconds():g} s) must be at least twice the provider's"
                f" timeout ({timeout:g} s): else a send still on its way looks abandoned and goes twice"
            )
        self.uow = uow
        self.repos = repos
        self.retry = retry or Retry()
        self.sender = sender
        self.owner_limit = owner_limit_per_hour
        self.lease = lease
        self.monthly_cap = monthly_cap
        self.webhook_url = webhook_url
        self.clock = clock

    # -- delivery ---------------------------------------------------------------------------------------
    async def claim(self, repo: NotifRepository, n: BookingNotice, suffix: str = "") -> Text | None:
        """Claim the event's text through ``repo`` where the clinic has SMS on and the owner a verified
        number; None when there is nothing to send (no SMS here, delivered before, over a limit, or
        another worker is on it)."""
        if self.sender is None or n.kind not in SMS_KINDS:
            return None
        setting = await repo.clinic_sms(n.clinic_id) or ClinicSms(monthly_cap=self.monthly_cap)
        if not setting.enabled:
            return None
        if n.category != "transactional" and not (await repo.preferences(n.owner_user_id)).wants(
            n.category, "sms"
        ):
            return None
        phone = await repo.sms_phone(n.owner_user_id)
        if phone is None or not phone.usable:
            return None
        key, now = sms_key(n, suffix), self.clock()
        body = with_ref(sms_text(n), key)
        claim = await repo.claim_sms(
            key,
            phone.phone,
            body,
            n.clinic_id,
            month=month_of(now),
            cap=setting.monthly_cap,
            owner_limit=self.owner_limit,
            since=now - timedelta(hours=1),
            now=now,
        )
        if claim in ("capped", "limited"):
            log.warning("text not sent: %s", claim, extra={"fields": {"booking_id": n.booking_id}})
        return Text(key, phone.phone, body, now) if claim == "send" else None

    async def send(self, t: Text, *, tries: int | None = None) -> Outcome:
        """Send a claimed text and record the outcome (see Outcome); up to ``tries`` tries (the retry
        policy's) while the provider refuses it for now.  Each try first renews the lease held by
        ``t``: when that fails the text is someone else's now and nothing is sent ("busy")."""
        assert self.sender is not None
        held, tries = t.claimed_at, tries or self.retry.attempts
        for attempt in range(tries):
            now = self.clock()
            async with self.repos() as repo:
                if not await repo.renew_sms_claim(t.key, t.phone, held, now):
                    return "busy"
            held = now
            try:
                sid = None
                if t.first_claimed_at is not None:
                    sid = await self.sender.sent_since(t.phone, t.body, t.first_claimed_at)
                if sid is None:
                    sid = await self.sender.send(t.phone, t.body)
            except PhoneOptedOut as exc:
                async with self.repos() as repo:
                    await repo.set_phone_opted_out(t.phone, True)
                    await repo.refuse_delivery(t.key, "sms", t.phone, str(exc)[:1000])
                return "opted_out"
            except MessageRefused as exc:
                async with self.repos() as repo:
                    await repo.refuse_delivery(t.key, "sms", t.phone, str(exc)[:1000])
                log.warning("text refused: %s", exc)
                return "refused"
            except SendOutcomeUnknown as exc:  # it may have gone: never again blind, the sweep asks
                async with self.repos() as repo:
                    await repo.sms_outcome_unknown(t.key, t.phone, str(exc)[:1000])
                log.warning("text's outcome unknown, left to the sweep: %s", exc)
                return "unknown"
            except Exception as exc:  # the provider answered and did not take it
                async with self.repos() as repo:
                    await repo.finish_delivery(t.key, "sms", t.phone, ok=False, error=str(exc)[:1000])
                if attempt + 1 == tries:
                    log.warning("text failed for now, left to the sweep: %s", exc)
                    return "failed"
                log.warning("text failed (try %d): %s", attempt + 1, exc)
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            async with self.repos() as repo:
                await repo.finish_delivery(t.key, "sms", t.phone, ok=True)
            return "sent"
        raise AssertionError("unreachable")

    async def deliver(self, n: BookingNotice, suffix: str = "") -> Outcome:
        """The event's text, at most once per key: claimed (committed), then sent.  Returns "skipped"
        when nothing was claimed, else what :meth:`send` returns."""
        if self.sender is None or n.kind not in SMS_KINDS:
            return "skipped"
        async with self.repos() as repo:
            t = await self.claim(repo, n, suffix)
        return await self.send(t) if t is not None else "skipped"

    async def resend_stale(self, limit: int = 20) -> int:
        """Texts whose last send started more than ``lease`` ago and that are not settled (the worker
        stopped, the outcome was unknown, or the provider refused them for now): each taken over (its
        lease renewed, so no one else sends it meanwhile), sent unless the provider has it already.
        Returns how many were taken."""
        if self.sender is None:
            return 0
        async with self.repos() as repo:
            stale = await repo.stale_texts(self.clock() - self.lease, limit)
        taken = 0
        for s in stale:
            t = Text(s.key, s.phone, s.body, s.claimed_at, s.first_claimed_at)
            outcome = await self.send(t, tries=1)
            if outcome != "busy":
                taken += 1
                log.warning(
                    "an unsettled text was taken over: %s", outcome, extra={"fields": {"key": str(s.key)}}
                )
        return taken

    # -- the owner's number -----------------------------------------------------------------------------
    async def start_verification(self, user_id: uuid.UUID, number: str, locale: str = "") -> SmsPhone:
        """Send a code to ``number`` (E.164); the owner's number is PENDING until it is confirmed."""
        phone = check_phone(number)
        if self.sender is None:
            raise SmsNotConfigured("text messages are not configured on this platform")
        code = new_code()
        async with self.uow() as repo:
            current = await repo.sms_phone(user_id)
            pending = start_verification(current, user_id, phone, code, self.clock())
            await repo.save_sms_phone(pending)
        try:
            await self.sender.send(phone, sms_code_text(code, locale))
        except SendOutcomeUnknown as exc:  # it may arrive; else the owner asks for another code
            log.warning("verification code's outcome unknown: %s", exc)
        except (PhoneOptedOut, MessageRefused) as exc:
            raise InvalidArgument.field(
                "phone_number", f"this number cannot receive texts ({exc})", "PHONE_NUMBER_UNREACHABLE"
            ) from exc
        return pending

    async def confirm_verification(self, user_id: uuid.UUID, code: str) -> SmsPhone:
        async with self.uow() as repo:
            current = await repo.sms_phone(user_id)
            after, ok = confirm_verification(current, code, self.clock())
            await repo.save_sms_phone(after)
        if not ok:
            raise CodeInvalid.field("code", "the code is wrong", "VERIFICATION_CODE_INVALID")
        return after

    async def phone(self, user_id: uuid.UUID) -> SmsPhone | None:
        async with self.repos() as repo:
            return await repo.sms_phone(user_id)

    # -- STOP -------------------------------------------------------------------------------------------
    async def inbound(self, params: dict[str, str], signature: str, url: str = "") -> str:
        """An incoming text (the provider's webhook, signed): STOP and its synonyms opt the sender's
        number out, START opts it back in.  Returns "opted_out", "opted_in" or "ignored"."""
        if self.sender is None or not self.sender.valid_webhook(url or self.webhook_url, params, signature):
            raise WebhookSignatureInvalid("the webhook's signature does not match")
        kind = params.get("OptOutType", "").upper()
        word = params.get("Body", "").strip().upper()
        sender = params.get("From", "")
        if kind == "STOP" or (not kind and word in OPT_OUT_WORDS):
            async with self.repos() as repo:
                await repo.set_phone_opted_out(sender, True)
            return "opted_out"
        if kind == "START" or (not kind and word in OPT_IN_WORDS):
            async with self.repos() as repo:
                await repo.set_phone_opted_out(sender, False)
            return "opted_in"
        return "ignored"

    # -- the clinic's setting ---------------------------------------------------------------------------
    async def clinic_setting(self, clinic_id: uuid.UUID) -> tuple[ClinicSms, int]:
        """The clinic's setting and the texts counted this month."""
        async with self.repos() as repo:
            s = await repo.clinic_sms(clinic_id) or ClinicSms(monthly_cap=self.monthly_cap)
            used = await repo.sms_used(clinic_id, month_of(self.clock()))
        return s, used

    async def set_clinic_setting(self, clinic_id: uuid.UUID, s: ClinicSms) -> tuple[ClinicSms, int]:
        if s.monthly_cap < 0 or s.monthly_cap > 1_000_000:
            raise InvalidArgument.field("monthly_cap", "must be between 0 and 1000000", "OUT_OF_RANGE")
        async with self.repos() as repo:
            await repo.set_clinic_sms(clinic_id, s)
        return await self.clinic_setting(clinic_id)
