"""The PaymentRepository port on PostgreSQL: payments, received webhook events and refunds (the
tables are in :mod:`payment_svc.adapters.tables`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from payment_svc.adapters.tables import SCHEMA, payments, processed_events, refunds
from payment_svc.domain import GatewayEvent, Payment, PaymentStatus, Refund, sources
from petpro.db import raw_execute

# The statements of every booking's payment (a session, two webhooks, the status reads) go to psycopg
# directly: through SQLAlchemy they were about a third of payment_svc's CPU per booking (py-spy, full
# flow), as booking_svc found for ReserveSlot.  The tables (adapters/tables.py) stay the schema (Alembic).
_COLUMNS = ", ".join(c.name for c in payments.c)
_INSERT = (
    f"INSERT INTO {SCHEMA}.payments (id, order_ref, request_id, status, amount_minor, currency, customer_email,"
    " customer_user_id, expires_at, created_at, updated_at) VALUES (%(id)s, %(order_ref)s, %(request_id)s,"
    " %(status)s, %(amount_minor)s, %(currency)s, %(customer_email)s, %(customer_user_id)s, %(expires_at)s,"
    " %(created_at)s, %(updated_at)s)"
    " ON CONFLICT (request_id) DO NOTHING RETURNING id"
)
_BY_ID = f"SELECT {_COLUMNS} FROM {SCHEMA}.payments WHERE id = %s"
_BY_REQUEST = f"SELECT {_COLUMNS} FROM {SCHEMA}.payments WHERE request_id = %s"
_BY_ORDER = (
    f"SELECT {_COLUMNS} FROM {SCHEMA}.payments WHERE order_ref = %s ORDER BY created_at DESC, id LIMIT 1"
)
_FOR_EVENT = {
    column: f"SELECT {_COLUMNS} FROM {SCHEMA}.payments WHERE {column} = %s FOR UPDATE"
    for column in ("id", "session_id", "payment_intent_id")
}
_SAVE = (
    f"UPDATE {SCHEMA}.payments SET status = %(status)s, session_id = %(session_id)s,"
    " payment_url = %(payment_url)s, payment_intent_id = %(payment_intent_id)s, refund_id = %(refund_id)s,"
    " updated_at = %(now)s, settled_at = %(settled_at)s, settled_order_id = %(settled_order_id)s WHERE id = %(id)s"
)
_SET_SESSION = (
    f"UPDATE {SCHEMA}.payments SET session_id = %(session_id)s, payment_url = %(payment_url)s,"
    f" updated_at = %(now)s WHERE id = %(id)s AND session_id IS NULL RETURNING {_COLUMNS}"
)
# settling a paid payment: one statement on the autocommit connection (the row's lock is the UPDATE's
# own) instead of SELECT … FOR UPDATE and UPDATE in a transaction (four round trips)
_SETTLE = (
    f"UPDATE {SCHEMA}.payments SET settled_at = %(now)s, settled_order_id = %(order)s, updated_at = %(now)s"
    " WHERE id = %(id)s AND settled_at IS NULL AND status IN ('SUCCEEDED', 'REFUNDED')"
    f" RETURNING {_COLUMNS}"
)
# many at once (SettlePayments): one UPDATE over the batch, then, only for the payments it did not
# change, one read of what they are settled with (a replay's: the same order)
_SETTLE_MANY = (
    f"UPDATE {SCHEMA}.payments p SET settled_at = %(now)s, settled_order_id = v.order_id, updated_at = %(now)s"
    " FROM unnest(%(ids)s::uuid[], %(orders)s::text[]) AS v(id, order_id)"
    " WHERE p.id = v.id AND p.settled_at IS NULL AND p.status IN ('SUCCEEDED', 'REFUNDED')"
    " RETURNING p.id, p.settled_order_id"
)
_SETTLED_WITH = f"SELECT id, settled_order_id FROM {SCHEMA}.payments WHERE id = ANY(%s::uuid[])"
_RECORD_EVENT = (
    f"INSERT INTO {SCHEMA}.webhook_events (event_id, type, payment_id) VALUES (%s, %s, %s)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)

# a webhook about a payment named by our id (a paid Checkout's event): lock it, record the event once
# and apply it (Payment.apply: the provider's ids when it has none, the status when TRANSITIONS allow
# the move, ``sources``), in ONE statement on the autocommit connection instead of BEGIN, SELECT … FOR
# UPDATE, INSERT, UPDATE, COMMIT (five round trips).  A replay changes nothing and answers the row as
# locked (its latest version).  No row: no payment has this id (the caller takes the general path).
_T_COLUMNS = ", ".join(f"t.{c.name}" for c in payments.c)
_APPLY_EVENT = (
    f"WITH p AS (SELECT {_COLUMNS} FROM {SCHEMA}.payments WHERE id = %(id)s FOR UPDATE),"
    f" ev AS (INSERT INTO {SCHEMA}.webhook_events (event_id, type, payment_id)"
    " SELECT %(event)s, %(type)s, id FROM p ON CONFLICT (event_id) DO NOTHING RETURNING payment_id),"
    f" up AS (UPDATE {SCHEMA}.payments t SET"
    " payment_intent_id = COALESCE(t.payment_intent_id, %(intent)s),"
    " session_id = COALESCE(t.session_id, %(session)s),"
    " status = CASE WHEN t.status = ANY(%(sources)s::text[]) THEN %(status)s::text ELSE t.status END,"
    f" updated_at = %(now)s FROM ev WHERE t.id = ev.payment_id RETURNING {_T_COLUMNS})"
    f" SELECT true AS first, {_COLUMNS} FROM up"
    f" UNION ALL SELECT false, {_COLUMNS} FROM p WHERE NOT EXISTS (SELECT 1 FROM ev)"
)


def _refund(r: Row[Any]) -> Refund:
    return Refund(
        r.request_id,
        r.payment_id,
        r.provider_refund_id,
        r.amount_minor,
        r.currency,
        r.status,
        r.created_at,
        r.updated_at,
    )


def _payment(r: Row[Any]) -> Payment:
    return Payment(
        id=r.id,
        order_ref=r.order_ref,
        request_id=r.request_id,
        status=PaymentStatus(r.status),
        amount_minor=r.amount_minor,
        currency=r.currency,
        customer_email=r.customer_email,
        customer_user_id=r.customer_user_id,
        session_id=r.session_id,
        payment_url=r.payment_url,
        provider_payment_id=r.payment_intent_id,
        refund_id=r.refund_id,
        expires_at=r.expires_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
        settled_at=r.settled_at,
        settled_order_id=r.settled_order_id,
    )


class PaymentRepository:
    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.session = session

    async def _one(self, sql: str, params: Any, operation: str = "SELECT") -> Any:
        cur = await raw_execute(self.session, sql, params, operation=operation, row_factory=namedtuple_row)
        return await cur.fetchone()

    async def add(self, p: Payment) -> bool:
        """Insert; False when the request id exists (an idempotent retry)."""
        return (
            await self._one(
                _INSERT,
                {
                    "id": p.id,
                    "order_ref": p.order_ref,
                    "request_id": p.request_id,
                    "status": p.status.value,
                    "amount_minor": p.amount_minor,
                    "currency": p.currency,
                    "customer_email": p.customer_email,
                    "customer_user_id": p.customer_user_id,
                    "expires_at": p.expires_at,
                    "created_at": p.created_at,
                    "updated_at": p.updated_at,
                },
                "INSERT",
            )
            is not None
        )

    async def get(self, payment_id: uuid.UUID, *, for_update: bool = False) -> Payment | None:
        r = await self._one(_FOR_EVENT["id"] if for_update else _BY_ID, (payment_id,))
        return _payment(r) if r else None

    async def by_order_ref(self, order_ref: str) -> Payment | None:
        """The newest payment of an order (ix_payments_order_ref)."""
        r = await self._one(_BY_ORDER, (order_ref,))
        return _payment(r) if r else None

    async def set_session(
        self, payment_id: uuid.UUID, session_id: str, payment_url: str, now: datetime
    ) -> Payment | None:
        """Store the provider's checkout session on a payment that has none yet (one statement);
        None when it already has one (a concurrent retry stored it first)."""
        r = await self._one(
            _SET_SESSION,
            {"id": payment_id, "session_id": session_id, "payment_url": payment_url, "now": now},
            "UPDATE",
        )
        return _payment(r) if r else None

    async def settle(self, payment_id: uuid.UUID, order_id: str, now: datetime) -> Payment | None:
        """Settle a paid (or since refunded) payment nobody settled yet, in one statement; None when it
        is not one (unknown, settled already, not paid)."""
        r = await self._one(_SETTLE, {"id": payment_id, "order": order_id, "now": now}, "UPDATE")
        return _payment(r) if r else None

    async def settle_many(
        self, settlements: list[tuple[uuid.UUID, str]], now: datetime
    ) -> set[tuple[uuid.UUID, str]]:
        """Settle each paid (or since refunded) payment nobody settled with its order id, in one
        statement (the first entry of a payment counts); the pairs of ``settlements`` that stand settled
        afterwards (just now, or before with the same order)."""
        wanted: dict[uuid.UUID, str] = {}
        for payment_id, order_id in settlements:
            wanted.setdefault(payment_id, order_id)
        cur = await raw_execute(
            self.session,
            _SETTLE_MANY,
            {"ids": list(wanted), "orders": list(wanted.values()), "now": now},
            operation="UPDATE",
        )
        done = {(r[0], r[1]) for r in await cur.fetchall()}
        rest = [pid for pid in wanted if (pid, wanted[pid]) not in done]
        if rest:
            cur = await raw_execute(self.session, _SETTLED_WITH, (rest,), operation="SELECT")
            done |= {(r[0], r[1]) for r in await cur.fetchall() if r[1] is not None}
        return {pair for pair in settlements if pair in done}

    async def by_request(self, request_id: str) -> Payment | None:
        r = await self._one(_BY_REQUEST, (request_id,))
        return _payment(r) if r else None

    async def find_for_event(
        self, payment_id: str | None, session_id: str | None, provider_id: str | None
    ) -> Payment | None:
        conds: list[tuple[str, Any]] = []
        if payment_id:
            try:
                conds.append(("id", uuid.UUID(payment_id)))
            except ValueError:
                pass
        if session_id:
            conds.append(("session_id", session_id))
        if provider_id:
            conds.append(("payment_intent_id", provider_id))
        for column, value in conds:
            r = await self._one(_FOR_EVENT[column], (value,))
            if r:
                return _payment(r)
        return None

    async def apply_event(
        self, payment_id: uuid.UUID, event: GatewayEvent, now: datetime
    ) -> tuple[Payment, bool] | None:
        """Record ``event`` once and apply it to the payment ``payment_id`` in one statement (see
        ``_APPLY_EVENT``): the payment after it and whether this was the event's first delivery; None
        when no payment has this id (nothing recorded)."""
        status = event.status
        r = await self._one(
            _APPLY_EVENT,
            {
                "id": payment_id,
                "event": event.id,
                "type": event.type,
                "intent": event.provider_payment_id or None,
                "session": event.session_id or None,
                "sources": [s.value for s in sources(status)] if status else [],
                "status": status.value if status else None,
                "now": now,
            },
            "INSERT",
        )
        return (_payment(r), bool(r.first)) if r else None

    async def save(self, p: Payment, now: datetime) -> None:
        p.updated_at = now
        await raw_execute(
            self.session,
            _SAVE,
            {
                "id": p.id,
                "status": p.status.value,
                "session_id": p.session_id,
                "payment_url": p.payment_url,
                "payment_intent_id": p.provider_payment_id,
                "refund_id": p.refund_id,
                "now": now,
                "settled_at": p.settled_at,
                "settled_order_id": p.settled_order_id,
            },
            operation="UPDATE",
        )

    async def record_event(self, event_id: str, event_type: str, payment_id: uuid.UUID | None) -> bool:
        """True the first time an event id is seen; False for a duplicate delivery."""
        return await self._one(_RECORD_EVENT, (event_id, event_type, payment_id), "INSERT") is not None

    async def refund(self, request_id: str) -> Refund | None:
        r = (await self.session.execute(select(refunds).where(refunds.c.request_id == request_id))).first()
        return _refund(r) if r else None

    async def add_refund(self, r: Refund) -> Refund:
        """Insert; a concurrent request with the same id (same provider refund) keeps the first row."""
        await self.session.execute(
            pg_insert(refunds)
            .values(
                request_id=r.request_id,
                payment_id=r.payment_id,
                provider_refund_id=r.provider_refund_id,
                amount_minor=r.amount_minor,
                currency=r.currency,
                status=r.status,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            .on_conflict_do_nothing()
        )
        found = await self.refund(r.request_id)
        assert found is not None
        return found

    async def set_refund_status(self, provider_refund_id: str, status: str, now: datetime) -> None:
        await self.session.execute(
            update(refunds)
            .where(refunds.c.provider_refund_id == provider_refund_id)
            .values(status=status, updated_at=now)
        )

    async def refunds_of(self, payment_id: uuid.UUID) -> list[Refund]:
        q = (
            select(refunds)
            .where(refunds.c.payment_id == payment_id)
            .order_by(refunds.c.created_at, refunds.c.request_id)
        )
        return [_refund(r) for r in await self.session.execute(q)]

    async def pending_past(self, now: datetime, limit: int = 100) -> list[Payment]:
        q = (
            select(payments)
            .where(
                payments.c.status == PaymentStatus.PENDING.value,
                payments.c.expires_at <= now,
                payments.c.session_id.is_not(None),
            )
            .order_by(payments.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_payment(r) for r in await self.session.execute(q)]

    async def unsettled(self, changed_before: datetime, limit: int) -> list[Payment]:
        """Succeeded payments whose order nobody settled, last changed before ``changed_before``."""
        q = (
            select(payments)
            .where(
                payments.c.status == PaymentStatus.SUCCEEDED.value,
                payments.c.settled_at.is_(None),
                payments.c.updated_at <= changed_before,
            )
            .order_by(payments.c.updated_at)
            .limit(limit)
        )
        return [_payment(r) for r in await self.session.execute(q)]

    async def pending_to_check(self, checked_before: datetime, limit: int = 100) -> list[Payment]:
        """Open sessions not asked about since ``checked_before`` (created before it, too): claimed
        (skip locked) and stamped as checked, so replicas and ticks share the work."""
        q = (
            select(payments.c.id)
            .where(
                payments.c.status == PaymentStatus.PENDING.value,
                payments.c.session_id.is_not(None),
                func.coalesce(payments.c.checked_at, payments.c.created_at) <= checked_before,
            )
            .order_by(func.coalesce(payments.c.checked_at, payments.c.created_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = [r.id for r in await self.session.execute(q)]
        if not ids:
            return []
        rows = await self.session.execute(
            update(payments)
            .where(payments.c.id.in_(ids))
            .values(checked_at=func.now())
            .returning(*payments.c)
        )
        return [_payment(r) for r in rows]

    # -- a deleted account: the payments filed under its addresses ----------------------------------
    async def record_processed(self, event_id: uuid.UUID, topic: str, at: datetime) -> bool:
        stmt = pg_insert(processed_events).values(event_id=event_id, topic=topic, processed_at=at)
        inserted = await self.session.execute(
            stmt.on_conflict_do_nothing(index_elements=["event_id"]).returning(processed_events.c.event_id)
        )
        return inserted.first() is not None

    async def anonymise_customer(self, user_id: uuid.UUID, email_sha256: list[str], at: datetime) -> int:
        """Empty the customer email of the account's payments and of those filed under one of these
        addresses (hex SHA-256 of the lower-cased address); amounts, statuses and refunds stay."""
        digest = func.encode(
            func.sha256(func.convert_to(func.lower(payments.c.customer_email), "UTF8")), "hex"
        )
        result = await self.session.execute(
            update(payments)
            .where(
                payments.c.customer_email != "",
                (payments.c.customer_user_id == user_id) | digest.in_(email_sha256),
            )
            .values(customer_email="", updated_at=at)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def customer_payments(self, order_refs: list[str], email: str) -> list[Payment]:
        q = select(payments).where(
            payments.c.order_ref.in_(order_refs)
            | ((payments.c.customer_email == email) & (payments.c.customer_email != ""))
        )
        return [
            _payment(r) for r in await self.session.execute(q.order_by(payments.c.created_at, payments.c.id))
        ]
