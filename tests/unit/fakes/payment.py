"""In-memory PaymentRepository and a fake PaymentGateway (payment_svc.ports)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from payment_svc.domain import (
    GatewayError,
    GatewayEvent,
    InvalidSignature,
    Payment,
    PaymentStatus,
    Refund,
    RefundInfo,
    Session,
    SessionState,
)
from tests.unit.fakes import FakeUnitOfWork

# the fields PaymentRepository.save stores (the SQL adapter's UPDATE), besides updated_at
SAVED = (
    "status",
    "session_id",
    "payment_url",
    "provider_payment_id",
    "refund_id",
    "settled_at",
    "settled_order_id",
)


@dataclass
class PaymentStore:
    payments: dict[uuid.UUID, Payment] = field(default_factory=dict)
    events: dict[str, uuid.UUID | None] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    checked_at: dict[uuid.UUID, datetime] = field(default_factory=dict)
    processed: set[uuid.UUID] = field(default_factory=set)


class FakePaymentRepository:
    def __init__(self, store: PaymentStore) -> None:
        self.store = store

    async def add(self, p: Payment) -> bool:
        if any(x.request_id == p.request_id for x in self.store.payments.values()):
            return False
        self.store.payments[p.id] = copy.deepcopy(p)
        return True

    async def get(self, payment_id: uuid.UUID, *, for_update: bool = False) -> Payment | None:
        return copy.deepcopy(self.store.payments.get(payment_id))

    async def by_request(self, request_id: str) -> Payment | None:
        return copy.deepcopy(
            next((p for p in self.store.payments.values() if p.request_id == request_id), None)
        )

    async def by_order_ref(self, order_ref: str) -> Payment | None:
        mine = [p for p in self.store.payments.values() if p.order_ref == order_ref]
        newest = sorted(mine, key=lambda p: (-p.created_at.timestamp(), p.id))  # created_at DESC, id
        return copy.deepcopy(newest[0]) if newest else None

    async def find_for_event(
        self, payment_id: str | None, session_id: str | None, provider_id: str | None
    ) -> Payment | None:
        # our id first, then the session, then the provider's id (as the SQL adapter asks)
        for wanted, key in (
            (payment_id, lambda p: str(p.id)),
            (session_id, lambda p: p.session_id),
            (provider_id, lambda p: p.provider_payment_id),
        ):
            found = next((p for p in self.store.payments.values() if wanted and key(p) == wanted), None)
            if found is not None:
                return copy.deepcopy(found)
        return None

    async def apply_event(
        self, payment_id: uuid.UUID, event: GatewayEvent, now: datetime
    ) -> tuple[Payment, bool] | None:
        stored = self.store.payments.get(payment_id)
        if stored is None:
            return None
        if event.id in self.store.events:
            return copy.deepcopy(stored), False
        self.store.events[event.id] = payment_id
        stored.apply(event)
        stored.updated_at = now
        return copy.deepcopy(stored), True

    async def save(self, p: Payment, now: datetime) -> None:
        """What a payment may change, and its change time (never its order, amount, payer, expiry)."""
        stored = self.store.payments[p.id]
        for name in SAVED:
            setattr(stored, name, copy.deepcopy(getattr(p, name)))
        stored.updated_at = p.updated_at = now

    async def set_session(
        self, payment_id: uuid.UUID, session_id: str, payment_url: str, now: datetime
    ) -> Payment | None:
        p = self.store.payments.get(payment_id)
        if p is None or p.session_id:
            return None
        p.session_id, p.payment_url, p.updated_at = session_id, payment_url, now
        return copy.deepcopy(p)

    async def settle(self, payment_id: uuid.UUID, order_id: str, now: datetime) -> Payment | None:
        p = self.store.payments.get(payment_id)
        if p is None or p.settled_at is not None:
            return None
        if p.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED):
            return None
        p.settled_at, p.settled_order_id, p.updated_at = now, order_id, now
        return copy.deepcopy(p)

    async def settle_many(
        self, settlements: list[tuple[uuid.UUID, str]], now: datetime
    ) -> set[tuple[uuid.UUID, str]]:
        wanted: dict[uuid.UUID, str] = {}
        for payment_id, order_id in settlements:
            wanted.setdefault(payment_id, order_id)
        for payment_id, order_id in wanted.items():
            await self.settle(payment_id, order_id, now)
        stored = self.store.payments
        return {
            (pid, order)
            for pid, order in settlements
            if pid in stored and stored[pid].settled_at is not None and stored[pid].settled_order_id == order
        }

    async def record_event(self, event_id: str, event_type: str, payment_id: uuid.UUID | None) -> bool:
        if event_id in self.store.events:
            return False
        self.store.events[event_id] = payment_id
        return True

    async def pending_past(self, now: datetime, limit: int = 100) -> list[Payment]:
        due = [
            p
            for p in self.store.payments.values()
            if p.status == PaymentStatus.PENDING
            and p.expires_at is not None
            and p.expires_at <= now
            and p.session_id is not None
        ]
        return [copy.deepcopy(p) for p in sorted(due, key=lambda p: p.expires_at or now)[:limit]]

    async def refund(self, request_id: str) -> Refund | None:
        return copy.deepcopy(self.store.refunds.get(request_id))

    async def add_refund(self, r: Refund) -> Refund:
        self.store.refunds.setdefault(r.request_id, copy.deepcopy(r))
        return copy.deepcopy(self.store.refunds[r.request_id])

    async def set_refund_status(self, provider_refund_id: str, status: str, now: datetime) -> None:
        for r in self.store.refunds.values():
            if r.provider_refund_id == provider_refund_id:
                r.status, r.updated_at = status, now

    async def record_processed(self, event_id: uuid.UUID, topic: str, at: datetime) -> bool:
        if event_id in self.store.processed:
            return False
        self.store.processed.add(event_id)
        return True

    async def anonymise_customer(self, user_id: uuid.UUID, email_sha256: list[str], at: datetime) -> int:
        n = 0
        for p in self.store.payments.values():
            digest = hashlib.sha256(p.customer_email.lower().encode()).hexdigest()
            if p.customer_email and (p.customer_user_id == user_id or digest in email_sha256):
                p.customer_email, p.updated_at, n = "", at, n + 1
        return n

    async def customer_payments(self, order_refs: list[str], email: str) -> list[Payment]:
        mine = [
            p
            for p in self.store.payments.values()
            if p.order_ref in order_refs or (email and p.customer_email == email)
        ]
        return [copy.deepcopy(p) for p in sorted(mine, key=lambda p: (p.created_at, str(p.id)))]

    async def refunds_of(self, payment_id: uuid.UUID) -> list[Refund]:
        mine = [r for r in self.store.refunds.values() if r.payment_id == payment_id]
        return [copy.deepcopy(r) for r in sorted(mine, key=lambda r: (r.created_at, r.request_id))]

    async def unsettled(self, changed_before: datetime, limit: int) -> list[Payment]:
        due = [
            p
            for p in self.store.payments.values()
            if p.status == PaymentStatus.SUCCEEDED and p.settled_at is None and p.updated_at <= changed_before
        ]
        return [copy.deepcopy(p) for p in sorted(due, key=lambda p: p.updated_at)[:limit]]

    async def pending_to_check(self, checked_before: datetime, limit: int = 100) -> list[Payment]:
        def seen(p: Payment) -> datetime:
            return self.store.checked_at.get(p.id, p.created_at)

        due = sorted(
            (
                p
                for p in self.store.payments.values()
                if p.status == PaymentStatus.PENDING
                and p.session_id is not None
                and seen(p) <= checked_before
            ),
            key=seen,
        )[:limit]
        for p in due:  # stamped like the database does (now(), not the caller's clock)
            self.store.checked_at[p.id] = datetime.now(UTC)
        return [copy.deepcopy(p) for p in due]


def payment_uow(store: PaymentStore | None = None) -> FakeUnitOfWork[PaymentStore, FakePaymentRepository]:
    return FakeUnitOfWork(store or PaymentStore(), FakePaymentRepository)


WEBHOOK_SECRET = "whsec_fake"
TOLERANCE_SECONDS = 300


def sign(payload: bytes, timestamp: int | None = None) -> str:
    """The ``t=<unix seconds>,v1=<HMAC-SHA256 of "<t>.<payload>">`` header the fake provider signs with."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def signed(payload: bytes) -> tuple[bytes, str]:
    """A payload and its signature made now: ``handle(*signed(event(...)))``."""
    return payload, sign(payload)


