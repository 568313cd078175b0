"""auth's mails, rendered here and sent through the kit's SMTP client (petpro.smtp) to ``AUTH``'s SMTP
URL: the staff invitation (sent while the inviter waits: a failed send is UNAVAILABLE, the invitation
is stored and inviting again replaces it) and the account mails (password reset, email verification,
email changed; queued and sent in the background)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from email.message import EmailMessage

from petpro.errors import Unavailable
from petpro.smtp import SmtpClient, SmtpError

log = logging.getLogger("auth_svc.mail")


class InvitationMailer:
    def __init__(self, smtp: SmtpClient, sender: str, accept_url: str) -> None:
        self.smtp = smtp
        self.sender = sender
        self.accept_url = accept_url

    def render(self, email: str, clinic_id: str, role: str, token: str, expires_at: datetime) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = "You are invited to a clinic on PetPro"
        msg["From"] = self.sender
        msg["To"] = email
        msg["X-PetPro-Clinic-Id"] = clinic_id
        msg.set_content(
            f"You have been invited to clinic {clinic_id} on PetPro as {role.lower()}.\n\n"
            f"Accept the invitation and choose your password:\n\n"
            f"  POST {self.accept_url}\n"
            f'  {{"token": "{token}", "password": "…", "name": "…"}}\n\n'
            f"The invitation can be used once and expires at {expires_at:%Y-%m-%d %H:%M} UTC.\n"
        )
        return msg

    async def send(self, email: str, clinic_id: str, role: str, token: str, expires_at: datetime) -> None:
        msg = self.render(email, clinic_id, role, token, expires_at)
        try:
            await self.smtp.send(msg, self.sender, [email], attributes={"petpro.clinic_id": clinic_id})
        except SmtpError as exc:
            # transient (the server is away) or permanent (it refused this address): either way the
            # invitation did not reach the person, and the caller is the one who can act on it
            refused = "" if exc.transient else f" (the mail server refused it: {exc.code})"
            raise Unavailable(f"the invitation email could not be sent{refused}; invite again") from exc


class AccountMailer:
    """The account mails (the AccountMail port): password reset, email verification, "your email was
    changed".  Posting renders the mail and queues it; ``run()`` (a background task of the server)
    sends the queue over the kit's SMTP client, so no answer waits for SMTP, and an answer to a reset
    request takes the same time whether or not a mail was queued.  A mail that cannot be sent is
    logged (the address and the kind, never the token) and dropped: the person asks again.  At most
    ``capacity`` mails wait; beyond that a mail is dropped and logged (SMTP is away for long)."""

    def __init__(self, smtp: SmtpClient, sender: str, base_url: str, *, capacity: int = 1000) -> None:
        self.smtp = smtp
        self.sender = sender
        self.base_url = base_url.rstrip("/")
        self.queue: asyncio.Queue[tuple[EmailMessage, str]] = asyncio.Queue(capacity)

    def _post(self, msg: EmailMessage, kind: str) -> None:
        msg["From"] = self.sender
        msg["X-PetPro-Mail"] = kind
        try:
            self.queue.put_nowait((msg, kind))
        except asyncio.QueueFull:
            log.error("account mail queue full; %s mail to %s dropped", kind, msg["To"])

    def password_reset(self, to: str, name: str, token: str, expires_at: datetime) -> None:
        msg = EmailMessage()
        msg["Subject"] = "Reset your PetPro password"
        msg["To"] = to
        msg.set_content(
            f"Hello {name},\n\n"
            "somebody (we hope you) asked to reset the password of your PetPro account. Choose a new\n"
            "password in the app with this code, or send it yourself:\n\n"
            f"  POST {self.base_url}/v1/auth/password-reset:confirm\n"
            f'  {{"email": "{to}", "token": "{token}", "new_password": "…"}}\n\n'
            f"The code works once, until {expires_at:%Y-%m-%d %H:%M} UTC. Setting a new password logs\n"
            "you out everywhere. If you did not ask for this, ignore this mail: your password stays.\n"
        )
        self._post(msg, "password-reset")

    def verify_email(self, to: str, name: str, token: str, expires_at: datetime) -> None:
        msg = EmailMessage()
        msg["Subject"] = "Confirm your email address for PetPro"
        msg["To"] = to
        msg.set_content(
            f"Hello {name},\n\n"
            "please confirm that this is your email address for PetPro:\n\n"
            f"  POST {self.base_url}/v1/auth/email:verify\n"
            f'  {{"token": "{token}"}}\n\n'
            f"The code works once, until {expires_at:%Y-%m-%d %H:%M} UTC.\n"
        )
        self._post(msg, "verify-email")

    def email_changed(self, old: str, new: str, name: str) -> None:
        msg = EmailMessage()
        msg["Subject"] = "Your PetPro email address was changed"
        msg["To"] = old
        msg.set_content(
            f"Hello {name},\n\n"
            f"the email address of your PetPro account was changed from {old} to {new}.\n"
            "If this was not you, reset your password (with your new address) or contact support.\n"
        )
        self._post(msg, "email-changed")

    def owner_invitation(
        self, to: str, name: str, clinic_name: str, token: str, expires_at: datetime
    ) -> None:
        clinic = clinic_name or "Your vet clinic"
        msg = EmailMessage()
        msg["Subject"] = f"{clinic} created your PetPro account"
        msg["To"] = to
        msg.set_content(
            f"Hello {name},\n\n"
            f"{clinic} booked an appointment for you on PetPro and created your account with this\n"
            "address. Claim it by choosing a password in the app with this code, or send it yourself:\n\n"
            f"  POST {self.base_url}/v1/auth/password-reset:confirm\n"
            f'  {{"email": "{to}", "token": "{token}", "new_password": "…"}}\n\n'
            f"The code works once, until {expires_at:%Y-%m-%d %H:%M} UTC (afterwards, ask for a password\n"
            "reset with this address). Then log in to see and manage your bookings.\n"
        )
        self._post(msg, "owner-invitation")

    async def _send(self, msg: EmailMessage, kind: str) -> None:
        to = str(msg["To"])
        try:
            await self.smtp.send(msg, self.sender, [to], attributes={"petpro.mail": kind})
        except SmtpError as exc:
            log.warning("%s mail to %s not sent: %s", kind, to, "transient" if exc.transient else exc.code)

    async def run(self) -> None:
        """Send queued mails, one at a time, for the life of the server."""
        while True:
            msg, kind = await self.queue.get()
            try:
                await self._send(msg, kind)
            finally:
                self.queue.task_done()

    async def drain(self, timeout: float = 5.0) -> None:
        """Send what is still queued (on shutdown, after the background task stopped)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.queue.empty():
                    msg, kind = self.queue.get_nowait()
                    await self._send(msg, kind)
