"""processed events: the account.deleted events booking has applied (exactly-once erasure)

Revision ID: 0007_processed_events
Revises: 0006_pet_details
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_processed_events"
down_revision = "0006_pet_details"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("processed_events")
