"""refund rounds: a refund the provider accepted and then failed is made again under a new key

Revision ID: 0004_refund_rounds
Revises: 0003_merge_lifecycle_clinic_ops
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_refund_rounds"
down_revision = "0003_merge_lifecycle_clinic_ops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0: the booking's first refund (request id booking-<id>); n: its n-th new attempt after a failure
    op.add_column("bookings", sa.Column("refund_round", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("bookings", "refund_round")
