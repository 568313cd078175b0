"""The SMS channel's rules: E.164 numbers, the owner's number proven by a code before use (a few codes
per hour, a few tries per code), opting out with STOP, what goes by text (changes and reminders, where
the clinic switched SMS on), a clinic's monthly cap and an owner's hourly limit, and the exactly-once
key of a text.  Pure Python."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from notif_worker.domain.notices import BookingNotice
from petpro.backoff import TooManyAttempts
from petpro.errors import FailedPrecondition, InvalidArgument

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# what goes by text: changes and reminders (a confirmation goes by email with its calendar entry)
SMS_KINDS = frozenset({"rescheduled", "cancelled", "reminder"})
CODE_TTL = timedelta(minutes=10)
CODE_TRIES = 5  # wrong codes before the code is spent
CODES_PER_HOUR = 3  # codes sent to an owner per hour
DEFAULT_MONTHLY_CAP = 1000
_KEYS = uuid.UUID("6f1d7f51-6a49-4c38-9a0e-3d1e1f0b5a52")

PhoneState = Literal["PENDING", "VERIFIED", "OPTED_OUT"]


class PhoneInvalid(InvalidArgument):
    reason = "PHONE_NUMBER_INVALID"


class CodeInvalid(InvalidArgument):
    reason = "VERIFICATION_CODE_INVALID"


class NoVerificationPending(FailedPrecondition):
    reason = "NO_VERIFICATION_PENDING"


def check_phone(number: str, field: str = "phone_number") -> str:
    """An E.164 number ("+4915112345678"); spaces, dashes and brackets are dropped first."""
    n = re.sub(r"[\s\-().]", "", number or "")
    if not E164.match(n):
        raise PhoneInvalid.field(
            field, "must be an E.164 phone number, e.g. +4915112345678", "PHONE_NUMBER_INVALID"
        )
    return n


def code_hash(user_id: uuid.UUID, phone: str, code: str) -> bytes:
    return hashlib.sha256(f"{user_id}:{phone}:{code}".encode()).digest()


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


@dataclass(frozen=True)
class SmsPhone:
    """An owner's number for texts: PENDING until the code sent to it is confirmed, then VERIFIED;
    OPTED_OUT once the owner replied STOP (or the provider says they did: Twilio 21610)."""

    user_id: uuid.UUID
    phone: str
    state: PhoneState
    code_hash: bytes = b""
    code_expires_at: datetime | None = None
    tries_left: int = CODE_TRIES
    codes_sent: int = 0  # in the hour since ``window_start``
    window_start: datetime | None = None
    verified_at: datetime | None = None

    @property
    def usable(self) -> bool:
        return self.state == "VERIFIED"


def start_verification(
    current: SmsPhone | None, user_id: uuid.UUID, phone: str, code: str, now: datetime
) -> SmsPhone:
    """A new code for ``phone`` (the owner's number becomes PENDING until confirmed); at most
    CODES_PER_HOUR codes per owner per hour (TooManyAttempts, 429 with Retry-After)."""
    sent, window = 0, now
    if current is not None and current.window_start and now - current.window_start < timedelta(hours=1):
        sent, window = current.codes_sent, current.window_start
    if sent >= CODES_PER_HOUR:
        raise TooManyAttempts(max(1, int((window + timedelta(hours=1) - now).total_seconds())))
    return SmsPhone(
        user_id,
        phone,
        "PENDING",
        code_hash(user_id, phone, code),
        now + CODE_TTL,
        CODE_TRIES,
        sent + 1,
        window,
    )


def confirm_verification(current: SmsPhone | None, code: str, now: datetime) -> tuple[SmsPhone, bool]:
    """(the number after this try, whether the code was right).  A wrong code uses a try; the last
    try, or an expired code, spends it (start again)."""
    if (
        current is None
        or current.state != "PENDING"
        or current.code_expires_at is None
        or current.code_expires_at <= now
        or current.tries_left <= 0
    ):
        raise NoVerificationPending("no verification code is pending for this number; start again")
    if hmac.compare_digest(current.code_hash, code_hash(current.user_id, current.phone, code.strip())):
        return replace(current, state="VERIFIED", code_hash=b"", code_expires_at=None, verified_at=now), True
    return replace(current, tries_left=current.tries_left - 1), False


@dataclass(frozen=True)
class ClinicSms:
    """A clinic's SMS setting: off until its admin switches it on; at most ``monthly_cap`` texts a
    calendar month (UTC)."""

    enabled: bool = False
    monthly_cap: int = DEFAULT_MONTHLY_CAP


def sms_key(n: BookingNotice, suffix: str = "") -> uuid.UUID:
    """The exactly-once key of a text, as email's and push's: (booking, version, kind, channel) —
    ``suffix`` tells a booking's reminders apart (their offset).  A redelivered event, a retried send
    and a reminder claimed again after a worker died all have the same key."""
    return uuid.uuid5(_KEYS, f"{n.booking_id}:{n.version}:{n.kind}:sms:{suffix}")


def sms_ref(key: uuid.UUID) -> str:
    """A text's reference (8 characters of its key), written at the end of its body: the provider keeps
    no id of ours with a message (Twilio's Messages API has no idempotency key and no metadata), so
    the body is what tells this text from any other to the number when the provider is asked whether
    it went (a booking's two reminders read the same, a move back to the same time too)."""
    return base64.b32encode(key.bytes).decode()[:8]


def with_ref(text: str, key: uuid.UUID) -> str:
    return f"{text} Ref {sms_ref(key)}"


def month_of(now: datetime) -> str:
    return f"{now:%Y-%m}"


# what claiming a text did: "send" (claimed: send it), "done" (delivered or given up before), "busy"
# (claimed before and not delivered: being sent, or its outcome unknown, or failed — the stale-text
# sweep's, which asks the provider before it sends, see StaleText),
# "capped" (the clinic's monthly cap is reached), "limited" (the owner's hourly limit is reached)
SmsClaim = Literal["send", "done", "busy", "capped", "limited"]


@dataclass(frozen=True)
class StaleText:
    """A text whose last send started (``claimed_at``, its lease) long enough ago that no send of it can
    still be on its way: whether it went is asked of the provider (back to ``first_claimed_at``)
    before it is sent again."""

    key: uuid.UUID
    phone: str
    body: str
    claimed_at: datetime
    first_claimed_at: datetime
