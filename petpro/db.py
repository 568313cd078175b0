"""Async SQLAlchemy 2.0 on psycopg 3: engine and unit-of-work factory.

Each service owns one PostgreSQL schema (``auth``, ``booking`` …) in the shared database; its engine
sets ``search_path`` to that schema so queries and migrations never touch another service's tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from petpro import telemetry


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` (libpq style, as users write it) → the psycopg 3 dialect URL."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def _connect_args(schema: str | None, app_name: str) -> dict[str, object]:
    opts: dict[str, object] = {"application_name": app_name}
    if schema:
        opts["options"] = f"-csearch_path={schema},public"
    return opts


def make_engine(url: str, schema: str | None, *, app_name: str = "petpro", pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,  # no pre-ping: it costs a round trip per checkout; dead connections are rare here
        connect_args=_connect_args(schema, app_name),
    )
    return telemetry.instrument_engine(engine)  # a span per statement


def make_sync_engine(url: str, schema: str | None = None, *, app_name: str = "petpro-migrate") -> Engine:
    return create_engine(sqlalchemy_url(url), connect_args=_connect_args(schema, app_name), pool_pre_ping=True)


R = TypeVar("R")
# a use case's way to open a transaction: ``async with uow() as repo`` (commit on success)
UnitOfWork = Callable[[], AbstractAsyncContextManager[R]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Database:
    """Engine + session factory of one service; ``unit_of_work()`` is one transaction."""

    def __init__(self, url: str, schema: str, *, app_name: str = "petpro", pool_size: int = 10) -> None:
        self.engine = make_engine(url, schema, app_name=app_name, pool_size=pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """Open a transaction: committed when the block exits normally, rolled back otherwise."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncConnection]:
        """A connection in autocommit mode for read-only use cases: no BEGIN/COMMIT round trips.
        Each statement sees committed data as of its own start (fine for single reads and lists)."""
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    def repositories(self, repo: Callable[[Any], R]) -> tuple[UnitOfWork[R], UnitOfWork[R]]:
        """``(uow, read)`` factories handing out ``repo(session)``: a transaction, and a read-only
        autocommit connection (``reader``).  Every service wires its handlers with these."""

        @asynccontextmanager
        async def uow() -> AsyncIterator[R]:
            async with self.unit_of_work() as session:
                yield repo(session)

        @asynccontextmanager
        async def read() -> AsyncIterator[R]:
            async with self.reader() as conn:
                yield repo(conn)

        return uow, read

    async def close(self) -> None:
        await self.engine.dispose()
