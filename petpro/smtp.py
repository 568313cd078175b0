"""SMTP delivery, once for every service: the ``SMTP_URL`` parsed, a small pool of persistent
connections (aiosmtplib) with timeouts, a span per send, and the outcome classified as transient (try
again later) or permanent (this message will never go through as it is).

``smtp://[user:password@]host[:port]`` speaks plain SMTP (port 25) and upgrades with STARTTLS when the
server offers it; ``smtps://…`` is TLS from the first byte (port 465).  User and password are
percent-decoded, so a password may contain ``@`` or ``:`` written as ``%40`` / ``%3A``.  The services
render their own messages (auth_svc's invitation, notif_worker's booking mails) and hand them to
:meth:`SmtpClient.send`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr
from urllib.parse import unquote, urlsplit

import aiosmtplib
from opentelemetry.trace import SpanKind

from petpro import telemetry

SCHEMES = {"smtp": 25, "smtps": 465}


class SmtpError(Exception):
    """A message was not accepted by the SMTP server; ``transient`` says whether trying again later
    may succeed.  ``code`` is the server's reply code, when it gave one."""

    transient: bool = True

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class SmtpTransientError(SmtpError):
    """Try again later: the server is unreachable, dropped the connection, timed out, or answered 4xx."""

    transient = True


class SmtpPermanentError(SmtpError):
    """The server refused for good (5xx: unknown recipient, message rejected, wrong credentials, a
    required extension missing): sending the same message again will fail the same way."""

    transient = False


@dataclass(frozen=True)
class SmtpEndpoint:
    """Where and how to connect, from an ``smtp://`` or ``smtps://`` URL."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpEndpoint:
        u = urlsplit(url)
        if u.scheme not in SCHEMES:
            raise ValueError(f"SMTP URL must start with smtp:// or smtps://, not {u.scheme or '(none)'}://")
        try:
            port = u.port
        except ValueError as exc:  # a port out of range or not a number
            raise ValueError(f"SMTP URL has an invalid port: {exc}") from None
        return cls(
            host=u.hostname or "127.0.0.1",
            port=port or SCHEMES[u.scheme],
            implicit_tls=u.scheme == "smtps",
            username=unquote(u.username) if u.username else None,
            password=unquote(u.password) if u.password is not None else None,
        )


def envelope_address(sender: str) -> str:
    """``"PetPro <bookings@petpro.dev>"`` → ``bookings@petpro.dev`` (the SMTP envelope's MAIL FROM)."""
    return parseaddr(sender)[1] or sender


def classify(exc: BaseException) -> SmtpError:
    """An aiosmtplib or socket error as transient or permanent (RFC 5321: 4xx transient, 5xx permanent;
    no answer at all is transient)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SmtpError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        if codes and all(c >= 500 for c in codes):
            return SmtpPermanentError(text, min(codes))
        return SmtpTransientError(text, min(codes) if codes else None)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code >= 500:
            return SmtpPermanentError(text, exc.code)
        return SmtpTransientError(text, exc.code)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):  # e.g. AUTH or STARTTLS the URL asks for
        return SmtpPermanentError(text)
    return SmtpTransientError(text)  # disconnected, timed out, refused, reset: nothing was decided


class SmtpClient:
    """Sends over at most ``connections`` persistent SMTP connections, reconnecting once when the
    server dropped an idle one (a connection per message would cost a TCP handshake, EHLO and QUIT
    each).  Every network step is bounded by ``timeout`` seconds.  ``send`` raises
    :class:`SmtpTransientError` or :class:`SmtpPermanentError`, nothing else of SMTP's."""

    def __init__(self, url: str, *, timeout: float = 10.0, connections: int = 4) -> None:
        self.endpoint = SmtpEndpoint.parse(url)
        self.timeout = timeout
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(connections)

    async def _connect(self) -> aiosmtplib.SMTP:
        e = self.endpoint
        client = aiosmtplib.SMTP(
            hostname=e.host,
            port=e.port,
            use_tls=e.implicit_tls,
            username=e.username,
            password=e.password if e.username else None,
            timeout=self.timeout,
        )
        await client.connect()  # STARTTLS when offered (plain smtp://), then AUTH when a user is given
        return client

    async def send(
        self,
        message: Message | bytes,
        sender: str,
        recipients: Sequence[str],
        *,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Send ``message`` (rendered by the caller, or already serialised) from ``sender`` (a From header's value) to
        ``recipients``; ``attributes`` go on the CLIENT span ("smtp send") with the server's address."""
        span_attributes: dict[str, str | int] = {
            "server.address": self.endpoint.host,
            "server.port": self.endpoint.port,
            **(attributes or {}),
        }
        with telemetry.tracer().start_as_current_span(
            "smtp send", kind=SpanKind.CLIENT, attributes=span_attributes
        ):
            try:
                raw = message if isinstance(message, bytes) else message.as_bytes()
                await self._send(raw, envelope_address(sender), list(recipients))
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise classify(exc) from exc

    async def _send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        async with self._slots:
            client = self._idle.get_nowait() if not self._idle.empty() else None
            try:
                if client is None or not client.is_connected:
                    client = await self._connect()
                    await client.sendmail(sender, recipients, raw)
                else:
                    try:
                        await client.sendmail(sender, recipients, raw)
                    except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                        client.close()  # the server closed the idle connection: once more, fresh
                        client = await self._connect()
                        await client.sendmail(sender, recipients, raw)
            except BaseException:
                if client is not None:
                    client.close()  # whatever state the session is in, the next send starts a fresh one
                raise
            self._idle.put_nowait(client)

    async def close(self) -> None:
        """QUIT every idle connection (on shutdown)."""
        while not self._idle.empty():
            client = self._idle.get_nowait()
            with contextlib.suppress(Exception):
                await client.quit()
