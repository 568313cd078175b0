"""the owner's account: verified email, profile (phone, locale, time zone), link tokens

Revision ID: 0003_account_links
Revises: 0002_clinic_ops
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_account_links"
down_revision = "0002_clinic_ops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("email_verified_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("phone", sa.String(16), nullable=False, server_default=""))
    op.add_column("users", sa.Column("locale", sa.String(35), nullable=False, server_default=""))
    op.add_column("users", sa.Column("time_zone", sa.String(64), nullable=False, server_default=""))
    # the addresses of clinic staff came with their invitation (the proof of the address), the
    # service accounts' are reserved names: both count as verified; owners verify from now on
    op.execute("UPDATE users SET email_verified_at = created_at WHERE NOT ('OWNER' = ANY(roles))")
    op.create_table(
        "link_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("purpose IN ('PASSWORD_RESET', 'EMAIL_VERIFICATION')", name="link_purpose"),
    )
    op.create_index("ix_link_tokens_user_id", "link_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_table("link_tokens")
    for column in ("time_zone", "locale", "phone", "email_verified_at"):
        op.drop_column("users", column)
