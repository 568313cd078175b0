"""Payment fulfilment with hand-written fakes of its ports: both entry points (the webhook and the
sweep for lost webhooks) decide through the same table, confirm then settle in the same call, refund
once under the payment's request id; and the HTTP route's answer for each outcome (what the provider
retries and what not)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY

from edge.fulfilment import (
    REFUND_REASON_TEXT,
    GrpcPayments,
    Outcome,
    PaidPayment,
    PaymentFulfilment,
    VerifiedEvent,
    refund_request_id,
)
from edge.fulfilment.decisions import CONFIRM_REASONS, Action
from edge.web.app import create_app
from edge.web.deps import HttpDeps
from petpro.errors import Kind
from petpro.upstream import UpstreamError
from petpro_api.payment.v1 import payment_pb2

SIGNATURE = "t=1,v1=good"
CONFIRMED_WITHOUT_WEBHOOK = "reconcile: booking confirmed without a webhook"


def _error(kind: Kind, reason: str, domain: str = "booking.petpro.dev") -> UpstreamError:
    return UpstreamError(f"test {reason.lower()}", kind, domain=domain, reason=reason)


@dataclass
class Paid:
    order_ref: str
    settled: str = ""  # the booking id it was settled with
    refunded: bool = False


@dataclass
class FakePayments:
    """PaymentService as fulfilment sees it: verifies one signature, records events once, keeps which
    payments succeeded, settles them (idempotent per booking) and refunds them (once per request id)."""

    events: dict[str, VerifiedEvent] = field(default_factory=dict)  # payload → event
    seen: set[str] = field(default_factory=set)
    payments: dict[str, Paid] = field(default_factory=dict)  # succeeded payments, by id
    refunds: dict[str, tuple[str, str]] = field(default_factory=dict)  # request id → (payment, reason)
    settles: list[tuple[str, str]] = field(default_factory=list)
    batches: list[list[tuple[str, str]]] = field(default_factory=list)  # each settle_many() call
    listed: list[int] = field(default_factory=list)  # the grace of each unsettled() call
    verify_error: UpstreamError | None = None
    settle_error: UpstreamError | None = None
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

    def lost(self, payment_id: str = "pay-1", lock_id: str = "lock-1") -> PaidPayment:
        """A payment that succeeded at the provider and whose webhook never came."""
        self.payments[payment_id] = Paid(lock_id)
        return PaidPayment(payment_id, lock_id)

    async def verify(self, payload: bytes, signature: str) -> VerifiedEvent:
        if self.verify_error is not None:
            raise self.verify_error
        if signature != SIGNATURE:
            raise _error(Kind.INVALID_ARGUMENT, "INVALID_SIGNATURE", "payment.petpro.dev")
        event = self.events[payload.decode()]
        duplicate = event.event_id in self.seen
        self.seen.add(event.event_id)
        if event.succeeded and event.payment_id:
            self.payments.setdefault(event.payment_id, Paid(event.order_ref))
        return VerifiedEvent(**{**event.__dict__, "duplicate": duplicate})

    async def settle(self, payment_id: str, booking_id: str) -> None:
        if self.settle_error is not None:
            raise self.settle_error
        p = self.payments[payment_id]
        if p.settled and p.settled != booking_id:
            raise _error(Kind.FAILED_PRECONDITION, "PAYMENT_ALREADY_SETTLED", "payment.petpro.dev")
        p.settled = booking_id
        self.settles.append((payment_id, booking_id))

    async def settle_many(self, settlements: list[tuple[str, str]]) -> list[str]:
        if self.settle_error is not None:
            raise self.settle_error
        self.batches.append(list(settlements))
        left = []
        for payment_id, booking_id in settlements:
            p = self.payments.get(payment_id)
            if p is None or (p.settled and p.settled != booking_id):
                left.append(payment_id)
                continue
            p.settled = booking_id
            self.settles.append((payment_id, booking_id))
        return left

    async def refund(self, payment_id: str, request_id: str, reason: str) -> None:
        if self.refund_error is not None:
            raise self.refund_error
        self.refunds.setdefault(request_id, (payment_id, reason))
        self.payments[payment_id].refunded = True

    async def unsettled(self, older_than_seconds: int, limit: int) -> list[PaidPayment]:
        self.listed.append(older_than_seconds)
        return [
            PaidPayment(pid, p.order_ref)
            for pid, p in self.payments.items()
            if not p.settled and not p.refunded
        ][:limit]


@dataclass
class FakeBookings:
    """BookingService's ConfirmBooking: idempotent per lock; a lock can answer an error or the service
    be down."""

    booked: dict[str, str] = field(default_factory=dict)  # lock → booking id
    errors: dict[str, UpstreamError] = field(default_factory=dict)  # lock → its answer
    down: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)

    def lose(
        self, lock_id: str, reason: str = "SLOT_NO_LONGER_AVAILABLE", kind: Kind = Kind.FAILED_PRECONDITION
    ):
        self.errors[lock_id] = _error(kind, reason)

    async def confirm(self, lock_id: str, payment_id: str) -> str:
        self.calls.append((lock_id, payment_id))
        if self.down:
            raise _error(Kind.UNAVAILABLE, "UNAVAILABLE")
        if lock_id in self.errors:
            raise self.errors[lock_id]
        return self.booked.setdefault(lock_id, f"booking-{len(self.booked) + 1}")


@pytest.fixture
def payments() -> FakePayments:
    return FakePayments()


@pytest.fixture
def bookings() -> FakeBookings:
    return FakeBookings()


@pytest.fixture
def fulfilment(payments, bookings) -> PaymentFulfilment:
    return PaymentFulfilment(payments, bookings, grace_seconds=120)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --------------------------------------------------------------------------------------------------
# the webhook
# --------------------------------------------------------------------------------------------------


async def test_a_verified_payment_is_confirmed_then_settled_in_the_same_call(fulfilment, payments, bookings):
    result = await fulfilment.webhook(payments.paid(b"a", payment_id="pay-a", lock_id="lock-a"), SIGNATURE)
    assert result.outcome is Outcome.CONFIRMED
    assert result.booking_id == bookings.booked["lock-a"]
    assert bookings.calls == [("lock-a", "pay-a")]
    assert payments.settles == [("pay-a", result.booking_id)]
    assert payments.refunds == {}


async def test_a_replay_confirms_and_settles_again_idempotently(fulfilment, payments, bookings):
    payload = payments.paid(b"a")
    first = await fulfilment.webhook(payload, SIGNATURE)
    replay = await fulfilment.webhook(payload, SIGNATURE)
    assert replay.outcome is Outcome.CONFIRMED and replay.event is not None and replay.event.duplicate
    assert replay.booking_id == first.booking_id and len(bookings.booked) == 1
    assert payments.settles == [("pay-1", first.booking_id)] * 2


async def test_a_replay_after_a_failed_confirmation_still_books(fulfilment, payments, bookings):
    payload = payments.paid(b"a")
    bookings.down = True
    assert (await fulfilment.webhook(payload, SIGNATURE)).outcome is Outcome.RETRY
    bookings.down = False
    result = await fulfilment.webhook(payload, SIGNATURE)  # the provider's retry: a duplicate event id
    assert result.outcome is Outcome.CONFIRMED and result.event is not None and result.event.duplicate
    assert payments.payments["pay-1"].settled == result.booking_id


async def test_a_failed_settle_is_retried_and_the_retry_settles_the_same_booking(
    fulfilment, payments, bookings
):
    payload = payments.paid(b"a")
    payments.settle_error = _error(Kind.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE", "payment.petpro.dev")
    result = await fulfilment.webhook(payload, SIGNATURE)
    assert (result.outcome, result.step) == (Outcome.RETRY, "settle")
    assert result.booking_id == bookings.booked["lock-1"]  # the booking exists; only the settle is missing
    payments.settle_error = None
    again = await fulfilment.webhook(payload, SIGNATURE)
    assert again.outcome is Outcome.CONFIRMED and payments.settles == [("pay-1", result.booking_id)]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (Kind.FAILED_PRECONDITION, "SLOT_NO_LONGER_AVAILABLE"),
        (Kind.FAILED_PRECONDITION, "RESERVATION_CLOSED"),
        (Kind.NOT_FOUND, "RESERVATION_NOT_FOUND"),  # was a 503 here, retried by the provider for days
        (Kind.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ],
)
async def test_a_payment_that_can_never_be_booked_is_refunded_once(
    fulfilment, payments, bookings, kind, reason
):
    bookings.lose("lock-1", reason, kind)
    result = await fulfilment.webhook(payments.paid(b"a", payment_id="pay-1"), SIGNATURE)
    assert result.outcome is Outcome.REFUNDED
    assert payments.refunds == {"fulfilment-pay-1": ("pay-1", REFUND_REASON_TEXT)}
    assert bookings.booked == {} and payments.settles == []
    assert (
        await fulfilment.webhook(payments.paid(b"a", payment_id="pay-1"), SIGNATURE)
    ).outcome is Outcome.REFUNDED
    assert len(payments.refunds) == 1  # the replay's refund is the same request


async def test_confirm_unavailable_is_retried_not_refunded(fulfilment, payments, bookings):
    bookings.down = True
    result = await fulfilment.webhook(payments.paid(b"a"), SIGNATURE)
    assert result.outcome is Outcome.RETRY and result.step == "confirm"
    assert result.error is not None and result.error.kind is Kind.UNAVAILABLE
    assert payments.refunds == {} and payments.settles == []


async def test_a_failed_refund_is_retried(fulfilment, payments, bookings):
    bookings.lose("lock-1")
    payments.refund_error = _error(Kind.FAILED_PRECONDITION, "PAYMENT_GATEWAY_ERROR", "payment.petpro.dev")
    result = await fulfilment.webhook(payments.paid(b"a"), SIGNATURE)
    assert result.outcome is Outcome.RETRY and result.step == "refund"
    payments.refund_error = None
    assert (await fulfilment.webhook(payments.paid(b"a"), SIGNATURE)).outcome is Outcome.REFUNDED


async def test_a_payment_refunded_already_counts_as_refunded(fulfilment, payments, bookings):
    bookings.lose("lock-1")
    payments.refund_error = _error(Kind.FAILED_PRECONDITION, "PAYMENT_ALREADY_REFUNDED", "payment.petpro.dev")
    assert (await fulfilment.webhook(payments.paid(b"a"), SIGNATURE)).outcome is Outcome.REFUNDED


async def test_a_bad_signature_is_rejected_and_nothing_happens(fulfilment, payments, bookings):
    result = await fulfilment.webhook(payments.paid(b"a"), "t=1,v1=forged")
    assert result.outcome is Outcome.REJECTED and result.error is not None
    assert result.error.reason == "INVALID_SIGNATURE"
    assert bookings.calls == [] and payments.refunds == {}


async def test_an_unpaid_or_unknown_payment_is_ignored(fulfilment, payments, bookings):
    assert (
        await fulfilment.webhook(payments.paid(b"a", succeeded=False), SIGNATURE)
    ).outcome is Outcome.IGNORED
    assert (
        await fulfilment.webhook(payments.paid(b"b", payment_id=""), SIGNATURE)
    ).outcome is Outcome.IGNORED
    assert bookings.calls == []


async def test_the_payment_intent_event_is_recorded_and_only_the_checkout_event_confirms(
    fulfilment, payments, bookings
):
    """Stripe sends both events for one paid Checkout: the booking is confirmed once, on the session's."""
    intent = await fulfilment.webhook(payments.paid(b"pi", event_type="payment_intent.succeeded"), SIGNATURE)
    assert intent.outcome is Outcome.RECORDED and "evt-pi" in payments.seen and bookings.calls == []
    completed = await fulfilment.webhook(payments.paid(b"cs"), SIGNATURE)
    assert completed.outcome is Outcome.CONFIRMED and bookings.calls == [("lock-1", "pay-1")]


