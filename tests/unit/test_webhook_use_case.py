"""The payment-webhook use case (verify → confirm → refund if lost) with hand-written fakes of its
ports, and the HTTP route's answer for each outcome (what the provider retries and what not)."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest

from edge.bff.webhook import REFUND_REASON_TEXT, HandleWebhook, Outcome, VerifiedEvent
from edge.web.app import create_app
from edge.web.deps import HttpDeps
from petpro.errors import Kind
from petpro.upstream import UpstreamError

SIGNATURE = "t=1,v1=good"


def _error(kind: Kind, reason: str, domain: str = "booking.petpro.dev") -> UpstreamError:
    return UpstreamError(f"test {reason.lower()}", kind, domain=domain, reason=reason)


@dataclass
class FakePayments:
    """PaymentService as the use case sees it: verifies one signature, records events once."""

    events: dict[str, VerifiedEvent] = field(default_factory=dict)  # payload → event
    seen: set[str] = field(default_factory=set)
    refunds: list[tuple[str, str]] = field(default_factory=list)
    verify_error: UpstreamError | None = None
    refund_error: UpstreamError | None = None

    def paid(
        self,
        payload: bytes,
        *,
        payment_id: str = "pay-1",
        lock_id: str = "lock-1",
        succeeded: bool = True,
        event_type: str = "checkout.session.completed",
    ) -> bytes:
        self.events[payload.decode()] = VerifiedEvent(
            event_id=f"evt-{payload.decode()}",
            event_type=event_type,
            payment_id=payment_id,
            order_ref=lock_id,
            succeeded=succeeded,
        )
        return payload

    async def verify(self, payload: bytes, signature: str) -> VerifiedEvent:
        if self.verify_error is not None:
            raise self.verify_error
        if signature != SIGNATURE:
            raise _error(Kind.INVALID_ARGUMENT, "INVALID_SIGNATURE", "payment.petpro.dev")
        event = self.events[payload.decode()]
        duplicate = event.event_id in self.seen
        self.seen.add(event.event_id)
        return VerifiedEvent(**{**event.__dict__, "duplicate": duplicate})

    async def refund(self, payment_id: str, reason: str) -> None:
        if self.refund_error is not None:
            raise self.refund_error
        self.refunds.append((payment_id, reason))


@dataclass
class FakeBookings:
    """BookingService's ConfirmBooking: idempotent per lock; a lock can be lost or the service down."""

    booked: dict[str, str] = field(default_factory=dict)  # lock → booking id
    lost: set[str] = field(default_factory=set)
    down: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def confirm(self, lock_id: str, payment_id: str) -> str:
        self.calls.append((lock_id, payment_id))
        if self.down:
            raise _error(Kind.UNAVAILABLE, "UNAVAILABLE")
        if lock_id in self.lost:
            raise _error(Kind.FAILED_PRECONDITION, "SLOT_NO_LONGER_AVAILABLE")
        return self.booked.setdefault(lock_id, f"booking-{len(self.booked) + 1}")


@pytest.fixture
def payments() -> FakePayments:
    return FakePayments()


@pytest.fixture
def bookings() -> FakeBookings:
    return FakeBookings()


@pytest.fixture
def handle(payments, bookings) -> HandleWebhook:
    return HandleWebhook(payments, bookings)


async def test_verified_payment_confirms_the_booking(handle, payments, bookings) -> None:
    result = await handle(payments.paid(b"a", payment_id="pay-a", lock_id="lock-a"), SIGNATURE)
    assert result.outcome is Outcome.CONFIRMED
    assert result.booking_id == bookings.booked["lock-a"]
    assert bookings.calls == [("lock-a", "pay-a")]
    assert payments.refunds == []


async def test_replay_confirms_again_and_returns_the_same_booking(handle, payments, bookings) -> None:
    payload = payments.paid(b"a")
    first = await handle(payload, SIGNATURE)
    replay = await handle(payload, SIGNATURE)
    assert replay.outcome is Outcome.CONFIRMED and replay.event is not None and replay.event.duplicate
    assert replay.booking_id == first.booking_id
    assert len(bookings.booked) == 1


async def test_replay_after_a_failed_confirmation_still_books(handle, payments, bookings) -> None:
    payload = payments.paid(b"a")
    bookings.down = True
    assert (await handle(payload, SIGNATURE)).outcome is Outcome.RETRY
    bookings.down = False
    result = await handle(payload, SIGNATURE)  # the provider's retry: a duplicate event id
    assert result.outcome is Outcome.CONFIRMED and result.event is not None and result.event.duplicate


async def test_late_payment_for_a_lost_slot_is_refunded(handle, payments, bookings) -> None:
    bookings.lost.add("lock-1")
    result = await handle(payments.paid(b"a", payment_id="pay-1"), SIGNATURE)
    assert result.outcome is Outcome.REFUNDED
    assert payments.refunds == [("pay-1", REFUND_REASON_TEXT)]
    assert bookings.booked == {}


