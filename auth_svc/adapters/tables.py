"""auth's schema as SQLAlchemy tables: users, clinic memberships, invitations, sessions, link tokens
(password reset, email verification) (migrations' env.py and the schema-drift test read ``metadata``
from here)."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
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
)

from petpro.tables import outbox_table

SCHEMA = "auth"
metadata = MetaData(schema=SCHEMA)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("roles", ARRAY(String(32)), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("email_verified_at", DateTime(timezone=True)),
    Column("phone", String(16), nullable=False, server_default=""),
    Column("locale", String(35), nullable=False, server_default=""),
    Column("time_zone", String(64), nullable=False, server_default=""),
    Column("deleted_at", DateTime(timezone=True)),
)

clinic_memberships = Table(
    "clinic_memberships",
    metadata,
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("clinic_id", Uuid, primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("role IN ('ADMIN', 'STAFF')", name="membership_role"),
    Index("ix_clinic_memberships_clinic", "clinic_id"),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("clinic_id", Uuid, nullable=False),
    Column("email", String(254), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("invited_by", Uuid, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("accepted_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_invitations_clinic_email", "clinic_id", "email"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("refresh_hash", String(64), nullable=False),
    Column("refresh_expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_sessions_user_id", "user_id"),
)

link_tokens = Table(
    "link_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey(users.c.id, ondelete="CASCADE"), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("email", String(254), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    CheckConstraint("purpose IN ('PASSWORD_RESET', 'EMAIL_VERIFICATION')", name="link_purpose"),
    Index("ix_link_tokens_user_id", "user_id"),
)

# AccountDeleted events, relayed to Kafka by petpro.outbox (the same table as booking's)
outbox = outbox_table(metadata)
