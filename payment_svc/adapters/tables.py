"""payment's schema: the SQLAlchemy tables of payments, received webhook events and refunds
(``metadata`` is what the migrations' env.py and the schema-drift check compare against)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)

from petpro.tables import processed_events_table

SCHEMA = "payment"
metadata = MetaData(schema=SCHEMA)

payments = Table(
    "payments",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("order_ref", String(128), nullable=False),
    Column("request_id", String(128), nullable=False, unique=True),
    Column("session_id", String(255), unique=True),
    Column("payment_url", Text),
    Column("payment_intent_id", String(255)),
    Column("status", String(32), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("customer_email", String(254), nullable=False, server_default=""),
    Column("customer_user_id", Uuid),  # the payer's account: a deleted account's payments are found by it
    Column("refund_id", String(255)),
    Column("expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("settled_at", DateTime(timezone=True)),
    Column("settled_order_id", String(255)),
    Column("checked_at", DateTime(timezone=True)),
    Index("ix_payments_order_ref", "order_ref"),
    # the reconciler's two scans: succeeded-but-unsettled, and pending sessions to ask the provider about
    Index(
        "ix_payments_unsettled",
        "updated_at",
        postgresql_where=text("status = 'SUCCEEDED' AND settled_at IS NULL"),
    ),
    Index(
        "ix_payments_pending_check",
        "checked_at",
        postgresql_where=text("status = 'PENDING' AND session_id IS NOT NULL"),
    ),
)
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("type", String(128), nullable=False),
    Column("payment_id", Uuid),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
refunds = Table(
    "refunds",
    metadata,
    Column("request_id", String(200), primary_key=True),
    Column("payment_id", Uuid, ForeignKey("payments.id"), nullable=False),
    Column("provider_refund_id", String(255), nullable=False, unique=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount_minor > 0", name="refund_amount_positive"),
    Index("ix_refunds_payment", "payment_id"),
)
# events consumed from other services (account.deleted), each recorded with its effect: exactly once
processed_events = processed_events_table(metadata)