async def test_payment_service_down_is_retried(fulfilment, payments):
    payments.verify_error = _error(Kind.UNAVAILABLE, "UNAVAILABLE", "payment.petpro.dev")
    result = await fulfilment.webhook(payments.paid(b"a"), SIGNATURE)
    assert result.outcome is Outcome.RETRY and result.step == "verify"


# --------------------------------------------------------------------------------------------------
# the sweep for lost webhooks
# --------------------------------------------------------------------------------------------------


async def test_after_a_webhook_the_sweep_finds_nothing_and_confirms_nothing_again(
    fulfilment, payments, bookings, caplog
):
    """The bug this use case fixed: the webhook confirmed without settling, so every paid booking
    looked lost to the sweep, which confirmed it a second time and warned."""
    await fulfilment.webhook(payments.paid(b"a"), SIGNATURE)
    before = _metric("petpro_edge_reconciled_payments_total", outcome="confirmed")
    with caplog.at_level(logging.INFO, logger="edge.fulfilment"):
        assert await fulfilment.sweep() == {}
    assert bookings.calls == [("lock-1", "pay-1")]  # one ConfirmBooking for the paid booking
    assert payments.listed == [120]
    assert CONFIRMED_WITHOUT_WEBHOOK not in caplog.text
    assert _metric("petpro_edge_reconciled_payments_total", outcome="confirmed") == before


