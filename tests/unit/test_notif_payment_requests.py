"""The payment link of a staff booking, mailed by notif_worker once per hold: a retry sends nothing more,
a failed send is sent again by the next call (and answered UNAVAILABLE), a refused address is final."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from notif_worker.domain import MessageRefused, PaymentRequest
from notif_worker.handlers import PaymentRequestHandlers
from petpro.errors import FailedPrecondition, Unavailable
from tests.unit.fakes.notif import NotifStore, notif_uow

AT = datetime(2030, 1, 7, 9, tzinfo=UTC)


class Mailer:
    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.sent: list[uuid.UUID] = []
        self.failures = failures or []

    async def send_payment_request(self, r: PaymentRequest) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(r.lock_id)


def request(to: str = "ann@example.org") -> PaymentRequest:
    return PaymentRequest(
        uuid.uuid4(), uuid.uuid4(), to, "Ann", "https://pay.example/cs", "Check-up", AT, "45.50 EUR", AT
    )


async def test_one_mail_per_hold_and_a_failed_one_goes_out_on_the_retry() -> None:
    mailer = Mailer([ConnectionError("smtp away")])
    h = PaymentRequestHandlers(notif_uow(NotifStore()), mailer)
    r = request()
    with pytest.raises(Unavailable):
        await h.send(r)
    assert await h.send(r) is True
    assert await h.send(r) is False
    assert mailer.sent == [r.lock_id]


async def test_a_refused_address_is_a_failed_precondition_and_no_channel_is_unavailable() -> None:
    h = PaymentRequestHandlers(notif_uow(NotifStore()), Mailer([MessageRefused("550 no such user")]))
    with pytest.raises(FailedPrecondition):
        await h.send(request())
    with pytest.raises(Unavailable):
        await PaymentRequestHandlers(notif_uow(NotifStore()), None).send(request())
