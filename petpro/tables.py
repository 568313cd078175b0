"""The tables of the kit's helpers, in the schema of each service that uses them: the transactional
outbox (:mod:`petpro.outbox`) and the events consumed exactly once (:mod:`petpro.subscriber`).  Only
SQLAlchemy Core here: the services' ``adapters/tables.py`` import them, and so does ``petpro migrate``
(the migrations' metadata), which needs neither kafka-python nor the async engine."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Uuid,
    func,
    text,
)


def outbox_table(metadata: MetaData) -> Table:
    """The ``outbox`` table of a service that publishes events (its migration creates the same)."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("event_type", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("traceparent", String(64), nullable=False, server_default=""),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
    )


def processed_events_table(metadata: MetaData) -> Table:
    """The events a service consumed from others, each recorded in the transaction of its effect
    (exactly once); its migration creates the same."""
    return Table(
        "processed_events",
        metadata,
        Column("event_id", Uuid, primary_key=True),
        Column("topic", String(200), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
