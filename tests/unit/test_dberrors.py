"""A dependency that cannot be reached right now is UNAVAILABLE (retry later), never INTERNAL; a value
the database refuses stays the client's error; anything else stays INTERNAL."""

from __future__ import annotations

import psycopg
import pytest
import redis
import sqlalchemy.exc as sa_exc
from google.rpc import code_pb2

from petpro.interceptors import status_for


def _sa(orig: Exception) -> sa_exc.DBAPIError:
    return sa_exc.OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("connection refused"),  # the database is restarting
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),  # 57P01
        psycopg.errors.SerializationFailure("could not serialize access"),  # 40001: retry the transaction
        _sa(psycopg.OperationalError("server closed the connection unexpectedly")),
        sa_exc.TimeoutError("QueuePool limit reached"),  # the pool is exhausted
        redis.exceptions.ConnectionError("Error 111 connecting"),
    ],
    ids=["refused", "admin-shutdown", "serialization", "sqlalchemy-wrapped", "pool-timeout", "redis"],
)
def test_an_unreachable_dependency_is_unavailable(exc: Exception) -> None:
    status = status_for(exc, "rid-1")
    assert status.code == code_pb2.UNAVAILABLE, status
    assert "refused" not in status.message and "connecting" not in status.message  # no internals


def test_a_refused_value_stays_the_clients_error_and_a_bug_stays_internal() -> None:
    assert (
        status_for(psycopg.errors.UniqueViolation("duplicate key"), "rid").code
        == code_pb2.FAILED_PRECONDITION
    )
    assert (
        status_for(psycopg.errors.UndefinedColumn("column x does not exist"), "rid").code == code_pb2.INTERNAL
    )
    assert status_for(KeyError("x"), "rid").code == code_pb2.INTERNAL