async def test_confirm_unavailable_is_retried_not_refunded(handle, payments, bookings) -> None:
    bookings.down = True
    result = await handle(payments.paid(b"a"), SIGNATURE)
    assert result.outcome is Outcome.RETRY and result.step == "confirm"
    assert result.error is not None and result.error.kind is Kind.UNAVAILABLE
    assert payments.refunds == []


async def test_failed_refund_is_retried(handle, payments, bookings) -> None:
    bookings.lost.add("lock-1")
    payments.refund_error = _error(Kind.UNAVAILABLE, "STRIPE_UNAVAILABLE", "payment.petpro.dev")
    result = await handle(payments.paid(b"a"), SIGNATURE)
    assert result.outcome is Outcome.RETRY and result.step == "refund"
    payments.refund_error = None
    assert (await handle(payments.paid(b"a"), SIGNATURE)).outcome is Outcome.REFUNDED


async def test_bad_signature_is_rejected_and_nothing_happens(handle, payments, bookings) -> None:
    result = await handle(payments.paid(b"a"), "t=1,v1=forged")
    assert result.outcome is Outcome.REJECTED and result.error is not None
    assert result.error.reason == "INVALID_SIGNATURE"
    assert bookings.calls == [] and payments.refunds == []


async def test_unpaid_or_unknown_payment_is_ignored(handle, payments, bookings) -> None:
    assert (await handle(payments.paid(b"a", succeeded=False), SIGNATURE)).outcome is Outcome.IGNORED
    assert (await handle(payments.paid(b"b", payment_id=""), SIGNATURE)).outcome is Outcome.IGNORED
    assert bookings.calls == []


async def test_the_payment_intent_event_is_recorded_and_only_the_checkout_event_confirms(
    handle, payments, bookings
) -> None:
    """Stripe sends both events for one paid Checkout: the booking is confirmed once, on the session's."""
    intent = await handle(payments.paid(b"pi", event_type="payment_intent.succeeded"), SIGNATURE)
    assert intent.outcome is Outcome.RECORDED and "evt-pi" in payments.seen and bookings.calls == []
    completed = await handle(payments.paid(b"cs"), SIGNATURE)
    assert completed.outcome is Outcome.CONFIRMED and bookings.calls == [("lock-1", "pay-1")]


async def test_payment_service_down_is_retried(handle, payments) -> None:
    payments.verify_error = _error(Kind.UNAVAILABLE, "UNAVAILABLE", "payment.petpro.dev")
    result = await handle(payments.paid(b"a"), SIGNATURE)
    assert result.outcome is Outcome.RETRY and result.step == "verify"


# --------------------------------------------------------------------------------------------------
# the HTTP route
# --------------------------------------------------------------------------------------------------


@pytest.fixture
async def client(handle):
    deps = HttpDeps(payment=None, booking=None, webhook=handle)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as c:
        yield c


async def _post(client: httpx.AsyncClient, payload: bytes, signature: str = SIGNATURE) -> httpx.Response:
    return await client.post("/webhooks/stripe", content=payload, headers={"stripe-signature": signature})


async def test_route_answers_200_with_the_booking(client, payments, bookings) -> None:
    resp = await _post(client, payments.paid(b"a", payment_id="pay-a"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["outcome"] == "confirmed" and body["booking_id"] == bookings.booked["lock-1"]
    assert body["payment_id"] == "pay-a" and body["duplicate"] is False


async def test_route_answers_503_when_confirm_is_unavailable_so_the_provider_retries(
    client, payments, bookings
) -> None:
    bookings.down = True
    resp = await _post(client, payments.paid(b"a"))
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["reason"] == "UNAVAILABLE" and "confirmed" in resp.json()["detail"]


async def test_route_answers_503_when_the_refund_fails(client, payments, bookings) -> None:
    bookings.lost.add("lock-1")
    payments.refund_error = _error(Kind.UNAVAILABLE, "STRIPE_UNAVAILABLE", "payment.petpro.dev")
    resp = await _post(client, payments.paid(b"a"))
    assert resp.status_code == 503
    assert resp.json()["reason"] == "STRIPE_UNAVAILABLE" and resp.json()["domain"] == "payment.petpro.dev"


async def test_route_answers_200_refunded_for_a_lost_slot(client, payments, bookings) -> None:
    bookings.lost.add("lock-1")
    resp = await _post(client, payments.paid(b"a", payment_id="pay-a"))
    assert resp.status_code == 200 and resp.json()["outcome"] == "refunded"
    assert resp.json()["payment_id"] == "pay-a" and "booking_id" not in resp.json()


async def test_route_rejects_forged_and_unsigned_requests_with_400(client, payments) -> None:
    resp = await _post(client, payments.paid(b"a"), "t=1,v1=forged")
    assert resp.status_code == 400 and resp.json()["reason"] == "INVALID_SIGNATURE"
    resp = await client.post("/webhooks/stripe", content=b"a")
    assert resp.status_code == 400 and resp.json()["reason"] == "MISSING_SIGNATURE"
    assert resp.json()["domain"] == "edge.petpro.dev"
