"""scheduling by providers, resources and pets (issue 20, docs/design/scheduling.md): providers and their
time off, resource types and items, what a service needs, and the claims every active reservation holds,
each kind guarded by its own named exclusion constraint.  Expand only: nothing existing is changed or
dropped (``no_double_booking`` stays until a later contract step); the existing active reservations get
their unit and pet claims, so every existing clinic keeps booking as before.

Revision ID: 0008_scheduling
Revises: 0007_processed_events
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008_scheduling"
down_revision = "0007_processed_events"
branch_labels = None
depends_on = None

ACTIVE = "state IN ('HELD', 'CONFIRMED')"


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("clinic_id", sa.Uuid(), sa.ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False),
        # a small number per clinic: the reservation's ``unit`` of a service with providers
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("user_id", sa.Uuid()),
        # {"mon": [["09:00", "12:30"], ["13:30", "18:00"]], ...} like the clinic's; missing day = off
        sa.Column("weekly_hours", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("request_id", sa.Uuid()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("clinic_id", "seq", name="providers_seq"),
        sa.UniqueConstraint("request_id", name="providers_request"),
    )
    op.create_table(
        "provider_time_off",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "provider_id", sa.Uuid(), sa.ForeignKey("providers.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("during", postgresql.TSTZRANGE(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.execute(
        "ALTER TABLE provider_time_off ADD CONSTRAINT time_off_no_overlap EXCLUDE USING gist "
        "(provider_id WITH =, during WITH &&)"
    )
    op.create_table(
        "resource_types",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("clinic_id", sa.Uuid(), sa.ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.UniqueConstraint("clinic_id", "name", name="resource_types_name"),
    )
    op.create_table(
        "resources",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("clinic_id", sa.Uuid(), sa.ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type_id", sa.Uuid(), sa.ForeignKey("resource_types.id"), nullable=False),
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("species", postgresql.ARRAY(sa.String(32)), nullable=False, server_default="{}"),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("request_id", sa.Uuid()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("clinic_id", "seq", name="resources_seq"),
        sa.UniqueConstraint("request_id", name="resources_request"),
    )
    op.create_table(
        "service_providers",
        sa.Column(
            "service_id", sa.Uuid(), sa.ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("provider_id", sa.Uuid(), sa.ForeignKey("providers.id"), primary_key=True),
    )
    op.create_table(
        "service_needs",
        sa.Column(
            "service_id", sa.Uuid(), sa.ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("type_id", sa.Uuid(), sa.ForeignKey("resource_types.id"), primary_key=True),
        sa.Column("quantity", sa.SmallInteger(), nullable=False),
        sa.CheckConstraint("quantity BETWEEN 1 AND 10", name="need_quantity"),
    )
    # what an active reservation holds; ``active`` and ``during`` follow the reservation's state and
    # range in the statement that changes them (trigger below)
    op.create_table(
        "claims",
        sa.Column(
            "lock_id",
            sa.Uuid(),
            sa.ForeignKey("reservations.lock_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("subject_id", sa.Uuid(), primary_key=True),
        sa.Column("unit", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("during", postgresql.TSTZRANGE(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.CheckConstraint("kind IN ('unit', 'provider', 'resource', 'pet')", name="claim_kind"),
    )
    for kind, name in (("provider", "claims_provider_free"), ("resource", "claims_resource_free")):
        op.execute(
            f"ALTER TABLE claims ADD CONSTRAINT {name} EXCLUDE USING gist "
            f"(subject_id WITH =, during WITH &&) WHERE (active AND kind = '{kind}')"
        )
    op.execute(
        "ALTER TABLE claims ADD CONSTRAINT claims_pet_free EXCLUDE USING gist "
        "(subject_id WITH =, during WITH &&) WHERE (active AND kind = 'pet')"
    )
    op.execute(
        "ALTER TABLE claims ADD CONSTRAINT claims_unit_free EXCLUDE USING gist "
        "(subject_id WITH =, unit WITH =, during WITH &&) WHERE (active AND kind = 'unit')"
    )
    # availability reads a clinic's active claims over a day or a month
    op.execute("CREATE INDEX ix_claims_clinic_during ON claims USING gist (clinic_id, during) WHERE active")
    # the assignment, on the reservation and (copied at confirmation) on the booking
    for table in ("reservations", "bookings"):
        op.add_column(table, sa.Column("provider_id", sa.Uuid()))
        op.add_column(table, sa.Column("assignment", sa.String(24)))
        op.add_column(
            table,
            sa.Column("resource_ids", postgresql.ARRAY(sa.Uuid()), nullable=False, server_default="{}"),
        )
    # claims follow their reservation: a state change (confirm, cancel, expire, fail) flips ``active``,
    # a move shifts ``during`` (keeping each claim's buffer) and a unit claim's unit, in the same statement
    # (the function keeps the schema it was made in: a session with another search path, e.g. an operator's
    # psql or a test qualifying booking.reservations, still finds the claims)
    op.execute(
        f"""
CREATE FUNCTION claims_follow_reservation() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  UPDATE claims SET
    active = NEW.{ACTIVE},
    during = tstzrange(lower(NEW.during), upper(NEW.during) + (upper(claims.during) - upper(OLD.during))),
    unit = CASE WHEN claims.kind = 'unit' THEN NEW.unit ELSE claims.unit END
  WHERE claims.lock_id = NEW.lock_id;
  RETURN NULL;
END $$"""
    )
    op.execute(
        "CREATE TRIGGER claims_follow_reservation AFTER UPDATE OF state, during, unit ON reservations "
        "FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.during IS DISTINCT FROM NEW.during "
        "OR OLD.unit IS DISTINCT FROM NEW.unit) EXECUTE FUNCTION claims_follow_reservation()"
    )
    # backfill: every active reservation claims its unit (as no_double_booking guards it) and its pet;
    # of a pet's overlapping active reservations made before this migration the first keeps the claim
    op.execute(
        f"""INSERT INTO claims (lock_id, kind, subject_id, unit, clinic_id, during, active)
SELECT lock_id, 'unit', service_id, unit, clinic_id, during, true FROM reservations WHERE {ACTIVE}"""
    )
    op.execute(
        f"""INSERT INTO claims (lock_id, kind, subject_id, unit, clinic_id, during, active)
SELECT lock_id, 'pet', pet_id, 0, clinic_id, during, true FROM reservations WHERE {ACTIVE}
ORDER BY lower(during), lock_id
ON CONFLICT DO NOTHING"""
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER claims_follow_reservation ON reservations")
    op.execute("DROP FUNCTION claims_follow_reservation()")
    for table in ("reservations", "bookings"):
        for col in ("resource_ids", "assignment", "provider_id"):
            op.drop_column(table, col)
    for table in (
        "claims",
        "service_needs",
        "service_providers",
        "resources",
        "resource_types",
        "provider_time_off",
        "providers",
    ):
        op.drop_table(table)
