"""clinic operations: service rules (species, buffer, notice, horizon, active, archived, version),
clinic version, closures, day overrides, the catalog version that invalidates catalog caches

Revision ID: 0002_clinic_ops
Revises: 0001
"""

# squawk-ignore constraint-missing-not-valid: the CHECK and UNIQUE constraints are on clinics and services,
#   the catalog (hundreds of rows at most): the validating scan takes milliseconds. released before migrations
#   were linted; it has run on every installed database, so it stays as it ran.
# squawk-ignore disallowed-unique-constraint: UNIQUE (request_id) on clinics and services, the catalog
#   (hundreds of rows): its index builds in milliseconds under the lock. released before migrations were linted;
#   it has run on every installed database, so it stays as it ran.
# squawk-ignore prefer-identity: catalog_state is a one-row table (id 1) holding the catalog version; its
#   SMALLSERIAL is never used. released before migrations were linted; it has run on every installed database,
#   so it stays as it ran.
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_clinic_ops"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clinics", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    # idempotency keys of CreateClinic / CreateService (AIP-155); NULL for seeded rows
    op.add_column("clinics", sa.Column("request_id", sa.Uuid(), unique=True))
    op.add_column("services", sa.Column("request_id", sa.Uuid(), unique=True))
    for name, col in [
        (
            "species_allowed",
            sa.Column(
                "species_allowed", postgresql.ARRAY(sa.String(32)), nullable=False, server_default="{}"
            ),
        ),
        (
            "buffer_after_minutes",
            sa.Column("buffer_after_minutes", sa.Integer(), nullable=False, server_default="0"),
        ),
        (
            "min_notice_minutes",
            sa.Column("min_notice_minutes", sa.Integer(), nullable=False, server_default="0"),
        ),
        (
            "max_horizon_days",
            sa.Column("max_horizon_days", sa.Integer(), nullable=False, server_default="180"),
        ),
        ("active", sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())),
        ("archived_at", sa.Column("archived_at", sa.DateTime(timezone=True))),
        ("version", sa.Column("version", sa.Integer(), nullable=False, server_default="1")),
    ]:
        assert name == col.name
        op.add_column("services", col)
    op.create_check_constraint("buffer_range", "services", "buffer_after_minutes BETWEEN 0 AND 240")
    op.create_check_constraint("notice_range", "services", "min_notice_minutes BETWEEN 0 AND 43200")
    op.create_check_constraint("horizon_range", "services", "max_horizon_days BETWEEN 1 AND 365")
    op.create_table(
        "closures",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("clinic_id", sa.Uuid(), sa.ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("end_date >= start_date", name="closure_dates"),
    )
    op.create_index("ix_closures_clinic_end", "closures", ["clinic_id", "end_date"])
    op.create_table(
        "day_overrides",
        sa.Column("clinic_id", sa.Uuid(), sa.ForeignKey("clinics.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("intervals", postgresql.JSONB(), nullable=False),  # [["09:00", "12:00"], ...]; [] = closed
    )
    # one row: bumped in the transaction of every catalog change; caches compare it on every read
    op.create_table(
        "catalog_state",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.execute("INSERT INTO catalog_state (id, version) VALUES (1, 1)")


def downgrade() -> None:
    op.drop_table("catalog_state")
    op.drop_table("day_overrides")
    op.drop_table("closures")
    for name in (
        "request_id",
        "version",
        "archived_at",
        "active",
        "max_horizon_days",
        "min_notice_minutes",
        "buffer_after_minutes",
        "species_allowed",
    ):
        op.drop_column("services", name)
    op.drop_column("clinics", "request_id")
    op.drop_column("clinics", "version")
