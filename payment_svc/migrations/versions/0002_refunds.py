"""refunds: one row per refund request (booking cancellations, lost slots), state from the provider

Revision ID: 0002_refunds
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_refunds"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("payment_id", sa.Uuid(), sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("provider_refund_id", sa.String(255), nullable=False, unique=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("amount_minor > 0", name="refund_amount_positive"),
    )
    op.create_index("ix_refunds_payment", "refunds", ["payment_id"])


def downgrade() -> None:
    op.drop_table("refunds")
