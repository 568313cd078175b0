"""Email: render the confirmation from templates and send it with a real SMTP client (aiosmtplib)."""

from __future__ import annotations

import asyncio
import contextlib
import html
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, parseaddr
from importlib import resources
from string import Template
from urllib.parse import urlsplit

import aiosmtplib
from opentelemetry.trace import SpanKind

from notif_worker.domain import BookingNotice, change_mail, format_money, when
from petpro import telemetry

_TEXT = Template(resources.files("notif_worker").joinpath("templates/booking_confirmed.txt").read_text())
_HTML = Template(resources.files("notif_worker").joinpath("templates/booking_confirmed.html").read_text())


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
    """Sends over a small pool of persistent SMTP connections (aiosmtplib), reconnecting when the
    server dropped one: a connection per message would cost a TCP handshake, EHLO and QUIT each."""

    def __init__(self, smtp_url: str, sender: str, timeout: float = 10.0, connections: int = 4) -> None:
        u = urlsplit(smtp_url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (465 if u.scheme == "smtps" else 25)
        self.use_tls = u.scheme == "smtps"
        self.username = u.username
        self.password = u.password
        self.sender = sender
        self.sender_address = parseaddr(sender)[1] or sender
        self.timeout = timeout
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(connections)

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, use_tls=self.use_tls, timeout=self.timeout
        )
        await client.connect()
        if self.username:
            await client.login(self.username, self.password or "")
        return client

    async def send(self, n: BookingNotice) -> None:
        with telemetry.tracer().start_as_current_span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={
                "server.address": self.host,
                "server.port": self.port,
                "petpro.booking_id": n.booking_id,
                "petpro.event_id": str(n.event_id),
            },
        ):
            await self._send(n)

    async def _send(self, n: BookingNotice) -> None:
        message = render(n, self.sender)
        raw, recipients = message.as_bytes(), [n.owner_email]
        async with self._slots:
            client = self._idle.get_nowait() if not self._idle.empty() else None
            try:
                if client is None or not client.is_connected:
                    client = await self._connect()
                try:
                    await client.sendmail(self.sender_address, recipients, raw)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                    client = await self._connect()  # the server closed an idle connection: once more
                    await client.sendmail(self.sender_address, recipients, raw)
            except BaseException:
                if client is not None:
                    client.close()
                raise
            self._idle.put_nowait(client)

    async def close(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            with contextlib.suppress(Exception):
                await client.quit()
