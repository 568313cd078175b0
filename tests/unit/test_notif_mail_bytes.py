"""The booking email as sent (``render_bytes``, serialised directly) is the email the MIME classes make
(``render``): parsed, every header (unfolded, decoded) and every part (its type, parameters, encoding
and decoded content) equal, for each kind, in English and in German (encoded-words), with a provider
and rooms, and a value that would have broken a header (a newline in a pet's name)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest

from notif_worker.adapters.mail import render, render_bytes
from notif_worker.domain import BookingNotice
from tests.unit.fakes.notif import booking_notice

SENDER = "PetPro <bookings@petpro.dev>"
START = datetime(2027, 3, 29, 8, 0, tzinfo=UTC)


def notice(**changes: object) -> BookingNotice:
    return booking_notice(START, **{"occurred_at": datetime(2027, 3, 1, 12, tzinfo=UTC), **changes})


def parsed(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def shape(msg: Message) -> list[object]:
    """Headers (decoded, unfolded; the MIME classes fold a long Message-ID onto its own line, which
    leaves a leading space in its value) and each part's type, parameters, encoding and decoded
    content."""
    out: list[object] = [sorted((k, str(v).strip()) for k, v in msg.items())]
    for part in msg.walk():
        out.append(
            (
                part.get_content_type(),
                sorted(part.get_params() or []),
                part.get("Content-Transfer-Encoding"),
                None if part.is_multipart() else part.get_payload(decode=True),
            )
        )
    return out


CASES = {
    "confirmed": notice(),
    "confirmed, German, long subject": notice(
        owner_locale="de", service_name="Zahnreinigung für große Hunde mit Narkose", pet_name="Bärbel"
    ),
    "with provider and room": notice(
        provider_id="p1", provider_name="Dr Weber", resources=(("r1", "Dental room", "ROOM"),)
    ),
    "cancelled, French": notice(kind="cancelled", version=2, owner_locale="fr", refund_minor=4550),
    "rescheduled": notice(kind="rescheduled", version=2, previous_start=START - timedelta(days=1)),
    "completed (no calendar part)": notice(kind="completed", version=3),
    "anonymous owner": notice(owner_name=""),
}


@pytest.mark.parametrize("n", CASES.values(), ids=list(CASES))
def test_the_serialised_email_is_the_mime_classes_email(n: BookingNotice) -> None:
    raw = render_bytes(n, SENDER, "https://app.petpro.dev/bookings")
    assert shape(parsed(raw)) == shape(
        parsed(render(n, SENDER, "https://app.petpro.dev/bookings").as_bytes())
    )
    assert all(len(line) <= 998 for line in raw.splitlines())  # RFC 5322's hard limit
    assert raw.isascii()


def test_a_line_break_in_a_value_cannot_add_a_header() -> None:
    raw = render_bytes(notice(pet_name="Rex\r\nBcc: someone@evil.test"), SENDER)
    msg = parsed(raw)
    assert msg["Bcc"] is None
    assert "Rex Bcc: someone@evil.test" in str(msg["Subject"]).replace("  ", " ")
