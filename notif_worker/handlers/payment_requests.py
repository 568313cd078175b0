"""Payment links of holds clinic staff made for owners (issue 20, staff operations): mailed once per hold
(a delivery claimed per lock id, channel "payment-link" and address), a failed send claimable again."""

from __future__ import annotations

from notif_worker.domain import MessageRefused, PaymentRequest
from notif_worker.ports import PaymentRequestMail, UnitOfWork
from petpro.errors import FailedPrecondition, Unavailable

CHANNEL = "payment-link"


class PaymentRequestHandlers:
    def __init__(self, repos: UnitOfWork, mailer: PaymentRequestMail | None) -> None:
        self.repos = repos
        self.mailer = mailer

    async def send(self, r: PaymentRequest) -> bool:
        """Mail the link unless this hold's mail went out already; False then.  A send that fails is
        recorded as failed (a retry sends it) and answered UNAVAILABLE (FAILED_PRECONDITION when the
        mail server refused the address for good)."""
        if self.mailer is None:
            raise Unavailable("no mail channel is configured for payment links")
        async with self.repos() as repo:
            if not await repo.claim_delivery(r.lock_id, CHANNEL, r.email):
                return False
        try:
            await self.mailer.send_payment_request(r)
        except MessageRefused as exc:
            await self._finish(r, ok=False, error=str(exc)[:500])
            raise FailedPrecondition(
                "the mail server refused the owner's address", reason="EMAIL_REFUSED"
            ) from exc
        except Exception as exc:
            await self._finish(r, ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
            raise Unavailable("the payment link could not be mailed; try again") from exc
        await self._finish(r, ok=True)
        return True

    async def _finish(self, r: PaymentRequest, *, ok: bool, error: str | None = None) -> None:
        async with self.repos() as repo:
            await repo.finish_delivery(r.lock_id, CHANNEL, r.email, ok=ok, error=error)
