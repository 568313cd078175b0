"""Payment status rules: a provider event moves a payment only along the allowed transitions."""

from __future__ import annotations

import uuid

import pytest

from payment_svc.domain import GatewayEvent, Payment, PaymentStatus

S = PaymentStatus


def payment(status: PaymentStatus = S.PENDING, **kw: object) -> Payment:
    return Payment(uuid.uuid4(), "lock-1", "req-1", status, 4500, "EUR", **kw)


def ev(status: PaymentStatus | None, session: str | None = None, provider: str | None = None) -> GatewayEvent:
    return GatewayEvent("evt", "t", session, provider, None, status)


@pytest.mark.parametrize(
    ("before", "event", "after"),
    [
        (S.PENDING, S.SUCCEEDED, S.SUCCEEDED),
        (S.PENDING, S.EXPIRED, S.EXPIRED),
        (S.EXPIRED, S.SUCCEEDED, S.SUCCEEDED),  # a late payment is recorded; booking decides confirm/refund
        (S.FAILED, S.SUCCEEDED, S.SUCCEEDED),  # paid on a retry
        (S.SUCCEEDED, S.EXPIRED, S.SUCCEEDED),  # stale: never backwards
        (S.SUCCEEDED, S.FAILED, S.SUCCEEDED),
        (S.SUCCEEDED, S.REFUNDED, S.REFUNDED),
        (S.REFUNDED, S.SUCCEEDED, S.REFUNDED),
        (S.PENDING, None, S.PENDING),  # an event that reports nothing
    ],
)
def test_apply_moves_only_along_allowed_transitions(
    before: PaymentStatus, event: PaymentStatus | None, after: PaymentStatus
) -> None:
    p = payment(before)
    p.apply(ev(event))
    assert p.status == after


def test_apply_learns_provider_ids_but_never_overwrites_them() -> None:
    p = payment()
    p.apply(ev(None, session="cs_1", provider="pi_1"))
    assert (p.session_id, p.provider_payment_id) == ("cs_1", "pi_1")
    p.apply(ev(None, session="cs_2", provider="pi_2"))
    assert (p.session_id, p.provider_payment_id) == ("cs_1", "pi_1")
