"""payment's repository contract against the in-memory fake (tests/unit/fakes/payment.py)."""

from __future__ import annotations

import pytest

from payment_svc.ports import UnitOfWork
from tests.contracts.payment_repository import PaymentRepositoryContract
from tests.unit.fakes.payment import PaymentStore, payment_uow


class TestFakePaymentRepository(PaymentRepositoryContract):
    @pytest.fixture
    def uow(self) -> UnitOfWork:
        return payment_uow(PaymentStore())
