"""Email: render the confirmation from templates and send it with a real SMTP client (aiosmtplib)."""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import format_datetime
from importlib import resources
from string import Template
from urllib.parse import urlsplit

import aiosmtplib

from notif_worker.domain import BookingNotice, format_money, when

_TEXT = Template(resources.files("notif_worker").joinpath("templates/booking_confirmed.txt").read_text())
_HTML = Template(resources.files("notif_worker").joinpath("templates/booking_confirmed.html").read_text())


def render(n: BookingNotice, sender: str) -> EmailMessage:
    fields = {
        "owner_name": n.owner_name or "there", "clinic_name": n.clinic_name, "service_name": n.service_name,
        "pet_name": n.pet_name, "when": when(n), "reference": n.reference,
        "amount": format_money(n.amount_minor, n.currency), "booking_id": n.booking_id,
    }
    msg = EmailMessage()
    msg["Subject"] = f"Booking confirmed: {n.service_name} for {n.pet_name} on {n.local_start:%d %b %Y %H:%M}"
    msg["From"] = sender
    msg["To"] = n.owner_email
    msg["Date"] = format_datetime(n.occurred_at)
    # stable per event: a re-send after a crash is recognisable as the same message
    msg["Message-ID"] = f"<{n.event_id}.booking-confirmed@petpro.dev>"
    msg["X-PetPro-Event-Id"] = str(n.event_id)
    msg["X-PetPro-Booking-Id"] = n.booking_id
    msg.set_content(_TEXT.substitute(fields))
    msg.add_alternative(_HTML.substitute({k: html.escape(v) for k, v in fields.items()}), subtype="html")
    return msg


class SmtpMailer:
    def __init__(self, smtp_url: str, sender: str, timeout: float = 10.0) -> None:
        u = urlsplit(smtp_url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (465 if u.scheme == "smtps" else 25)
        self.use_tls = u.scheme == "smtps"
        self.username = u.username
        self.password = u.password
        self.sender = sender
        self.timeout = timeout

    async def send(self, n: BookingNotice) -> None:
        await aiosmtplib.send(
            render(n, self.sender), hostname=self.host, port=self.port, use_tls=self.use_tls,
            username=self.username, password=self.password, timeout=self.timeout,
        )
