"""What payment fulfilment needs from PaymentService and BookingService, as Protocols raising
:class:`petpro.upstream.UpstreamError` (code kind, reason, domain); :mod:`edge.fulfilment.adapters`
implements them over gRPC, unit tests pass fakes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PaidPayment:
    """A succeeded payment and the order it pays for (the reservation's lock id)."""

    payment_id: str
    order_ref: str


@dataclass(frozen=True)
class VerifiedEvent:
    """A verified, recorded provider event and the payment it is about (after applying it)."""

    event_id: str
    event_type: str
    duplicate: bool = False
    payment_id: str = ""  # "" when the event is about no known payment
    order_ref: str = ""  # the reservation lock id the payment is for
    succeeded: bool = False

    @property
    def paid(self) -> PaidPayment | None:
        return PaidPayment(self.payment_id, self.order_ref) if self.payment_id and self.succeeded else None


class Payments(Protocol):
    async def verify(self, payload: bytes, signature: str) -> VerifiedEvent:
        """Verify the signature, record the event once, apply it to its payment."""
        ...

    async def settle(self, payment_id: str, booking_id: str) -> None:
        """Record the booking the payment fulfilled (idempotent per booking)."""
        ...

    async def settle_many(self, settlements: list[tuple[str, str]]) -> list[str]:
        """:meth:`settle` for many (payment id, booking id) pairs in one call; the payment ids not
        settled with the booking given (unknown, never paid, settled for another booking)."""
        ...

    async def refund(self, payment_id: str, request_id: str, reason: str) -> None:
        """Refund what is left of the payment (idempotent on ``request_id``)."""
        ...

    async def unsettled(self, older_than_seconds: int, limit: int) -> list[PaidPayment]:
        """Succeeded payments nobody settled nor refunded, unchanged for ``older_than_seconds``."""
        ...


class Bookings(Protocol):
    async def confirm(self, lock_id: str, payment_id: str) -> str:
        """Turn the hold into a booking (idempotent per lock and payment); returns the booking id."""
        ...
