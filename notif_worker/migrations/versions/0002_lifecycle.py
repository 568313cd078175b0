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


def downgrade() -> None:
    op.drop_table("parked_events")
    op.drop_table("booking_progress")
