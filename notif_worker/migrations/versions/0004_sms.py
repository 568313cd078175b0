"""the SMS channel: owners' numbers (verified by a code, opted out by STOP), the clinics' SMS setting
(off by default) and monthly counts, and when a text was claimed and what it says (a text claimed by a
worker that died is checked with the provider before it is sent again)

Revision ID: 0004_sms
Revises: 0003_calendar_devices_quiet
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_sms"
down_revision = "0003_calendar_devices_quiet"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_phones",
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False, server_default=sa.text("''::bytea")),
        sa.Column("code_expires_at", sa.DateTime(timezone=True)),
        sa.Column("tries_left", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("codes_sent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("window_start", sa.DateTime(timezone=True)),
        sa.Column("verified_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("state IN ('PENDING','VERIFIED','OPTED_OUT')", name="sms_phone_state_known"),
    )
    op.create_index("ix_sms_phones_phone", "sms_phones", ["phone"])
    op.create_table(
        "clinic_sms",
        sa.Column("clinic_id", sa.Uuid(), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("monthly_cap", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "sms_usage",
        sa.Column("clinic_id", sa.Uuid(), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("sent", sa.Integer(), nullable=False),
    )
    # per category, like email and push (a constant default: metadata only, no rewrite of the table)
    for column in ("reminders_sms", "changes_sms"):
        op.add_column(
            "preferences", sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.true())
        )
    # a nullable column without a default: metadata only, no rewrite of deliveries
    op.add_column("deliveries", sa.Column("claimed_at", sa.DateTime(timezone=True)))
    op.add_column("deliveries", sa.Column("body", sa.Text()))
    # deliveries takes writes while the old code serves: the owner's-limit index without blocking them
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_deliveries_sms_recipient",
            "deliveries",
            ["recipient", "created_at"],
            postgresql_where=sa.text("channel = 'sms'"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    op.drop_index("ix_deliveries_sms_recipient", "deliveries")
    op.drop_column("deliveries", "body")
    op.drop_column("deliveries", "claimed_at")
    op.drop_column("preferences", "changes_sms")
    op.drop_column("preferences", "reminders_sms")
    op.drop_table("sms_usage")
    op.drop_table("clinic_sms")
    op.drop_table("sms_phones")
