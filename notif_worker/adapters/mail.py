"""Email: the booking mails rendered (the confirmation from templates, the lifecycle changes and
reminders from the domain's text) and sent through the kit's SMTP client (petpro.smtp)."""

from __future__ import annotations

import html
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from importlib import resources
from string import Template

from notif_worker.domain import BookingNotice, MessageRefused, change_mail, format_money, when
from petpro.smtp import SmtpClient, SmtpPermanentError

_TEXT = Template(
    resources.files("notif_worker.adapters").joinpath("templates/booking_confirmed.txt").read_text()
)
_HTML = Template(
    resources.files("notif_worker.adapters").joinpath("templates/booking_confirmed.html").read_text()
)


def render(n: BookingNotice, sender: str) -> MIMEMultipart:
    """The confirmation (or a lifecycle change) as multipart/alternative (text + HTML).  Built with the
    compat32 MIME classes: the default ``email.policy`` parses every header through its registry, which
    made rendering the most expensive step of a notification."""
    if n.kind != "created":
        return _render_change(n, sender)
    fields = {
        "owner_name": n.owner_name or "there",
        "clinic_name": n.clinic_name,
        "service_name": n.service_name,
        "pet_name": n.pet_name,
        "when": when(n),
        "reference": n.reference,
        "amount": format_money(n.amount_minor, n.currency),
        "booking_id": n.booking_id,
    }
    msg = MIMEMultipart("alternative")
    subject = f"Booking confirmed: {n.service_name} for {n.pet_name} on {n.local_start:%d %b %Y %H:%M}"
    # compat32 messages take a Header object for a non-ASCII value (typeshed allows only str)
    msg["Subject"] = Header(subject, "utf-8") if not subject.isascii() else subject  # type: ignore[assignment]
    msg["From"] = sender
    msg["To"] = n.owner_email
    msg["Date"] = format_datetime(n.occurred_at)
    # stable per event: a re-send after a crash is recognisable as the same message
    msg["Message-ID"] = f"<{n.event_id}.booking-confirmed@petpro.dev>"
    msg["X-PetPro-Event-Id"] = str(n.event_id)
    msg["X-PetPro-Booking-Id"] = n.booking_id
    msg.attach(MIMEText(_TEXT.substitute(fields), "plain", "utf-8"))
    msg.attach(MIMEText(_HTML.substitute({k: html.escape(v) for k, v in fields.items()}), "html", "utf-8"))
    return msg


def _render_change(n: BookingNotice, sender: str) -> MIMEMultipart:
    subject, text = change_mail(n)
    msg = MIMEMultipart("alternative")
    msg["Subject"] = Header(subject, "utf-8") if not subject.isascii() else subject  # type: ignore[assignment]
    msg["From"] = sender
    msg["To"] = n.owner_email
    msg["Date"] = format_datetime(n.occurred_at)
    msg["Message-ID"] = f"<{n.event_id}.booking-{n.kind.replace('_', '-')}@petpro.dev>"
    msg["X-PetPro-Event-Id"] = str(n.event_id)
    msg["X-PetPro-Booking-Id"] = n.booking_id
    msg.attach(MIMEText(text, "plain", "utf-8"))
    msg.attach(MIMEText("<pre>" + html.escape(text) + "</pre>", "html", "utf-8"))
    return msg


class SmtpMailer:
    """The Mailer port on the kit's SMTP client: renders the notice, sends it to the owner.  A message
    the server refused for good (5xx) is MessageRefused: the event is dead-lettered without retries."""

    def __init__(self, smtp: SmtpClient, sender: str) -> None:
        self.smtp = smtp
        self.sender = sender

    async def send(self, n: BookingNotice) -> None:
        try:
            await self.smtp.send(
                render(n, self.sender),
                self.sender,
                [n.owner_email],
                attributes={"petpro.booking_id": n.booking_id, "petpro.event_id": str(n.event_id)},
            )
        except SmtpPermanentError as exc:
            raise MessageRefused(str(exc)) from exc
