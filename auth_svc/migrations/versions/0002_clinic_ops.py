"""clinic memberships with a clinic role, staff invitations

Revision ID: 0002_clinic_ops
Revises: 0001
"""

# squawk-ignore ban-drop-column: users.clinic_ids is copied into clinic_memberships and dropped in one step;
#   released before migrations were linted; it has run on every installed database, so it stays as it ran. A new
#   drop waits one release after the code stopped reading the column (expand/contract).
import sqlalchemy as sa
from alembic import op

revision = "0002_clinic_ops"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clinic_memberships",
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("clinic_id", sa.Uuid(), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("role IN ('ADMIN', 'STAFF')", name="membership_role"),
    )
    op.create_index("ix_clinic_memberships_clinic", "clinic_memberships", ["clinic_id"])
    # staff accounts seeded before clinic roles: members with the STAFF role
    op.execute(
        "INSERT INTO clinic_memberships (user_id, clinic_id, role)"
        " SELECT id, unnest(clinic_ids)::uuid, 'STAFF' FROM users ON CONFLICT DO NOTHING"
    )
    op.drop_column("users", "clinic_ids")
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("invited_by", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_invitations_clinic_email", "invitations", ["clinic_id", "email"])


def downgrade() -> None:
    op.drop_table("invitations")
    op.add_column(
        "users", sa.Column("clinic_ids", sa.ARRAY(sa.String(64)), nullable=False, server_default="{}")
    )
    op.drop_table("clinic_memberships")
