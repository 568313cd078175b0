"""Email: a booking mail laid out from its words (the domain's MailContent, in the owner's language)
as text and HTML (templates/booking.txt, templates/booking.html), with the calendar invitation of a
confirmation, a move or a cancellation as a text/calendar part (adapters/calendar.py), sent through the
kit's SMTP client (petpro.smtp)."""

from __future__ import annotations

import base64
import html
from email.message import EmailMessage
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from importlib import resources
from string import Template

from notif_worker.adapters.calendar import invitation
from notif_worker.domain import BookingNotice, MailContent, MessageRefused, PaymentRequest, mail_content
from petpro.smtp import SmtpClient, SmtpPermanentError

_TEMPLATES = resources.files("notif_worker.adapters").joinpath("templates")
_TEXT = Template(_TEMPLATES.joinpath("booking.txt").read_text())
_HTML = Template(_TEMPLATES.joinpath("booking.html").read_text())
# the kinds whose email carries the calendar event (RFC 5546 REQUEST, or CANCEL)
CALENDAR_KINDS = frozenset({"created", "rescheduled", "cancelled"})
_ROW = '<tr><td style="padding:4px 12px 4px 0;color:#52606d">{}</td><td>{}</td></tr>'


def _text(c: MailContent) -> str:
    width = max(len(label) for label, _ in c.rows) + 2
    rows = "".join(f"  {label + ':':<{width}}{value}\n" for label, value in c.rows)
    notes = "".join(f"{p}\n" for p in c.notes)
    footer = ("\n" + "\n".join(c.footer) + "\n") if c.footer else ""
    return _TEXT.substitute(hello=c.hello, intro=c.intro, rows=rows, notes=notes, footer=footer)


def _html(c: MailContent) -> str:
    e = html.escape
    return _HTML.substitute(
        lang=e(c.locale),
        subject=e(c.subject),
        hello=e(c.hello),
        intro=e(c.intro),
        rows="\n".join(_ROW.format(e(label), e(value)) for label, value in c.rows),
        notes="\n".join(f"<p>{e(p)}</p>" for p in c.notes),
        footer=f"<p>{'<br>'.join(e(line) for line in c.footer)}</p>" if c.footer else "",
    )


def encoded_word(text: str) -> str:
    """A header value: as is when ASCII, else RFC 2047 base64 encoded-words of whole UTF-8 characters
    (what ``email.header.Header`` makes, without its costly choice between encodings per line)."""
    text = text.replace("\u202f", " ").replace("\xa0", " ")  # CLDR's narrow and no-break spaces
    if text.isascii():
        return text
    words, chunk = [], b""
    for char in text:
        encoded = char.encode()
        if len(chunk) + len(encoded) > 36:  # 48 base64 characters: "Subject: " and a word fit a line
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return " ".join(f"=?utf-8?b?{base64.b64encode(w).decode()}?=" for w in words)


def _calendar_part(method: str, ics: bytes) -> MIMEBase:
    part = MIMEBase("text", "calendar", method=method, charset="utf-8")
    part["Content-Transfer-Encoding"] = "base64"  # long folded lines survive every relay
    part.set_payload(base64.encodebytes(ics).decode())
    return part


def render(n: BookingNotice, sender: str, link_base: str = "") -> MIMEMultipart:
    """The booking email as multipart/alternative: text, HTML and, for a confirmation, a move or a
    cancellation, the calendar event (text/calendar; method=REQUEST or CANCEL: mail clients offer it
    as an invitation that updates the same event).  Built with the compat32 MIME classes: the default
    ``email.policy`` parses every header through its registry, which made rendering the most expensive
    step of a notification."""
    c = mail_content(n)
    # a boundary of our own: the generator's random one is checked against the body with a regular
    # expression compiled per message
    msg = MIMEMultipart("alternative", boundary=f"==petpro-{n.event_id.hex}==")
    msg["Subject"] = encoded_word(c.subject)
    msg["From"] = sender
    msg["To"] = n.owner_email
    msg["Date"] = format_datetime(n.occurred_at)
    # stable per event: a re-send after a crash is recognisable as the same message
    kind = "confirmed" if n.kind == "created" else n.kind.replace("_", "-")
    msg["Message-ID"] = f"<{n.event_id}.booking-{kind}@petpro.dev>"
    msg["Content-Language"] = c.locale
    msg["X-PetPro-Event-Id"] = str(n.event_id)
    msg["X-PetPro-Booking-Id"] = n.booking_id
    msg.attach(MIMEText(_text(c), "plain", "utf-8"))
    msg.attach(MIMEText(_html(c), "html", "utf-8"))
    if n.kind in CALENDAR_KINDS:
        msg.attach(_calendar_part(*invitation(n, sender, link_base)))
    return msg


