"""pay at the clinic (issue 20, staff operations): a booking staff confirm without an online payment has
no ``payment_id`` and ``pay_at_clinic`` set.  Expand only: the column is added with a constant default
(no rewrite on PostgreSQL 11+), and dropping NOT NULL only widens what the column accepts (old code
always writes a payment id).

Revision ID: 0009_pay_at_clinic
Revises: 0008_scheduling
"""

# squawk-ignore ban-drop-not-null: bookings.payment_id is only written by booking_svc, which reads NULL
# as "pay at the clinic" from this release on; the previous release never reads a booking it did not
# confirm with a payment (pay-at-clinic bookings are made by this release only), and no other client
# reads the booking schema.  Dropping NOT NULL takes a brief ACCESS EXCLUSIVE lock, no rewrite.

import sqlalchemy as sa
from alembic import op

revision = "0009_pay_at_clinic"
down_revision = "0008_scheduling"
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
