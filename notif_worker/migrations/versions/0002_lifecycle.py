"""booking lifecycle order: the last version applied per booking, and events parked until the one
before them has been applied (the lifecycle topics are separate Kafka topics, so per-booking order
across them is restored here)

Revision ID: 0002_lifecycle
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_lifecycle"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "booking_progress",
        sa.Column("booking_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "parked_events",
        sa.Column("booking_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.BigInteger(), primary_key=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )

    # reminders of upcoming bookings: made when a booking is confirmed, moved on reschedule, dropped
    # on cancel/outcome; due ones are claimed with FOR UPDATE SKIP LOCKED, so replicas never double-send
    op.create_table(
        "reminders",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("booking_id", sa.String(64), nullable=False),
        sa.Column("offset_minutes", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("booking_id", "offset_minutes", name="one_reminder_per_offset"),
        sa.CheckConstraint("state IN ('PENDING','SENT','DROPPED')", name="reminder_state_known"),
    )
    op.create_index(
        "ix_reminders_due", "reminders", ["due_at"], postgresql_where=sa.text("state = 'PENDING'")
    )

    op.create_table(
        "preferences",
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("reminders_email", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("reminders_push", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("changes_email", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("changes_push", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("preferences")
    op.drop_table("reminders")
    op.drop_table("parked_events")
    op.drop_table("booking_progress")
