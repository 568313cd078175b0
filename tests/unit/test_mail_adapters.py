"""The two services' mail adapters on the kit's SMTP client (a recording stand-in here): what they
send, to whom, and what a refusal becomes (auth: UNAVAILABLE; notif: transient errors retried by the
use case, a permanent refusal MessageRefused, dead-lettered at once)."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest

from auth_svc.adapters.mail import InvitationMailer
from notif_worker.adapters.mail import SmtpMailer
from notif_worker.domain import BookingNotice, MessageRefused
from petpro.errors import Unavailable
from petpro.smtp import SmtpError, SmtpPermanentError, SmtpTransientError

AT = datetime(2030, 1, 7, 8, tzinfo=UTC)


class RecordingSmtp:
    """SmtpClient.send's signature; raises ``fail`` once if set."""

    def __init__(self, fail: SmtpError | None = None) -> None:
        self.sent: list[tuple[Message, str, list[str], dict[str, str]]] = []
        self.fail = fail

    async def send(
        self, message: Message, sender: str, recipients: list[str], *, attributes: dict[str, str]
    ) -> None:
        if self.fail is not None:
            fail, self.fail = self.fail, None
            raise fail
        self.sent.append((message, sender, list(recipients), attributes))


def booking() -> BookingNotice:
    return BookingNotice(
        event_id=uuid.uuid4(),
        occurred_at=AT,
        booking_id=str(uuid.uuid4()),
        clinic_id=uuid.uuid4(),
        clinic_name="Vet Mitte",
        clinic_time_zone="Europe/Berlin",
        service_name="Check-up",
        start=AT,
        end=AT + timedelta(minutes=30),
        pet_name="Rex",
        pet_species="SPECIES_DOG",
        owner_user_id=uuid.uuid4(),
        owner_email="o@example.test",
        owner_name="Olga",
        amount_minor=4500,
        currency="EUR",
    )


async def test_the_invitation_goes_to_the_invitee_with_its_token() -> None:
    smtp = RecordingSmtp()
    mailer = InvitationMailer(smtp, "PetPro <accounts@petpro.dev>", "https://edge/v1/invitations:accept")  # type: ignore[arg-type]
    await mailer.send("new@x.test", "clinic-1", "STAFF", "tok-123", AT)
    [(msg, sender, rcpt, attributes)] = smtp.sent
    assert (sender, rcpt, attributes) == (
        "PetPro <accounts@petpro.dev>",
        ["new@x.test"],
        {"petpro.clinic_id": "clinic-1"},
    )
    assert msg["To"] == "new@x.test" and "tok-123" in msg.get_payload()


@pytest.mark.parametrize(
    ("error", "detail"),
    [(SmtpTransientError("down"), "invite again"), (SmtpPermanentError("550 no", 550), "refused it: 550")],
)
async def test_an_invitation_that_was_not_sent_is_unavailable(error: SmtpError, detail: str) -> None:
    mailer = InvitationMailer(RecordingSmtp(error), "accounts@petpro.dev", "https://edge/accept")  # type: ignore[arg-type]
    with pytest.raises(Unavailable) as exc:
        await mailer.send("new@x.test", "clinic-1", "STAFF", "tok", AT)
    assert detail in str(exc.value)


async def test_the_booking_mail_goes_to_the_owner_with_the_events_ids() -> None:
    smtp = RecordingSmtp()
    n = booking()
    await SmtpMailer(smtp, "PetPro <bookings@petpro.dev>").send(n)  # type: ignore[arg-type]
    [(raw, sender, rcpt, attributes)] = smtp.sent
    assert (sender, rcpt) == ("PetPro <bookings@petpro.dev>", ["o@example.test"])
    assert attributes == {"petpro.booking_id": n.booking_id, "petpro.event_id": str(n.event_id)}
    msg = email.message_from_bytes(raw)  # sent serialised (render_bytes)
    assert msg["Message-ID"] == f"<{n.event_id}.booking-confirmed@petpro.dev>"


async def test_a_booking_mail_refused_for_good_is_message_refused_a_deferral_is_not() -> None:
    n = booking()
    with pytest.raises(MessageRefused):
        await SmtpMailer(RecordingSmtp(SmtpPermanentError("550 no such user", 550)), "b@petpro.dev").send(n)  # type: ignore[arg-type]
    with pytest.raises(SmtpTransientError):  # retried with back-off by NotifyHandlers
        await SmtpMailer(RecordingSmtp(SmtpTransientError("451 later", 451)), "b@petpro.dev").send(n)  # type: ignore[arg-type]


async def test_account_mails_are_queued_and_sent_in_the_background(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from auth_svc.adapters.mail import AccountMailer

    smtp = RecordingSmtp(fail=SmtpTransientError("451 try later", 451))
    mailer = AccountMailer(smtp, "PetPro <accounts@petpro.dev>", "https://api.petpro.test/")  # type: ignore[arg-type]
    mailer.password_reset("ana@example.test", "Ana", "tok-first-0123456789", AT)  # fails once: dropped
    mailer.password_reset("ana@example.test", "Ana", "tok-second-0123456789", AT)
    mailer.verify_email("ana@example.test", "Ana", "tok-verify-0123456789", AT)
    mailer.email_changed("old@example.test", "ana@example.test", "Ana")
    assert smtp.sent == []  # posting sends nothing while the caller waits
    runner = asyncio.create_task(mailer.run())
    await asyncio.wait_for(mailer.queue.join(), 5)
    runner.cancel()
    kinds = [(m["X-PetPro-Mail"], to, attrs["petpro.mail"]) for m, _, to, attrs in smtp.sent]
    assert kinds == [
        ("password-reset", ["ana@example.test"], "password-reset"),
        ("verify-email", ["ana@example.test"], "verify-email"),
        ("email-changed", ["old@example.test"], "email-changed"),
    ]
    reset, verify, changed = (m.get_content() for m, *_ in smtp.sent)
    assert (
        "https://api.petpro.test/v1/auth/password-reset:confirm" in reset and "tok-second-0123456789" in reset
    )
    assert "https://api.petpro.test/v1/auth/email:verify" in verify and "tok-verify-0123456789" in verify
    assert "old@example.test to ana@example.test" in changed
    assert "password-reset mail to ana@example.test not sent" in caplog.text
    assert "tok-" not in caplog.text  # a token is never logged


async def test_account_mails_left_in_the_queue_are_sent_on_shutdown() -> None:
    from auth_svc.adapters.mail import AccountMailer

    smtp = RecordingSmtp()
    mailer = AccountMailer(smtp, "PetPro <accounts@petpro.dev>", "http://edge")  # type: ignore[arg-type]
    mailer.verify_email("ana@example.test", "Ana", "tok-0123456789abcdef", AT)
    await mailer.drain()
    assert [to for _, _, to, _ in smtp.sent] == [["ana@example.test"]]
