"""The invitation email, sent with a real SMTP client (aiosmtplib) to ``AUTH``'s SMTP URL."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from urllib.parse import urlsplit

import aiosmtplib

from petpro.errors import Unavailable


class InvitationMailer:
    def __init__(self, smtp_url: str, sender: str, accept_url: str, timeout: float = 10.0) -> None:
        u = urlsplit(smtp_url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (465 if u.scheme == "smtps" else 25)
        self.use_tls = u.scheme == "smtps"
        self.username, self.password = u.username, u.password
        self.sender = sender
        self.accept_url = accept_url
        self.timeout = timeout

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
            await aiosmtplib.send(
                msg,
                sender=parseaddr(self.sender)[1] or self.sender,
                recipients=[email],
                hostname=self.host,
                port=self.port,
                use_tls=self.use_tls,
                username=self.username,
                password=self.password,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise Unavailable("the invitation email could not be sent; invite again") from exc
