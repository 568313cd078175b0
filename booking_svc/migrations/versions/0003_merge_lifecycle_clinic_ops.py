"""merge the lifecycle and clinic-ops branches of the booking schema (both revise 0001)

Revision ID: 0003_merge_lifecycle_clinic_ops
Revises: 0002_lifecycle, 0002_clinic_ops
"""

revision = "0003_merge_lifecycle_clinic_ops"
down_revision = ("0002_lifecycle", "0002_clinic_ops")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
