"""Reading the SMTP sink's Maildir: what ``petpro mail`` shows and what tests assert on."""

from __future__ import annotations

import email
import email.policy
import mailbox
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path


@dataclass(frozen=True)
class MailMessage:
    key: str  # Maildir key
    received: datetime  # when the sink stored it (UTC)
    mail_from: str  # SMTP envelope sender
    rcpt_to: tuple[str, ...]  # SMTP envelope recipients
    message: EmailMessage  # the parsed message (headers decoded)

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def from_(self) -> str:
        return str(self.message.get("From", "")) or self.mail_from

    @property
    def to(self) -> str:
        return str(self.message.get("To", "")) or ", ".join(self.rcpt_to)

    def body(self) -> str:
        """The text/plain body (or the HTML one if there is no plain part)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""


def list_messages(maildir: str | Path) -> list[MailMessage]:
    """Every message in the Maildir, oldest first (``petpro mail`` numbers them from 1)."""
    path = Path(maildir)
    if not (path / "new").is_dir():
        return []
    box = mailbox.Maildir(path, create=False)
    out: list[MailMessage] = []
    for key in box.iterkeys():
        try:
            delivered = box.get_message(key).get_date()
            raw = box.get_bytes(key)
        except KeyError:
            continue  # removed meanwhile
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        rcpt = tuple(r.strip() for r in str(msg.get("X-RcptTo", "")).split(",") if r.strip())
        out.append(
            MailMessage(
                key=key,
                received=datetime.fromtimestamp(delivered, UTC),
                mail_from=str(msg.get("X-MailFrom", "")),
                rcpt_to=rcpt,
                message=msg,
            )
        )
    out.sort(key=lambda m: (m.received, m.key))
    return out


def wait_for_message(
    maildir: str | Path,
    predicate: Callable[[MailMessage], bool],
    *,
    timeout: float = 10.0,
) -> MailMessage:
    """The first message matching ``predicate``, waiting up to ``timeout`` seconds for it to arrive
    (for tests of code that sends mail asynchronously, e.g. the notification worker)."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        for msg in list_messages(maildir):
            if predicate(msg):
                return msg
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no matching message in {maildir} after {timeout}s")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
