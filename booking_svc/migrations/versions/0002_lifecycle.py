"""booking lifecycle: cancellation policy on services (copied onto bookings), refunds owed, change
requests (AIP-155 request ids), version counter

Revision ID: 0002_lifecycle
Revises: 0001
"""

# squawk-ignore constraint-missing-not-valid: the CHECKs are on columns this migration adds with valid
#   defaults, so every row passes, but the scan runs under the lock; released before migrations were linted; it
#   has run on every installed database, so it stays as it ran. A new CHECK on a large table is added NOT VALID
#   and validated in the next migration.
# squawk-ignore require-concurrent-index-creation: ix_bookings_refund_open is partial (open refunds: none
#   existed yet); Alembic runs in a transaction, where CONCURRENTLY is refused. released before migrations were
#   linted; it has run on every installed database, so it stays as it ran.
import sqlalchemy as sa
from alembic import op

revision = "0002_lifecycle"
down_revision = "0001"
branch_labels = None
depends_on = None

POLICY = (("full_refund_hours", 24), ("late_refund_percent", 50), ("reschedule_cutoff_hours", 24))


def upgrade() -> None:
    op.add_column(
        "clinics",
        sa.Column(
            "reminder_offsets_minutes", sa.ARRAY(sa.Integer()), nullable=False, server_default="{2880,120}"
        ),
    )
    for name, default in POLICY:
        op.add_column("services", sa.Column(name, sa.Integer(), nullable=False, server_default=str(default)))
        # the booking's own copy, taken at confirmation
        op.add_column(
            "bookings", sa.Column(f"policy_{name}", sa.Integer(), nullable=False, server_default=str(default))
        )
    op.create_check_constraint(
        "policy_valid",
        "services",
        "full_refund_hours BETWEEN 0 AND 8760 AND late_refund_percent BETWEEN 0 AND 100 "
        "AND reschedule_cutoff_hours BETWEEN 0 AND 8760",
    )
    op.add_column("bookings", sa.Column("refund_minor", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("bookings", sa.Column("refund_state", sa.String(16), nullable=False, server_default="NONE"))
    op.add_column(
        "bookings", sa.Column("provider_refund_id", sa.String(255), nullable=False, server_default="")
    )
    op.add_column("bookings", sa.Column("refund_updated_at", sa.DateTime(timezone=True)))
    op.add_column("bookings", sa.Column("refund_attempts", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("bookings", sa.Column("refund_next_at", sa.DateTime(timezone=True)))
    op.add_column("bookings", sa.Column("refund_error", sa.Text(), nullable=False, server_default=""))
    op.add_column("bookings", sa.Column("cancel_reason", sa.String(500), nullable=False, server_default=""))
    op.add_column("bookings", sa.Column("cancelled_by", sa.String(16)))
    op.add_column("bookings", sa.Column("updated_at", sa.DateTime(timezone=True)))
    op.add_column("bookings", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("bookings", sa.Column("reschedule_count", sa.Integer(), nullable=False, server_default="0"))
    op.create_check_constraint(
        "booking_state_known", "bookings", "state IN ('CONFIRMED','CANCELLED','COMPLETED','NO_SHOW')"
    )
    op.create_check_constraint(
        "refund_state_known",
        "bookings",
        "refund_state IN ('NONE','PENDING','PROCESSING','SUCCEEDED','FAILED')",
    )
    op.create_check_constraint("refund_within_amount", "bookings", "refund_minor BETWEEN 0 AND amount_minor")
    op.create_index(
        "ix_bookings_refund_open",
        "bookings",
        ["refund_next_at"],
        postgresql_where=sa.text("refund_state IN ('PENDING','PROCESSING')"),
    )
    # AIP-155: a lifecycle request id → the booking it changed (a retry answers with that booking)
    op.create_table(
        "booking_requests",
        sa.Column("request_id", sa.Uuid(), primary_key=True),
        sa.Column("booking_id", sa.Uuid(), sa.ForeignKey("bookings.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("booking_requests")
    op.drop_column("clinics", "reminder_offsets_minutes")
    op.drop_index("ix_bookings_refund_open", "bookings")
    for name in ("refund_within_amount", "refund_state_known", "booking_state_known"):
        op.drop_constraint(name, "bookings")
    for col in (
        "reschedule_count",
        "version",
        "updated_at",
        "cancelled_by",
        "cancel_reason",
        "refund_error",
        "refund_next_at",
        "refund_attempts",
        "refund_updated_at",
        "provider_refund_id",
        "refund_state",
        "refund_minor",
    ):
        op.drop_column("bookings", col)
    op.drop_constraint("policy_valid", "services")
    for name, _ in POLICY:
        op.drop_column("bookings", f"policy_{name}")
        op.drop_column("services", name)
