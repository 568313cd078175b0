"""payment's use cases, one module per family: checkout sessions (sessions.py), provider webhooks
(webhooks.py), refunds (refunds.py) and reconciliation (reconciliation.py).  :class:`PaymentHandlers`
holds one of each over the same ports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from payment_svc.handlers.customers import Customers
from payment_svc.handlers.reconciliation import Reconciliation
from payment_svc.handlers.refunds import RefundCommand, Refunds
from payment_svc.handlers.sessions import CreateSession, Sessions
from payment_svc.handlers.webhooks import WebhookOutcome, Webhooks
from payment_svc.ports import PaymentGateway, UnitOfWork
from petpro.clock import utcnow


class PaymentHandlers:
    """Every use case of the payment service over one unit of work (``read``: read-only, no
    transaction; ``statements``: plain-SQL statements, each its own transaction, on psycopg's own
    autocommit connections, for a booking's hot paths: the session, its webhook, its settle), one
    gateway and one clock."""

    def __init__(
        self,
        uow: UnitOfWork,
        gateway: PaymentGateway,
        *,
        public_base_url: str,
        clock: Callable[[], datetime] = utcnow,
        read: UnitOfWork | None = None,
        statements: UnitOfWork | None = None,
    ) -> None:
        self.clock = clock
        hot = statements or read
        # Sessions' and the webhook's one-statement steps are all plain SQL (adapters/repository.py)
        self.sessions = Sessions(uow, gateway, public_base_url=public_base_url, clock=clock, read=hot)
        self.webhooks = Webhooks(uow, gateway, clock=clock, read=hot)
        self.refunds = Refunds(uow, gateway, clock=clock, read=read)
        self.reconciliation = Reconciliation(
            uow, gateway, self.sessions, clock=clock, read=read, statements=hot
        )
        self.customers = Customers(uow, read or uow, clock=clock)


__all__ = [
    "CreateSession",
    "Customers",
    "PaymentHandlers",
    "Reconciliation",
    "RefundCommand",
    "Refunds",
    "Sessions",
    "WebhookOutcome",
    "Webhooks",
]