async def test_a_lost_webhook_is_confirmed_and_settled_by_the_sweep_with_a_warning(
    fulfilment, payments, bookings, caplog
):
    payments.lost("pay-1", "lock-1")
    before = _metric("petpro_edge_reconciled_payments_total", outcome="confirmed")
    passes = _metric("petpro_edge_fulfilment_sweeps_total")
    with caplog.at_level(logging.INFO, logger="edge.fulfilment"):
        assert await fulfilment.sweep() == {"confirmed": 1}
    assert payments.settles == [("pay-1", bookings.booked["lock-1"])]
    [warning] = [r for r in caplog.records if r.getMessage() == CONFIRMED_WITHOUT_WEBHOOK]
    assert warning.levelno == logging.WARNING
    assert _metric("petpro_edge_reconciled_payments_total", outcome="confirmed") == before + 1
    assert _metric("petpro_edge_fulfilment_sweeps_total") == passes + 1
    assert await fulfilment.sweep() == {}  # settled: the next pass has nothing to do
    assert len(bookings.calls) == 1


# --------------------------------------------------------------------------------------------------
# settling in batches (the edge's EDGE_SETTLE_BATCH_SECONDS)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def batched(payments, bookings) -> PaymentFulfilment:
    return PaymentFulfilment(payments, bookings, grace_seconds=120, settle_every=0.5)


