"""the owner's locale on a reservation, carried into the booking events for the notifications

Revision ID: 0005_owner_locale
Revises: 0004_refund_rounds
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_owner_locale"
down_revision = "0004_refund_rounds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # expand only: a constant default is metadata-only in PostgreSQL 11+, no table rewrite; old code ignores it
    op.add_column("reservations", sa.Column("owner_locale", sa.String(35), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("reservations", "owner_locale")
