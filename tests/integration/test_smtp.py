"""The kit's SMTP client against real SMTP servers: the dev stack's sink (aiosmtpd, messages read back
from its Maildir), and servers of the test's own (aiosmtpd) that refuse, authenticate, drop idle
connections or never answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from petpro.smtp import SmtpClient, SmtpPermanentError, SmtpTransientError
from petpro_dev.devstack import Stack
from petpro_dev.devstack.mail import list_messages

pytestmark = pytest.mark.integration


def message(to: str = "owner@example.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "PetPro <bookings@petpro.test>"
    msg["To"] = to
    msg["Subject"] = f"Booking confirmed {uuid.uuid4()}"
    msg.set_content("See you on Tuesday at 10:00 ✓")
    return msg


async def test_a_message_reaches_the_sink_with_its_envelope(devstack: Stack) -> None:
    client = SmtpClient(devstack.env()["SMTP_URL"], timeout=5)
    try:
        first, second = message(), message("other@example.test")
        await client.send(first, first["From"], ["owner@example.test"])
        await client.send(second, second["From"], ["other@example.test", "cc@example.test"])
    finally:
        await client.close()
    # delivered when the server answered 250: no waiting
    mails = {m.subject: m for m in list_messages(devstack.ctx.mail_dir)}
    one, two = mails[first["Subject"]], mails[second["Subject"]]
    assert (one.mail_from, one.rcpt_to) == ("bookings@petpro.test", ("owner@example.test",))
    assert two.rcpt_to == ("other@example.test", "cc@example.test")
    assert one.body().strip() == "See you on Tuesday at 10:00 ✓"


class Handler:
    """Refuses recipients by their local part: nobody@ for good (550), later@ for now (451)."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("later@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK: stored"


@pytest.fixture
async def smtp_server() -> AsyncIterator[Callable[..., Any]]:
    """``await serve(**smtp_options)`` → (url, handler, sessions): an aiosmtpd server on a free port."""
    servers: list[asyncio.Server] = []

    async def serve(**options: Any) -> tuple[str, Handler, list[SMTP]]:
        handler, sessions = Handler(), []

        def protocol() -> SMTP:
            proto = SMTP(handler, hostname="test-smtp", **options)
            sessions.append(proto)
            return proto

        server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"smtp://127.0.0.1:{port}", handler, sessions

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_refused_recipient_is_permanent_and_a_deferral_transient(smtp_server: Any) -> None:
    url, handler, _ = await smtp_server()
    client = SmtpClient(url, timeout=5)
    try:
        with pytest.raises(SmtpPermanentError) as refused:
            await client.send(message(), "bookings@petpro.test", ["nobody@example.test"])
        assert refused.value.code == 550 and not refused.value.transient
        with pytest.raises(SmtpTransientError) as deferred:
            await client.send(message(), "bookings@petpro.test", ["later@example.test"])
        assert deferred.value.code == 451 and deferred.value.transient
        await client.send(message(), "bookings@petpro.test", ["owner@example.test"])  # the client goes on
    finally:
        await client.close()
    assert [e.rcpt_tos for e in handler.received] == [["owner@example.test"]]


async def test_credentials_from_the_url_are_percent_decoded(smtp_server: Any) -> None:
    seen: list[tuple[str, str]] = []

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        seen.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password == b"p@ss:word", handled=False)

    url, handler, _ = await smtp_server(authenticator=authenticator, auth_require_tls=False)
    good = SmtpClient(url.replace("smtp://", "smtp://relay:p%40ss%3Aword@"), timeout=5)
    bad = SmtpClient(url.replace("smtp://", "smtp://relay:wrong@"), timeout=5)
    try:
        await good.send(message(), "bookings@petpro.test", ["owner@example.test"])
        with pytest.raises(SmtpPermanentError) as refused:
            await bad.send(message(), "bookings@petpro.test", ["owner@example.test"])
        assert refused.value.code == 535
    finally:
        await good.close()
        await bad.close()
    # (the client tries its next mechanism after a refusal: the wrong password may be seen twice)
    assert seen[0] == ("relay", "p@ss:word") and set(seen[1:]) == {("relay", "wrong")}
    assert len(handler.received) == 1


async def test_a_connection_the_server_dropped_is_replaced_once(smtp_server: Any) -> None:
    url, handler, sessions = await smtp_server()
    client = SmtpClient(url, timeout=5, connections=1)
    try:
        await client.send(message(), "bookings@petpro.test", ["owner@example.test"])
        [first] = sessions
        assert first.transport is not None
        first.transport.close()  # the server hangs up on the idle pooled connection
        await asyncio.sleep(0)
        await client.send(message(), "bookings@petpro.test", ["owner@example.test"])
    finally:
        await client.close()
    assert len(handler.received) == 2 and len(sessions) == 2  # one reconnection, no lost message


async def test_no_server_and_a_silent_server_are_transient() -> None:
    silent_clients: list[asyncio.StreamWriter] = []

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent_clients.append(writer)  # accepts the connection, never says 220

    silent = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    closed = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    try:
        for url in (f"smtp://127.0.0.1:{closed_port}", f"smtp://127.0.0.1:{port}"):
            client = SmtpClient(url, timeout=0.5)
            with pytest.raises(SmtpTransientError):
                await asyncio.wait_for(client.send(message(), "b@petpro.test", ["o@example.test"]), 10)
            await client.close()
    finally:
        for writer in silent_clients:
            writer.close()
        silent.close()
        await silent.wait_closed()
