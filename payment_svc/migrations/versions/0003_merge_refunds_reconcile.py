"""merge the refunds (lifecycle) and reconciliation (hardening) branches of the payment schema (both revise 0001)

Revision ID: 0003_merge_refunds_reconcile
Revises: 0002, 0002_refunds
"""

revision = "0003_merge_refunds_reconcile"
down_revision = ("0002", "0002_refunds")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