class FakeGateway:
    """Sessions, expiry and refunds recorded in memory; events are JSON signed like Stripe's webhooks
    (:func:`sign`, a 300 s tolerance):
    ``{"id", "type", "session_id", "provider_payment_id", "payment_id", "status"}``.
    Like the provider, it refuses an idempotency key reused with other parameters."""

    def __init__(self) -> None:
        self.sessions: dict[str, tuple[str, str]] = {}  # session id → (idempotency key, payment id)
        self.open: set[str] = set()
        self.paid: dict[str, str] = {}  # session id → provider payment id (paid, webhook or not)
        self.refunds: dict[str, tuple[str, int]] = {}  # idempotency key → (provider id, amount)
        self.fail_next = False
        self.refund_status = "succeeded"  # the status new refunds start in (and are looked up in)

    async def create_session(
        self, payment: Payment, description: str, success_url: str, cancel_url: str, idempotency_key: str
    ) -> Session:
        if self.fail_next:
            self.fail_next = False
            raise GatewayError("payment provider refused the session: card_declined")
        for sid, (key, payment_id) in self.sessions.items():
            if key == idempotency_key:  # the provider answers a retry like the first call...
                if payment_id != str(payment.id):  # ...and refuses the key for another request
                    raise GatewayError("payment provider refused the session: idempotency key reused")
                return Session(sid, f"https://pay.example.test/{sid}")
        sid = f"cs_{len(self.sessions) + 1}"
        self.sessions[sid] = (idempotency_key, str(payment.id))
        self.open.add(sid)
        return Session(sid, f"https://pay.example.test/{sid}")

    async def expire_session(self, session_id: str) -> bool:
        if session_id not in self.open or session_id in self.paid:  # a paid session is complete
            return False
        self.open.discard(session_id)
        return True

    async def session_state(self, session_id: str) -> SessionState:
        if session_id not in self.sessions:
            raise GatewayError("payment provider did not answer: no such session")
        if session_id in self.paid:
            return SessionState("complete", True, self.paid[session_id])
        return SessionState("open" if session_id in self.open else "expired", False, None)

    async def refund(
        self, provider_payment_id: str, amount_minor: int, reason: str, idempotency_key: str
    ) -> RefundInfo:
        first = self.refunds.setdefault(idempotency_key, (provider_payment_id, amount_minor))
        if first != (provider_payment_id, amount_minor):
            raise GatewayError("refund failed: idempotency key reused with other parameters")
        return RefundInfo(f"re_{idempotency_key}", self.refund_status, amount_minor)

    async def retrieve_refund(self, refund_id: str) -> RefundInfo:
        for key, (_, amount) in self.refunds.items():
            if f"re_{key}" == refund_id:
                return RefundInfo(refund_id, self.refund_status, amount)
        raise GatewayError(f"no such refund {refund_id}")

    def verify_event(self, payload: bytes, signature: str) -> GatewayEvent:
        parts = dict(p.partition("=")[::2] for p in signature.split(","))
        t = parts.get("t", "")
        if not t.isdigit() or not hmac.compare_digest(sign(payload, int(t)), signature):
            raise InvalidSignature("webhook signature is invalid or too old")
        if abs(time.time() - int(t)) > TOLERANCE_SECONDS:
            raise InvalidSignature("webhook signature is invalid or too old")
        try:
            e = json.loads(payload)
        except ValueError:
            raise InvalidSignature("webhook payload is not a Stripe event") from None
        return GatewayEvent(
            e["id"],
            e["type"],
            e.get("session_id"),
            e.get("provider_payment_id"),
            e.get("payment_id"),
            PaymentStatus(e["status"]) if e.get("status") else None,
            e,
            refund_id=e.get("refund_id"),
            refund_status=e.get("refund_status"),
        )


def event(
    id: str,
    type: str,
    *,
    status: PaymentStatus | None,
    payment_id: uuid.UUID | None = None,
    session_id: str | None = None,
    provider_payment_id: str | None = None,
    refund_id: str | None = None,
    refund_status: str | None = None,
) -> bytes:
    return json.dumps(
        {
            "id": id,
            "type": type,
            "status": status.value if status else None,
            "payment_id": str(payment_id) if payment_id else None,
            "session_id": session_id,
            "provider_payment_id": provider_payment_id,
            "refund_id": refund_id,
            "refund_status": refund_status,
        }
    ).encode()


if TYPE_CHECKING:  # mypy checks that the fakes implement the ports (make lint)
    from payment_svc.ports import PaymentGateway, UnitOfWork

    _uow: UnitOfWork = payment_uow()
    _gateway: PaymentGateway = FakeGateway()
