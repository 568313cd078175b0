"""reconciliation: when a succeeded payment's order was fulfilled, and when the provider was last asked

Revision ID: 0002
Revises: 0001
"""

# squawk-ignore require-concurrent-index-creation: the partial indexes cover the columns this migration adds
#   (NULL for every existing row); Alembic runs in a transaction, where CONCURRENTLY is refused. released before
#   migrations were linted; it has run on every installed database, so it stays as it ran.
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("settled_at", sa.DateTime(timezone=True)))
    op.add_column("payments", sa.Column("settled_order_id", sa.String(255)))
    op.add_column("payments", sa.Column("checked_at", sa.DateTime(timezone=True)))
    # the reconciler's two scans: succeeded-but-unsettled, and pending sessions to ask the provider about
    op.create_index(
        "ix_payments_unsettled",
        "payments",
        ["updated_at"],
        postgresql_where=sa.text("status = 'SUCCEEDED' AND settled_at IS NULL"),
    )
    op.create_index(
        "ix_payments_pending_check",
        "payments",
        ["checked_at"],
        postgresql_where=sa.text("status = 'PENDING' AND session_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_payments_pending_check", "payments")
    op.drop_index("ix_payments_unsettled", "payments")
    op.drop_column("payments", "checked_at")
    op.drop_column("payments", "settled_order_id")
    op.drop_column("payments", "settled_at")
