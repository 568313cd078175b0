"""the owners' bookings (their calendar feed), calendar feed tokens (hashed), the clinics' quiet
hours, and devices by token (a token belongs to one owner: the latest to register it)

Revision ID: 0003_calendar_devices_quiet
Revises: 0002_lifecycle
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_calendar_devices_quiet"
down_revision = "0002_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "owner_bookings",
        sa.Column("booking_id", sa.String(64), primary_key=True),
        sa.Column("owner_user_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_owner_bookings_owner_end", "owner_bookings", ["owner_user_id", "slot_end"])
    op.create_table(
        "calendar_tokens",
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "clinic_quiet_hours",
        sa.Column("clinic_id", sa.Uuid(), primary_key=True),
        sa.Column("starts", sa.String(5), nullable=False),
        sa.Column("ends", sa.String(5), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # devices is an existing table that takes writes while the old code serves: build its indexes
    # without blocking them (CONCURRENTLY cannot run inside the migration's transaction)
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_devices_token", "devices", ["token"], postgresql_concurrently=True, if_not_exists=True
        )
        op.create_index(
            "ix_devices_user", "devices", ["user_id"], postgresql_concurrently=True, if_not_exists=True
        )


def downgrade() -> None:
    op.drop_index("ix_devices_user", "devices")
    op.drop_index("ix_devices_token", "devices")
    op.drop_table("clinic_quiet_hours")
    op.drop_table("calendar_tokens")
    op.drop_table("owner_bookings")
