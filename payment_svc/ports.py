"""The ports payment's use cases depend on: the repository of one unit of work, the unit of work, and
the payment gateway (Stripe through the official SDK in ``adapters/stripe.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from payment_svc.domain import GatewayEvent, Payment, Refund, RefundInfo, Session, SessionState


class PaymentRepository(Protocol):
    async def add(self, p: Payment) -> bool:
        """Insert; False when the request id exists (an idempotent retry)."""
        ...

    async def get(self, payment_id: uuid.UUID, *, for_update: bool = False) -> Payment | None: ...
    async def by_request(self, request_id: str) -> Payment | None: ...
    async def by_order_ref(self, order_ref: str) -> Payment | None:
        """The newest payment of an order."""
        ...

    async def find_for_event(
        self, payment_id: str | None, session_id: str | None, provider_id: str | None
    ) -> Payment | None: ...
    async def apply_event(
        self, payment_id: uuid.UUID, event: GatewayEvent, now: datetime
    ) -> tuple[Payment, bool] | None:
        """A webhook about the payment with our id ``payment_id``, in one statement (no transaction
        needed): record the event once (as :meth:`record_event`) and, on its first delivery, apply it
        (:meth:`Payment.apply`, ``now`` the change time, as :meth:`save`); the payment after it and
        whether this was the first delivery.  None when no payment has this id: nothing recorded."""
        ...

    async def save(self, p: Payment, now: datetime) -> None:
        """Store what a payment may change (status, session, provider ids, refund id, settlement) with
        ``now`` as its change time, which ``p.updated_at`` becomes too."""
        ...

    async def set_session(
        self, payment_id: uuid.UUID, session_id: str, payment_url: str, now: datetime
    ) -> Payment | None:
        """Store the checkout session on a payment that has none (None: it has one already)."""
        ...

    async def settle(self, payment_id: uuid.UUID, order_id: str, now: datetime) -> Payment | None:
        """Record the order a SUCCEEDED or REFUNDED payment nobody settled yet fulfilled, ``now`` its
        settlement and change time; the stored payment, or None when it is not such a payment
        (unknown, settled already, not paid): nothing changed then."""
        ...

    async def settle_many(
        self, settlements: list[tuple[uuid.UUID, str]], now: datetime
    ) -> set[tuple[uuid.UUID, str]]:
        """:meth:`settle` for many (payment id, order id) pairs in one statement (a payment's first
        pair counts); the pairs that stand settled afterwards, just now or before with that order."""
        ...

    async def record_event(self, event_id: str, event_type: str, payment_id: uuid.UUID | None) -> bool:
        """True the first time an event id is seen; False for a duplicate delivery."""
        ...

    async def pending_past(self, now: datetime, limit: int = 100) -> list[Payment]: ...
    async def refund(self, request_id: str) -> Refund | None:
        """The refund made for this request id, if any."""
        ...

    async def add_refund(self, r: Refund) -> Refund:
        """Insert (a concurrent insert of the same request id keeps the first row); the stored row."""
        ...

    async def set_refund_status(self, provider_refund_id: str, status: str, now: datetime) -> None: ...
    async def refunds_of(self, payment_id: uuid.UUID) -> list[Refund]:
        """Every refund of this payment, oldest first."""
        ...

    async def unsettled(self, changed_before: datetime, limit: int) -> list[Payment]:
        """Succeeded payments whose order nobody settled, last changed before ``changed_before``."""
        ...

    async def pending_to_check(self, checked_before: datetime, limit: int = 100) -> list[Payment]:
        """Open sessions with no news since ``checked_before``: the provider is asked about them."""
        ...

    # a deleted account (account.deleted) and the owner's data export
    async def record_processed(self, event_id: uuid.UUID, topic: str, at: datetime) -> bool:
        """False when the event was already recorded."""
        ...

    async def anonymise_customer(self, user_id: uuid.UUID, email_sha256: list[str], at: datetime) -> int:
        """Empty the customer email of the account's payments (``customer_user_id``) and of those filed
        under these addresses (hex SHA-256 of the lower-cased address); how many."""
        ...

    async def customer_payments(self, order_refs: list[str], email: str) -> list[Payment]:
        """The payments of these order references or filed under ``email`` (non-empty), oldest first."""
        ...


UnitOfWork = Callable[[], AbstractAsyncContextManager[PaymentRepository]]


class PaymentGateway(Protocol):
    """A payment provider.  ``verify_event`` checks the signature and reduces the provider's event to
    a :class:`GatewayEvent`, including what the event means for the payment's status."""

    async def create_session(
        self, payment: Payment, description: str, success_url: str, cancel_url: str, idempotency_key: str
    ) -> Session: ...

    async def expire_session(self, session_id: str) -> bool: ...

    async def refund(
        self, provider_payment_id: str, amount_minor: int, reason: str, idempotency_key: str
    ) -> RefundInfo: ...

    async def retrieve_refund(self, refund_id: str) -> RefundInfo: ...

    async def session_state(self, session_id: str) -> SessionState:
        """What the provider reports about a checkout session (its webhook may never come)."""
        ...

    def verify_event(self, payload: bytes, signature: str) -> GatewayEvent: ...
