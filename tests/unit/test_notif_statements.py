"""notif_worker's hot statements stay within what psycopg caches."""

from __future__ import annotations


def test_the_statements_of_new_bookings_and_cancellations_fit_psycopgs_parse_cache() -> None:
    """psycopg parses a statement's placeholders once only when it is at most
    MAX_CACHED_STATEMENT_LENGTH bytes: the record statement of a booking.created event (reminders
    scheduled; none, when the clinic sets none) and of a cancellation (reminders dropped) must fit, or
    every event pays the parse again (a reschedule's, with its reminders moved, is longer)."""
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    from notif_worker.adapters.repository import RECORD

    for change in ("schedule", None, "drop"):
        assert len(RECORD[change].encode()) <= MAX_CACHED_STATEMENT_LENGTH - 64, change
