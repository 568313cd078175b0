"""a reservation's state change says what it changed to (issue 24, the status long-poll): besides 0011's
``NOTIFY booking_reservation_state, '<lock id>'`` the trigger sends ``NOTIFY booking_reservation_change,
'<lock id>|<state>|<payment id>|<booking id>'``, so a ``GetReservation`` woken by it answers without
reading the reservation again (one read per long-poll instead of two).
The booking id is the one committed with the change (ConfirmBooking inserts the booking in the same
statement; an AFTER trigger sees it), '' when there is none (yet).  Expand only: the previous release
LISTENs on 0011's channel, which keeps its payload; a later release may drop that notification.

Revision ID: 0013_reservation_change_news
Revises: 0012_hold_scheduled_fn
"""

from alembic import op

revision = "0013_reservation_change_news"
down_revision = "0012_hold_scheduled_fn"
branch_labels = None
depends_on = None

CHANNEL = "booking_reservation_state"  # 0011's: the lock id alone (the previous release listens)
NEWS_CHANNEL = "booking_reservation_change"  # booking_svc.adapters.watch.CHANNEL

# (the function keeps the schema it was made in, as 0011's did)
NEWS = f"""
CREATE OR REPLACE FUNCTION reservation_state_notify() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', NEW.lock_id::text);
  PERFORM pg_notify('{NEWS_CHANNEL}', NEW.lock_id::text || '|' || NEW.state || '|'
    || coalesce(NEW.payment_id::text, '') || '|'
    || coalesce((SELECT b.id::text FROM bookings b WHERE b.lock_id = NEW.lock_id), ''));
  RETURN NULL;
END $$"""

PREVIOUS = f"""
CREATE OR REPLACE FUNCTION reservation_state_notify() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', NEW.lock_id::text);
  RETURN NULL;
END $$"""


def upgrade() -> None:
    op.execute(NEWS)


def downgrade() -> None:
    op.execute(PREVIOUS)
