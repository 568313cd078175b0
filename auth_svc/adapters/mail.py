"""The invitation email: rendered here, sent through the kit's SMTP client (petpro.smtp) to ``AUTH``'s
SMTP URL.  A failed send is UNAVAILABLE: the invitation is stored, and inviting again replaces it."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from petpro.errors import Unavailable
from petpro.smtp import SmtpClient, SmtpError


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
