"""processed events: the account.deleted events payment has applied (exactly-once anonymisation), and
the payer's account on each payment (what finds a deleted account's payments)

Revision ID: 0004_processed_events
Revises: 0003_merge_refunds_reconcile
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_processed_events"
down_revision = "0003_merge_refunds_reconcile"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable, no default: no rewrite; the running code does not know it (payments before it have none).
    # No index: it is read only when an account is deleted (rare), by a scan
    op.add_column("payments", sa.Column("customer_user_id", sa.Uuid()))
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("processed_events")
    op.drop_column("payments", "customer_user_id")