async def test_batched_the_webhook_confirms_and_the_flush_settles_its_payments_in_one_call(
    batched, payments, bookings
):
    a = await batched.webhook(payments.paid(b"a", payment_id="pay-a", lock_id="lock-a"), SIGNATURE)
    b = await batched.webhook(payments.paid(b"b", payment_id="pay-b", lock_id="lock-b"), SIGNATURE)
    await batched.webhook(b"a", SIGNATURE)  # a replay: confirmed again, queued once
    assert (a.outcome, b.outcome) == (Outcome.CONFIRMED, Outcome.CONFIRMED)
    assert a.booking_id == bookings.booked["lock-a"]  # the booking is committed before the answer
    assert payments.settles == []  # not yet: queued
    assert await batched.settlements.flush() == 2
    assert payments.batches == [[("pay-a", a.booking_id), ("pay-b", b.booking_id)]]
    assert await batched.settlements.flush() == 0 and len(payments.batches) == 1  # nothing queued
    assert await batched.sweep() == {}  # settled: the sweep has nothing to do
    assert len(bookings.calls) == 3


async def test_batched_what_is_queued_at_stop_is_settled_by_close(batched, payments):
    """The edge's on_stop: a webhook confirmed since the last flush is settled before the edge exits
    (the flush runs every ``settlements.every`` seconds, the edge's EDGE_SETTLE_BATCH_SECONDS)."""
    done = await batched.webhook(payments.paid(b"c", payment_id="pay-c", lock_id="lock-c"), SIGNATURE)
    assert batched.settlements.every == 0.5 and payments.batches == []
    await batched.settlements.close()
    assert payments.batches == [[("pay-c", done.booking_id)]]


