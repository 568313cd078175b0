"""erased accounts: the account.deleted events notif has applied (exactly once), with what finds the
account's rows again when a late booking event writes some

Revision ID: 0005_erased_accounts
Revises: 0004_sms
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_erased_accounts"
down_revision = "0004_sms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_accounts",
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("email_sha256", postgresql.ARRAY(sa.String(64)), nullable=False),
        # NULL while the erasure is under way (the account counts as gone from the moment the row exists)
        sa.Column("erased_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("erased_accounts")