def _header(name: str, value: str) -> str:
    """One header line as RFC 5322 wants it: ASCII (RFC 2047 encoded-words otherwise), no CR or LF of
    the value's own (no header injection through a pet's name), folded at spaces before 78 columns
    where a space allows it (a single longer word stays whole: 998 is the hard limit)."""
    value = value.replace("\r", " ").replace("\n", " ")
    if not value.isascii():
        value = encoded_word(value)
    first, *words = value.split(" ")
    lines = [f"{name}: {first}"]
    for word in words:
        if word and len(lines[-1]) + 1 + len(word) > 78:
            lines.append(f" {word}")  # unfolding (the line break removed) gives back the space
        else:
            lines[-1] += f" {word}"
    return "\n".join(lines) + "\n"


def _part(content_type: str, body: bytes) -> str:
    """A body part in base64 (76-column lines), as ``MIMEText``/``MIMEBase`` with utf-8 make it."""
    return (
        f"Content-Type: {content_type}\nMIME-Version: 1.0\nContent-Transfer-Encoding: base64\n\n"
        f"{base64.encodebytes(body).decode('ascii')}"
    )


def render_bytes(n: BookingNotice, sender: str, link_base: str = "") -> bytes:
    """The booking email of :func:`render`, serialised: the same headers, parts and encodings written
    out directly.  The email package's generator (its header folding through ``email.header``, the
    MIME classes' header bookkeeping) cost more than the words and the calendar event together
    (py-spy of notif_worker in the full flow: ``as_bytes`` 9 % of its samples, the MIME classes 3 %);
    ``tests/unit/test_notif_mail_bytes.py`` holds the two equal, parsed, header by header and part by
    part."""
    c = mail_content(n)
    boundary = f"==petpro-{n.event_id.hex}=="
    kind = "confirmed" if n.kind == "created" else n.kind.replace("_", "-")
    head = "".join(
        (
            f'Content-Type: multipart/alternative;\n boundary="{boundary}"\n',
            "MIME-Version: 1.0\n",
            _header("Subject", encoded_word(c.subject)),
            _header("From", sender),
            _header("To", n.owner_email),
            _header("Date", format_datetime(n.occurred_at)),
            _header("Message-ID", f"<{n.event_id}.booking-{kind}@petpro.dev>"),
            _header("Content-Language", c.locale),
            _header("X-PetPro-Event-Id", str(n.event_id)),
            _header("X-PetPro-Booking-Id", n.booking_id),
        )
    )
    parts = [
        _part('text/plain; charset="utf-8"', _text(c).encode()),
        _part('text/html; charset="utf-8"', _html(c).encode()),
    ]
    if n.kind in CALENDAR_KINDS:
        method, ics = invitation(n, sender, link_base)
        parts.append(_part(f'text/calendar; method="{method}"; charset="utf-8"', ics))
    body = "".join(f"\n--{boundary}\n{part}" for part in parts)
    return f"{head}{body}\n--{boundary}--\n".encode("ascii")


class SmtpMailer:
    """The Mailer port on the kit's SMTP client: renders the notice, sends it to the owner.  A message
    the server refused for good (5xx) is MessageRefused: the event is dead-lettered without retries."""

    def __init__(self, smtp: SmtpClient, sender: str, link_base: str = "") -> None:
        self.smtp = smtp
        self.sender = sender
        self.link_base = link_base

    async def send(self, n: BookingNotice) -> None:
        try:
            await self.smtp.send(
                render_bytes(n, self.sender, self.link_base),
                self.sender,
                [n.owner_email],
                attributes={"petpro.booking_id": n.booking_id, "petpro.event_id": str(n.event_id)},
            )
        except SmtpPermanentError as exc:
            raise MessageRefused(str(exc)) from exc

    async def send_payment_request(self, r: PaymentRequest) -> None:
        """The payment link of a hold staff made for the owner (plain text, English)."""
        msg = EmailMessage()
        msg["Subject"] = f"Pay for your appointment: {r.service_name}"
        msg["From"] = self.sender
        msg["To"] = r.email
        msg["Message-ID"] = f"<{r.lock_id}.payment-link@petpro.dev>"
        msg["X-PetPro-Mail"] = "payment-link"
        msg["X-PetPro-Lock-Id"] = str(r.lock_id)
        msg.set_content(
            f"Hello {r.name},\n\n"
            f"your clinic booked {r.service_name} for you on {r.start:%Y-%m-%d at %H:%M} UTC.\n"
            f"Please pay {r.amount} here to confirm it:\n\n"
            f"  {r.payment_url}\n\n"
            f"The slot is held for you until {r.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        )
        try:
            await self.smtp.send(msg, self.sender, [r.email], attributes={"petpro.lock_id": str(r.lock_id)})
        except SmtpPermanentError as exc:
            raise MessageRefused(str(exc)) from exc
