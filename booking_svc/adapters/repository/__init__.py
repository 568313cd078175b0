"""The BookingRepository port on SQLAlchemy 2.0 + psycopg 3: the queries of one unit of work, split per
aggregate (catalog, pets, reservations, bookings).  The races the schema decides come out as domain
errors or results, never as driver errors."""

from __future__ import annotations

from booking_svc.adapters.repository.bookings import BookingQueries
from booking_svc.adapters.repository.catalog import CatalogQueries
from booking_svc.adapters.repository.moves import MoveQueries
from booking_svc.adapters.repository.owners import OwnerQueries
from booking_svc.adapters.repository.pets import PetQueries
from booking_svc.adapters.repository.reservations import ReservationQueries
from booking_svc.adapters.repository.schedule import ScheduleQueries


class BookingRepository(
    CatalogQueries, PetQueries, ReservationQueries, BookingQueries, OwnerQueries, ScheduleQueries, MoveQueries
):
    """Queries of one unit of work (a session in a transaction) or of a read-only autocommit connection."""


__all__ = ["BookingRepository"]
