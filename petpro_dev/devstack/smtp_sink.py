"""SMTP sink for the dev stack: accepts every message and keeps it in a Maildir.

``python -m petpro_dev.devstack.smtp_sink --port 7425 --maildir .petpro/mail``.  Each message is stored
as received, with the SMTP envelope prepended as ``X-MailFrom`` / ``X-RcptTo`` headers;
:mod:`petpro_dev.devstack.mail` reads them back.  SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import signal
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    def __init__(self, maildir: Path) -> None:
        self.mailbox = mailbox.Maildir(maildir, create=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        headers = f"X-MailFrom: {envelope.mail_from}\r\nX-RcptTo: {', '.join(envelope.rcpt_tos)}\r\n"
        raw = (headers.encode() + content).replace(b"\r\n", b"\n")
        self.mailbox.add(raw)  # written to tmp/, then renamed into new/: readers never see half a message
        return "250 OK: stored"


async def serve(host: str, port: int, maildir: Path) -> None:
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="petpro-smtp-sink", ident="PetPro SMTP sink"), host, port
    )
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    print(f"smtp sink on {host}:{port}, maildir {maildir}", flush=True)
    await stopped.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m petpro_dev.devstack.smtp_sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.maildir))


if __name__ == "__main__":
    main()
