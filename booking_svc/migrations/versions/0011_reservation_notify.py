"""a reservation's state change is signalled (issue 24, the status long-poll): ``NOTIFY
booking_reservation_state`` with the lock id, delivered at commit to every booking replica that
listens, so a ``GetReservation`` waiting on that hold answers at once.  Expand only: a trigger and its
function; the previous release neither listens nor minds (a NOTIFY nobody listens to is dropped).

Revision ID: 0011_reservation_notify
Revises: 0010_clinic_locale
"""

from alembic import op

revision = "0011_reservation_notify"
down_revision = "0010_clinic_locale"
branch_labels = None
depends_on = None

CHANNEL = "booking_reservation_state"  # booking_svc.adapters.watch.CHANNEL


def upgrade() -> None:
    # every writer of a state (confirm, fail, cancel, expire, the sweeps) is covered, whatever its
    # statement; the function keeps the schema it was made in (as claims_follow_reservation does)
    op.execute(
        f"""
CREATE FUNCTION reservation_state_notify() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', NEW.lock_id::text);
  RETURN NULL;
END $$"""
    )
    op.execute(
        "CREATE TRIGGER reservation_state_notify AFTER UPDATE OF state ON reservations "
        "FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION reservation_state_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER reservation_state_notify ON reservations")
    op.execute("DROP FUNCTION reservation_state_notify()")
