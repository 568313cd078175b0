"""Database errors caused by a client's value → the client's error, not an outage.

A value that PostgreSQL refuses (a NUL in text, a number out of range, a string too long for its
column, a constraint the request broke) is the caller's mistake: INVALID_ARGUMENT or
FAILED_PRECONDITION.  Validation in the protos should stop such values earlier; this is the net
under it, so the class can never surface as UNAVAILABLE ("retry later", forever) or INTERNAL.
A lost or refused connection (the database restarting, a failover, the pool exhausted) is an outage
of a dependency, not a bug: UNAVAILABLE ("retry later", :func:`unavailable`), never INTERNAL.
"""

from __future__ import annotations

from petpro.errors import DomainError, FailedPrecondition, InvalidArgument, Unavailable

# SQLSTATE classes (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_DATA_EXCEPTION = "22"  # invalid text representation, out of range, NUL, right truncation …
_INTEGRITY = "23"  # not null, foreign key, unique, check, exclusion
_CONNECTION = "08"  # connection exception
_OPERATOR_INTERVENTION = "57"  # admin/crash shutdown, cannot connect now (a restart)
_ROLLBACK = "40"  # serialization failure, deadlock: the same call succeeds when retried


def _driver_error(exc: BaseException) -> tuple[BaseException, object]:
    """The driver's exception under a SQLAlchemy wrapper (or the exception itself) and its SQLSTATE."""
    orig = getattr(exc, "orig", None) or exc
    return orig, getattr(orig, "sqlstate", None) or ""


def unavailable(exc: BaseException) -> DomainError | None:
    """UNAVAILABLE for a database or Redis that cannot be reached right now, else None."""
    import psycopg

    orig, sqlstate = _driver_error(exc)
    lost = (
        isinstance(sqlstate, str) and sqlstate[:2] in (_CONNECTION, _OPERATOR_INTERVENTION, _ROLLBACK)
    ) or (not sqlstate and isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError))
    module = type(exc).__module__
    if not lost and module.startswith("sqlalchemy"):
        from sqlalchemy import exc as sa_exc

        lost = isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError) or bool(
            getattr(exc, "connection_invalidated", False)
        )
    if not lost and module.startswith("redis"):
        from redis import exceptions as redis_exc

        lost = isinstance(exc, redis_exc.ConnectionError | redis_exc.TimeoutError)
    if lost:
        return Unavailable("a service this call needs is unreachable; retry", reason="DEPENDENCY_UNAVAILABLE")
    return None


def classify(exc: BaseException) -> DomainError | None:
    """The client-facing error for a SQLAlchemy/psycopg error caused by a value, else None."""
    import psycopg

    orig, sqlstate = _driver_error(exc)
    if not sqlstate and isinstance(orig, psycopg.DataError):
        sqlstate = "22000"  # refused by the driver before sending (e.g. NUL in a text parameter)
    if not isinstance(sqlstate, str) or len(sqlstate) != 5:
        return None
    diag = getattr(orig, "diag", None)
    column = getattr(diag, "column_name", None) or ""
    if sqlstate.startswith(_DATA_EXCEPTION):
        if column:
            return InvalidArgument.field(column, "value not accepted", "INVALID_VALUE")
        return InvalidArgument("a value in the request is not accepted", reason="INVALID_VALUE")
    if sqlstate.startswith(_INTEGRITY):
        return FailedPrecondition("the request conflicts with stored data", reason="CONSTRAINT_VIOLATED")
    return None


__all__ = ["classify", "unavailable"]
