"""catalog, pets, reservations (no double booking by construction), bookings, outbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public")
    op.create_table(
        "clinics",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("address", sa.String(300), nullable=False, server_default=""),
        sa.Column("phone", sa.String(40), nullable=False, server_default=""),
        sa.Column("email", sa.String(254), nullable=False, server_default=""),
        # {"mon": [["09:00", "12:30"], ["13:30", "18:00"]], ...}; missing day = closed
        sa.Column("opening_hours", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "services",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("clinic_id", sa.Uuid(), sa.ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False, server_default="1"),
        sa.CheckConstraint("duration_minutes > 0 AND duration_minutes <= 1440", name="duration_positive"),
        sa.CheckConstraint("price_minor > 0", name="price_positive"),
        sa.CheckConstraint("capacity >= 1", name="capacity_positive"),
    )
    op.create_index("ix_services_clinic", "services", ["clinic_id"])
    op.create_table(
        "pets",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("species", sa.String(32), nullable=False),
        sa.Column("breed", sa.String(100), nullable=False, server_default=""),
        sa.Column("birth_date", sa.Date()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_pets_owner", "pets", ["owner_user_id", "created_at"])
    op.create_table(
        "reservations",
        sa.Column("lock_id", sa.Uuid(), primary_key=True),
        sa.Column("owner_user_id", sa.Uuid(), nullable=False),
        sa.Column("owner_email", sa.String(254), nullable=False),
        sa.Column("owner_name", sa.String(100), nullable=False, server_default=""),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("service_id", sa.Uuid(), sa.ForeignKey("services.id"), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("pet_id", sa.Uuid(), sa.ForeignKey("pets.id"), nullable=False),
        # capacity N = N parallel units (vets, tables); each reservation takes one unit
        sa.Column("unit", sa.SmallInteger(), nullable=False),
        sa.Column("during", postgresql.TSTZRANGE(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_id", sa.Uuid()),
        sa.Column("failure_reason", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("owner_user_id", "request_id", name="reservations_idempotency"),
        sa.CheckConstraint(
            "state IN ('HELD','CONFIRMED','EXPIRED','FAILED','CANCELLED')", name="state_known"
        ),
    )
    # The invariant, enforced by PostgreSQL itself: one active (held or confirmed) reservation per
    # service unit and overlapping time range.  Expired holds are moved to EXPIRED before a reserve.
    op.execute(
        "ALTER TABLE reservations ADD CONSTRAINT no_double_booking EXCLUDE USING gist "
        "(service_id WITH =, unit WITH =, during WITH &&) WHERE (state IN ('HELD', 'CONFIRMED'))"
    )
    op.create_index(
        "ix_reservations_held_expiry",
        "reservations",
        ["expires_at"],
        postgresql_where=sa.text("state = 'HELD'"),
    )
    op.create_index("ix_reservations_owner", "reservations", ["owner_user_id", "created_at"])
    op.create_table(
        "bookings",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("lock_id", sa.Uuid(), sa.ForeignKey("reservations.lock_id"), nullable=False, unique=True),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("owner_user_id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("pet_id", sa.Uuid(), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_bookings_owner", "bookings", ["owner_user_id", "created_at"])
    op.create_index("ix_bookings_clinic_start", "bookings", ["clinic_id", "start_time"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("traceparent", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_outbox_unsent", "outbox", ["id"], postgresql_where=sa.text("sent_at IS NULL"))


def downgrade() -> None:
    for table in ("outbox", "bookings", "reservations", "pets", "services", "clinics"):
        op.drop_table(table)
