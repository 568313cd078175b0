"""pay at the clinic (issue 20, staff operations): a booking staff confirm without an online payment has
no ``payment_id`` and ``pay_at_clinic`` set.  Expand only: the column is added with a constant default
(no rewrite on PostgreSQL 11+), and dropping NOT NULL only widens what the column accepts (old code
always writes a payment id).

Revision ID: 0006_pay_at_clinic
Revises: 0005_scheduling
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_pay_at_clinic"
down_revision = "0005_scheduling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "bookings", sa.Column("pay_at_clinic", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.alter_column("bookings", "payment_id", nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM bookings WHERE payment_id IS NULL")
    op.alter_column("bookings", "payment_id", nullable=False)
    op.drop_column("bookings", "pay_at_clinic")