async def test_batched_a_settlement_lost_on_the_way_is_the_sweeps_after_its_grace(
    batched, payments, bookings, caplog
):
    result = await batched.webhook(payments.paid(b"a"), SIGNATURE)
    assert result.outcome is Outcome.CONFIRMED
    payments.settle_error = _error(Kind.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE", "payment.petpro.dev")
    with caplog.at_level(logging.WARNING, logger="edge.fulfilment"):
        assert await batched.settlements.flush() == 0
    assert "the sweep settles them" in caplog.text
    payments.settle_error = None
    assert await batched.settlements.flush() == 0  # not queued again: the sweep decides
    # the sweep (its grace over) confirms the same booking again and settles it itself, one call
    assert await batched.sweep() == {"confirmed": 1}
    assert payments.settles == [("pay-1", result.booking_id)] and payments.batches == []
    assert bookings.calls == [("lock-1", "pay-1")] * 2 and len(bookings.booked) == 1


async def test_batched_a_refund_is_still_made_within_the_webhooks_call(batched, payments, bookings):
    bookings.lose("lock-1")
    result = await batched.webhook(payments.paid(b"a"), SIGNATURE)
    assert result.outcome is Outcome.REFUNDED and len(payments.refunds) == 1
    assert await batched.settlements.flush() == 0 and payments.batches == []


async def test_batched_a_payment_settled_for_another_booking_is_reported(batched, payments, caplog):
    await batched.webhook(payments.paid(b"a"), SIGNATURE)
    payments.payments["pay-1"].settled = "booking-elsewhere"
    with caplog.at_level(logging.WARNING, logger="edge.fulfilment"):
        assert await batched.settlements.flush() == 0
    assert "payment not settled" in caplog.text


async def test_batched_a_long_queue_is_settled_in_calls_of_at_most_the_limit(batched, payments, monkeypatch):
    monkeypatch.setattr(batched.settlements, "MAX_BATCH", 2)
    for i in range(5):
        await batched.webhook(
            payments.paid(f"p{i}".encode(), payment_id=f"pay-{i}", lock_id=f"l-{i}"), SIGNATURE
        )
    assert await batched.settlements.flush() == 5
    assert [len(b) for b in payments.batches] == [2, 2, 1]


class _OldPaymentStub:
    """A payment_svc from before SettlePayments (a rollout that updates the edge first)."""

    def __init__(self) -> None:
        self.settled: list[tuple[str, str]] = []

    async def SettlePayments(self, request, timeout=None):
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNIMPLEMENTED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="Method not found!",
        )

    async def SettlePayment(self, request, timeout=None):
        if request.payment_id == "pay-gone":
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.NOT_FOUND,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="payment not found",
            )
        self.settled.append((request.payment_id, request.order_id))
        return payment_pb2.SettlePaymentResponse()


async def test_batched_against_a_payment_service_without_settle_payments_settles_one_by_one():
    stub = _OldPaymentStub()
    left = await GrpcPayments(stub, 1.0).settle_many([("pay-1", "booking-1"), ("pay-gone", "booking-2")])
    assert left == ["pay-gone"] and stub.settled == [("pay-1", "booking-1")]


@pytest.mark.parametrize(
    ("answer", "expected", "settled", "refunded"),
    [
        (None, "confirmed", True, False),
        (_error(Kind.FAILED_PRECONDITION, "SLOT_NO_LONGER_AVAILABLE"), "refunded", False, True),
        (_error(Kind.FAILED_PRECONDITION, "RESERVATION_CLOSED"), "refunded", False, True),
        (_error(Kind.NOT_FOUND, "RESERVATION_NOT_FOUND"), "refunded", False, True),
        (_error(Kind.UNAVAILABLE, "UNAVAILABLE"), "retry", False, False),
        (_error(Kind.FAILED_PRECONDITION, "SOMETHING_ELSE"), "retry", False, False),
    ],
)
async def test_the_sweep_outcome_of_one_payment(
    fulfilment, payments, bookings, answer, expected, settled, refunded
):
    payments.lost()
    if answer is not None:
        bookings.errors["lock-1"] = answer
    assert await fulfilment.sweep() == {expected: 1}
    assert (bool(payments.settles), bool(payments.refunds)) == (settled, refunded)
    if refunded:
        assert payments.refunds == {refund_request_id("pay-1"): ("pay-1", REFUND_REASON_TEXT)}


