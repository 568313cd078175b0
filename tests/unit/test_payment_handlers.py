"""PaymentHandlers with a fake unit of work and a fake gateway: idempotent sessions, verified and
deduplicated webhooks, refunds, expiry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from payment_svc.domain import (
    AlreadyRefunded,
    AlreadySettled,
    GatewayError,
    InvalidSignature,
    NotPaid,
    NotRefundable,
    Payment,
    PaymentNotFound,
    PaymentStatus,
    RequestIdReused,
)
from payment_svc.handlers import CreateSession, PaymentHandlers, RefundCommand
from petpro.errors import InvalidArgument
from tests.unit.fakes.payment import FakeGateway, PaymentStore, event, payment_uow, signed

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def env():
    store, gateway, clock = PaymentStore(), FakeGateway(), Clock()
    h = PaymentHandlers(
        payment_uow(store),
        gateway,
        public_base_url="https://edge.example.test/",
        clock=clock,
        read=payment_uow(store),
    )
    return h, store, gateway, clock


def session(
    request_id: str = "req-1",
    amount: int = 4500,
    expires: datetime | None = NOW + timedelta(minutes=10),
    success_url: str = "",
) -> CreateSession:
    return CreateSession(
        request_id, "lock-1", amount, "EUR", "o@example.test", "Check-up", success_url, "", expires
    )


async def test_create_session_stores_the_provider_session(env):
    h, store, gateway, _ = env
    p = await h.sessions.create(session())
    assert p.status == PaymentStatus.PENDING and p.session_id == "cs_1"
    assert p.payment_url == "https://pay.example.test/cs_1"
    assert store.payments[p.id].session_id == "cs_1"
    assert gateway.sessions["cs_1"] == (f"checkout-{p.id}", str(p.id))


async def test_create_session_is_idempotent_per_request_id(env):
    h, store, gateway, _ = env
    first = await h.sessions.create(session())
    again = await h.sessions.create(session())
    assert again.id == first.id and len(store.payments) == 1 and len(gateway.sessions) == 1
    with pytest.raises(RequestIdReused):
        await h.sessions.create(session(amount=9900))


async def test_a_retry_after_a_provider_failure_reuses_the_payment(env):
    h, store, gateway, _ = env
    gateway.fail_next = True
    with pytest.raises(GatewayError):
        await h.sessions.create(session())
    [pending] = store.payments.values()
    assert pending.session_id is None
    p = await h.sessions.create(session())
    assert p.id == pending.id and p.session_id == "cs_1"


async def test_webhook_success_is_applied_once(env):
    h, store, _, clock = env
    p = await h.sessions.create(session())
    body = event(
        "evt_1",
        "checkout.session.completed",
        status=PaymentStatus.SUCCEEDED,
        session_id=p.session_id,
        provider_payment_id="pi_1",
    )
    clock.now += timedelta(seconds=5)
    out = await h.webhooks.handle(*signed(body))
    assert (out.event_id, out.duplicate) == ("evt_1", False)
    assert out.payment is not None and out.payment.status == PaymentStatus.SUCCEEDED
    assert store.payments[p.id].provider_payment_id == "pi_1" and store.payments[p.id].updated_at == clock.now
    again = await h.webhooks.handle(*signed(body))
    assert again.duplicate is True and again.payment is not None and again.payment.id == p.id


async def test_a_stale_event_never_moves_a_payment_backwards(env):
    h, store, _, _ = env
    p = await h.sessions.create(session())
    await h.webhooks.handle(
        *signed(
            event(
                "e1",
                "payment_intent.succeeded",
                status=PaymentStatus.SUCCEEDED,
                payment_id=p.id,
                provider_payment_id="pi_1",
            )
        ),
    )
    out = await h.webhooks.handle(
        *signed(
            event("e2", "checkout.session.expired", status=PaymentStatus.EXPIRED, session_id=p.session_id)
        )
    )
    assert out.payment is not None and out.payment.status == PaymentStatus.SUCCEEDED
    assert store.payments[p.id].status == PaymentStatus.SUCCEEDED


async def test_webhook_rejects_a_bad_signature_and_records_unknown_payments(env):
    h, store, _, _ = env
    with pytest.raises(InvalidSignature):
        await h.webhooks.handle(b"{}", "forged")
    out = await h.webhooks.handle(
        *signed(
            event(
                "e9",
                "payment_intent.succeeded",
                status=PaymentStatus.SUCCEEDED,
                provider_payment_id="pi_unknown",
            )
        ),
    )
    assert out.payment is None and out.duplicate is False
    assert store.events == {"e9": None}


async def paid(h: PaymentHandlers, request_id: str = "req-1", provider_id: str = "pi_1") -> Payment:
    p = await h.sessions.create(session(request_id))
    await h.webhooks.handle(
        *signed(
            event(
                f"evt-{request_id}",
                "payment_intent.succeeded",
                status=PaymentStatus.SUCCEEDED,
                payment_id=p.id,
                provider_payment_id=provider_id,
            )
        ),
    )
    return await h.sessions.get(p.id)


def refund(p: Payment, request_id: str, amount: int | None = None, currency: str = "") -> RefundCommand:
    return RefundCommand(p.id, request_id, "slot lost", amount, currency)


async def test_refund_needs_a_paid_payment_and_a_request_id(env):
    h, _store, gateway, _ = env
    p = await h.sessions.create(session())
    with pytest.raises(NotRefundable):
        await h.refunds.refund(refund(p, "fulfilment-1"))
    with pytest.raises(PaymentNotFound):
        await h.refunds.refund(RefundCommand(uuid.uuid4(), "fulfilment-x", "x"))
    with pytest.raises(InvalidArgument) as exc:
        await h.refunds.refund(refund(await paid(h, "req-2", "pi_2"), ""))
    assert exc.value.violations[0].field == "request_id"
    assert gateway.refunds == {}


async def test_a_full_refund_is_idempotent_on_its_request_id_and_makes_the_payment_refunded(env):
    h, store, gateway, _ = env
    p = await paid(h)
    refunded, made = await h.refunds.refund(refund(p, f"fulfilment-{p.id}"))
    assert refunded.status == PaymentStatus.REFUNDED and refunded.refund_id == made.provider_refund_id
    assert (made.request_id, made.amount_minor, made.status) == (f"fulfilment-{p.id}", 4500, "succeeded")
    assert gateway.refunds == {f"refund-fulfilment-{p.id}": ("pi_1", 4500)}
    # a retry: the same refund, nothing sent to the provider again
    again, same = await h.refunds.refund(refund(p, f"fulfilment-{p.id}"))
    assert (again.status, same) == (PaymentStatus.REFUNDED, made) and len(gateway.refunds) == 1
    # another request: nothing is left
    with pytest.raises(AlreadyRefunded):
        await h.refunds.refund(refund(p, "booking-1-refund-1"))
    # the request id names this payment's refund, not another payment's
    other = await paid(h, "req-2", "pi_2")
    with pytest.raises(RequestIdReused):
        await h.refunds.refund(refund(other, f"fulfilment-{p.id}"))
    assert store.payments[other.id].status == PaymentStatus.SUCCEEDED and len(gateway.refunds) == 1


async def test_partial_refunds_refund_what_is_left_and_the_last_one_makes_it_refunded(env):
    h, _, gateway, _ = env
    p = await paid(h)
    with pytest.raises(InvalidArgument):
        await h.refunds.refund(refund(p, "r1", 4500, currency="USD"))
    first, r1 = await h.refunds.refund(refund(p, "r1", 1500, "EUR"))
    assert first.status == PaymentStatus.SUCCEEDED and r1.amount_minor == 1500
    assert first.refund_id == r1.provider_refund_id
    with pytest.raises(InvalidArgument) as exc:  # more than is left
        await h.refunds.refund(refund(p, "r2", 3001))
    assert exc.value.violations[0].reason == "AMOUNT_OUT_OF_RANGE"
    last, r2 = await h.refunds.refund(refund(p, "r2"))  # no amount: everything that is left
    assert (r2.amount_minor, last.status) == (3000, PaymentStatus.REFUNDED)
    assert last.refund_id == r1.provider_refund_id  # the payment keeps its first refund's id
    assert sorted(amount for _, amount in gateway.refunds.values()) == [1500, 3000]


async def test_a_refund_replayed_while_open_asks_the_provider(env):
    h, store, gateway, _ = env
    p = await paid(h)
    gateway.refund_status = "pending"
    _, made = await h.refunds.refund(refund(p, "r1"))
    assert made.status == "pending" and store.payments[p.id].status == PaymentStatus.REFUNDED
    gateway.refund_status = "succeeded"
    _, again = await h.refunds.refund(refund(p, "r1"))
    assert again.status == "succeeded" and store.refunds["r1"].status == "succeeded"


async def test_a_full_refund_that_fails_after_acceptance_makes_the_payment_succeeded_again(env):
    h, store, _, _ = env
    p = await h.sessions.create(session())
    await h.webhooks.handle(
        *signed(
            event(
                "e1",
                "payment_intent.succeeded",
                status=PaymentStatus.SUCCEEDED,
                payment_id=p.id,
                provider_payment_id="pi_1",
            )
        ),
    )
    _, first = await h.refunds.refund(RefundCommand(p.id, "booking-1-refund-1", "cancelled"))
    await h.webhooks.handle(
        *signed(event("e2", "charge.refunded", status=PaymentStatus.REFUNDED, provider_payment_id="pi_1"))
    )
    assert store.payments[p.id].status == PaymentStatus.REFUNDED
    # Stripe: the refund fails later (refund.failed), the money goes back on the charge
    out = await h.webhooks.handle(
        *signed(
            event(
                "e3",
                "refund.failed",
                status=None,
                provider_payment_id="pi_1",
                refund_id=first.provider_refund_id,
                refund_status="failed",
            )
        ),
    )
    assert out.payment is not None and out.payment.status == PaymentStatus.SUCCEEDED
    assert store.payments[p.id].status == PaymentStatus.SUCCEEDED
    assert store.refunds["booking-1-refund-1"].status == "failed"
    # the next round's refund succeeds: REFUNDED again, and a replayed failure of the old one changes nothing
    _, second = await h.refunds.refund(RefundCommand(p.id, "booking-1-refund-2", "cancelled"))
    await h.webhooks.handle(
        *signed(
            event(
                "e4",
                "refund.updated",
                status=None,
                provider_payment_id="pi_1",
                refund_id=second.provider_refund_id,
                refund_status="succeeded",
            )
        ),
    )
    await h.webhooks.handle(
        *signed(event("e5", "charge.refunded", status=PaymentStatus.REFUNDED, provider_payment_id="pi_1"))
    )
    await h.webhooks.handle(
        *signed(
            event(
                "e6",
                "refund.updated",
                status=None,
                provider_payment_id="pi_1",
                refund_id=first.provider_refund_id,
                refund_status="failed",
            )
        ),
    )
    assert store.payments[p.id].status == PaymentStatus.REFUNDED


async def test_expire_due_expires_lapsed_open_sessions_only(env):
    h, store, gateway, clock = env
    lapsing = await h.sessions.create(session("a"))
    paid = await h.sessions.create(session("b"))
    later = await h.sessions.create(session("c", expires=NOW + timedelta(hours=1)))
    gateway.open.discard(paid.session_id or "")  # paid meanwhile: the provider refuses to expire it
    gateway.paid[paid.session_id or ""] = "pi_b"
    clock.now += timedelta(minutes=11)
    assert await h.sessions.expire_due() == 2
    assert store.payments[lapsing.id].status == PaymentStatus.EXPIRED
    # its webhook may never come: what the provider reports about the session is applied
    assert store.payments[paid.id].status == PaymentStatus.SUCCEEDED
    assert store.payments[paid.id].provider_payment_id == "pi_b"
    assert store.payments[later.id].status == PaymentStatus.PENDING


async def test_reconcile_pending_finds_a_paid_session_whose_webhook_never_came(env):
    h, store, gateway, clock = env
    quiet = await h.sessions.create(session("a", expires=NOW + timedelta(hours=1)))
    waiting = await h.sessions.create(session("b", expires=NOW + timedelta(hours=1)))
    gateway.open.discard(quiet.session_id or "")
    gateway.paid[quiet.session_id or ""] = "pi_a"  # paid at the provider, no webhook
    clock.now += timedelta(minutes=10)
    assert await h.reconciliation.reconcile_pending(timedelta(minutes=5)) == 1
    assert store.payments[quiet.id].status == PaymentStatus.SUCCEEDED
    assert store.payments[waiting.id].status == PaymentStatus.PENDING  # still open: nothing to change
    assert [p.id for p in await h.reconciliation.unsettled(timedelta(0))] == [
        quiet.id
    ]  # succeeded, nobody settled it yet


async def test_expire_session_and_get(env):
    h, _, _, _ = env
    p = await h.sessions.create(session())
    assert (await h.sessions.expire(p.session_id or "")).status == PaymentStatus.EXPIRED
    assert (await h.sessions.get(p.id)).status == PaymentStatus.EXPIRED
    with pytest.raises(PaymentNotFound):
        await h.sessions.expire("cs_nope")
    with pytest.raises(PaymentNotFound):
        await h.sessions.get(uuid.uuid4())


async def test_default_return_pages_are_on_the_public_edge(env):
    h, _, gateway, _ = env
    seen = {}
    original = gateway.create_session

    async def spy(payment, description, success_url, cancel_url, idempotency_key):  # type: ignore[no-untyped-def]
        seen.update(success=success_url, cancel=cancel_url)
        return await original(payment, description, success_url, cancel_url, idempotency_key)

    gateway.create_session = spy
    await h.sessions.create(session())
    assert seen == {
        "success": "https://edge.example.test/payments/success",
        "cancel": "https://edge.example.test/payments/cancel",
    }


async def test_settle_records_the_order_once_for_a_paid_payment(env):
    h, _, _, _ = env
    pending = await h.sessions.create(session("req-2"))
    with pytest.raises(NotPaid):
        await h.reconciliation.settle(pending.id, "booking-1")
    with pytest.raises(PaymentNotFound):
        await h.reconciliation.settle(uuid.uuid4(), "booking-1")
    p = await paid(h)
    settled = await h.reconciliation.settle(p.id, "booking-1")
    assert (settled.settled_order_id, settled.settled_at) == ("booking-1", NOW)
    assert (await h.reconciliation.settle(p.id, "booking-1")).settled_at == NOW  # idempotent
    with pytest.raises(AlreadySettled):
        await h.reconciliation.settle(p.id, "booking-2")
    assert await h.reconciliation.unsettled(timedelta(0)) == []


async def test_settle_many_settles_the_paid_payments_and_names_the_others(env):
    h, _, _, _ = env
    pending = await h.sessions.create(session("req-2"))
    p, q = await paid(h), await paid(h, "req-3", "pi_3")
    await h.reconciliation.settle(q.id, "booking-q")
    nobody = uuid.uuid4()
    asked = [(p.id, "booking-p"), (q.id, "booking-q"), (pending.id, "booking-x"), (nobody, "booking-n")]
    assert await h.reconciliation.settle_many(asked) == [pending.id, nobody]
    assert (await h.sessions.get(p.id)).settled_order_id == "booking-p"
    assert await h.reconciliation.settle_many(asked) == [pending.id, nobody]  # idempotent
    assert await h.reconciliation.settle_many([(q.id, "booking-other")]) == [q.id]
    assert await h.reconciliation.unsettled(timedelta(0)) == []


async def test_a_payment_refunded_before_its_late_settle_is_settled(env):
    """The booking was confirmed, its settle failed, the booking was cancelled and refunded in full:
    the retried settle still records the order the payment paid for."""
    h, _, _, _ = env
    p = await paid(h)
    await h.refunds.refund(RefundCommand(p.id, "booking-1-refund-1", "cancelled"))
    settled = await h.reconciliation.settle(p.id, "booking-1")
    assert (settled.status, settled.settled_order_id) == (PaymentStatus.REFUNDED, "booking-1")