@pytest.mark.parametrize("reason", sorted(CONFIRM_REASONS))
async def test_both_entry_points_decide_alike(reason: str):
    """One table: for every decided reason, the webhook and the sweep end a payment the same way."""
    ends = []
    for entry in ("webhook", "sweep"):
        payments, bookings = FakePayments(), FakeBookings()
        bookings.lose("lock-1", reason, Kind.FAILED_PRECONDITION)
        fulfilment = PaymentFulfilment(payments, bookings)
        if entry == "webhook":
            outcome = (await fulfilment.webhook(payments.paid(b"a"), SIGNATURE)).outcome
        else:
            payments.lost()
            [(name, _)] = (await fulfilment.sweep()).items()
            outcome = Outcome(name)
        ends.append((outcome, sorted(payments.refunds), payments.settles))
    assert ends[0] == ends[1]
    refund = CONFIRM_REASONS[reason] is Action.REFUND
    assert ends[0][0] is (Outcome.REFUNDED if refund else Outcome.RETRY)


# --------------------------------------------------------------------------------------------------
# the HTTP route
# --------------------------------------------------------------------------------------------------


@pytest.fixture
async def client(fulfilment):
    deps = HttpDeps(payment=None, booking=None, fulfilment=fulfilment)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as c:
        yield c


async def _post(client: httpx.AsyncClient, payload: bytes, signature: str = SIGNATURE) -> httpx.Response:
    return await client.post("/webhooks/stripe", content=payload, headers={"stripe-signature": signature})


async def test_route_answers_200_with_the_booking(client, payments, bookings):
    resp = await _post(client, payments.paid(b"a", payment_id="pay-a"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["outcome"] == "confirmed" and body["booking_id"] == bookings.booked["lock-1"]
    assert body["payment_id"] == "pay-a" and body["duplicate"] is False


async def test_route_answers_503_when_confirm_is_unavailable_so_the_provider_retries(
    client, payments, bookings
):
    bookings.down = True
    resp = await _post(client, payments.paid(b"a"))
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["reason"] == "UNAVAILABLE" and "confirmed" in resp.json()["detail"]


async def test_route_answers_503_when_the_settle_fails(client, payments):
    payments.settle_error = _error(Kind.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE", "payment.petpro.dev")
    resp = await _post(client, payments.paid(b"a"))
    assert resp.status_code == 503 and "settled" in resp.json()["detail"]


async def test_route_answers_503_when_the_refund_fails(client, payments, bookings):
    bookings.lose("lock-1")
    payments.refund_error = _error(Kind.UNAVAILABLE, "STRIPE_UNAVAILABLE", "payment.petpro.dev")
    resp = await _post(client, payments.paid(b"a"))
    assert resp.status_code == 503
    assert resp.json()["reason"] == "STRIPE_UNAVAILABLE" and resp.json()["domain"] == "payment.petpro.dev"


async def test_route_answers_200_refunded_for_a_lost_slot_or_an_unknown_reservation(
    client, payments, bookings
):
    bookings.lose("lock-1")
    resp = await _post(client, payments.paid(b"a", payment_id="pay-a"))
    assert resp.status_code == 200 and resp.json()["outcome"] == "refunded"
    assert resp.json()["payment_id"] == "pay-a" and "booking_id" not in resp.json()
    bookings.lose("lock-2", "RESERVATION_NOT_FOUND", Kind.NOT_FOUND)
    resp = await _post(client, payments.paid(b"b", payment_id="pay-b", lock_id="lock-2"))
    assert resp.status_code == 200 and resp.json()["outcome"] == "refunded"


async def test_route_answers_500_for_a_server_fault(client, payments, bookings):
    bookings.errors["lock-1"] = _error(Kind.INTERNAL, "INTERNAL")
    resp = await _post(client, payments.paid(b"a"))
    assert resp.status_code == 500 and resp.json()["reason"] == "INTERNAL"


async def test_route_rejects_forged_and_unsigned_requests_with_400(client, payments):
    resp = await _post(client, payments.paid(b"a"), "t=1,v1=forged")
    assert resp.status_code == 400 and resp.json()["reason"] == "INVALID_SIGNATURE"
    resp = await client.post("/webhooks/stripe", content=b"a")
    assert resp.status_code == 400 and resp.json()["reason"] == "MISSING_SIGNATURE"
    assert resp.json()["domain"] == "edge.petpro.dev"
