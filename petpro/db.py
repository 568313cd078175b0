"""Async SQLAlchemy 2.0 on psycopg 3: engine and unit-of-work factory.

Each service owns one PostgreSQL schema (``auth``, ``booking`` …) in the shared database; its engine
sets ``search_path`` to that schema so queries and migrations never touch another service's tables.

Behind a transaction-mode pooler (PgBouncer ``pool_mode = transaction``; ``DATABASE_POOL_MODE=transaction``)
a client's consecutive transactions may run on different server connections, shared with the other
services, so nothing may live in the session: the engine then sends no ``options`` startup parameter
(PgBouncer refuses it) and sets ``search_path`` with ``SET LOCAL`` at the start of every transaction
(read-only connections become short transactions too), and psycopg never prepares statements
server-side (``prepare_threshold=None``: a prepared statement lives on one server connection).  What
needs a session (the migrations' advisory lock, the outbox relay's ``LISTEN``) connects to
``DATABASE_DIRECT_URL`` instead (:func:`direct_url`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    create_async_engine,
)

from petpro import telemetry
from petpro.settings import BackingSettings


def transaction_pooling() -> bool:
    """True when the database URL points at a transaction-mode pooler (``DATABASE_POOL_MODE``)."""
    return BackingSettings().database_pool_mode == "transaction"


def direct_url(url: str) -> str | None:
    """Where to open a connection that needs a session of its own (advisory locks, LISTEN): ``url``
    itself, or behind a transaction pooler ``DATABASE_DIRECT_URL`` (None when unset: no session
    features, e.g. the relay polls without LISTEN)."""
    if not transaction_pooling():
        return url
    return BackingSettings().database_direct_url


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` (libpq style, as users write it) → the psycopg 3 dialect URL."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def _connect_args(schema: str | None, app_name: str, *, pooled: bool = False) -> dict[str, object]:
    opts: dict[str, object] = {"application_name": app_name}
    if pooled:
        opts["prepare_threshold"] = None  # no server-side prepared statements behind a pooler
    elif schema:
        opts["options"] = f"-csearch_path={schema},public"
    return opts


def make_engine(
    url: str,
    schema: str | None,
    *,
    app_name: str = "petpro",
    pool_size: int = 10,
    pooled: bool | None = None,
) -> AsyncEngine:
    """The service's engine; ``pooled`` (default: :func:`transaction_pooling`) for a transaction-mode
    pooler: search_path per transaction, no prepared statements (module docstring)."""
    pooled = transaction_pooling() if pooled is None else pooled
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,  # no pre-ping: it costs a round trip per checkout; dead connections are rare here
        connect_args=_connect_args(schema, app_name, pooled=pooled),
    )
    if pooled and schema:
        set_path = f'SET LOCAL search_path TO "{schema}", public'

        @event.listens_for(engine.sync_engine, "begin")
        def _search_path(conn: Any) -> None:
            conn.exec_driver_sql(set_path)

    return telemetry.instrument_engine(engine)  # a span per statement


def make_sync_engine(url: str, schema: str | None = None, *, app_name: str = "petpro-migrate") -> Engine:
    """A session-mode engine (migrations, tools): give it the server's own URL (:func:`direct_url`)."""
    return create_engine(
        sqlalchemy_url(url), connect_args=_connect_args(schema, app_name), pool_pre_ping=True
    )


R = TypeVar("R")
# a use case's way to open a transaction: ``async with uow() as repo`` (commit on success)
UnitOfWork = Callable[[], AbstractAsyncContextManager[R]]


class NestedCheckout(RuntimeError):
    """A task asked the pool for a second connection while it holds one (see ``Database``)."""


# the pooled connection the current task holds ("unit of work" or "read"), if any
_holding: ContextVar[str | None] = ContextVar("petpro_db_holding", default=None)


@contextmanager
def one_connection(kind: str) -> Iterator[None]:
    """Mark the current task as holding a pooled connection for the block; a second one asked for
    inside it raises ``NestedCheckout`` (see ``Database``).  The unit tests' fake unit of work keeps
    the same rule, so a use case that would need two connections fails there already."""
    held = _holding.get()
    if held is not None:
        raise NestedCheckout(
            f"a {kind} connection was asked for while this task holds a {held} one: "
            "concurrent callers would deadlock the pool; use the open one"
        )
    token = _holding.set(kind)
    try:
        yield
    finally:
        try:
            _holding.reset(token)
        except ValueError:  # closed from another context: an abandoned async generator's finaliser
            _holding.set(None)


class Database:
    """Engine + session factory of one service; ``unit_of_work()`` is one transaction.

    A task holds at most one pooled connection at a time: a use case that opened a unit of work and
    then asks for another connection (a catalog read through ``read()`` inside ``uow()``, say) needs two,
    and as many concurrent callers as the pool has connections then each hold one and wait for a
    second until their deadlines run out: the pool deadlocks under exactly the load it should absorb
    (measured: 20 ConfirmBookings holding all 20 connections for 30 s at 100 bookings/s).  So the
    second checkout raises ``NestedCheckout`` at once, on the first test that takes that path, instead
    of waiting for a load that exhausts the pool; the fix is to use the open unit of work."""

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        app_name: str = "petpro",
        pool_size: int = 10,
        pooled: bool | None = None,
    ) -> None:
        self.pooled = transaction_pooling() if pooled is None else pooled
        self.schema = schema
        self.engine = make_engine(url, schema, app_name=app_name, pool_size=pool_size, pooled=self.pooled)
        # the raw autocommit connections (``statements``), opened on first use; none behind a
        # transaction pooler, where ``statements`` hands out the reader's connection instead
        self._raw: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._raw_open = False
        if not self.pooled:
            u = make_url(url)
            conninfo = u.set(drivername=u.drivername.split("+", 1)[0]).render_as_string(hide_password=False)
            self._raw = AsyncConnectionPool(
                conninfo,
                min_size=1,
                max_size=pool_size,
                max_lifetime=1800,  # as the engine's pool_recycle
                kwargs={"autocommit": True, **_connect_args(schema, app_name)},
                open=False,
                name=f"{app_name}-statements",
            )

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncConnection]:
        """Open a transaction: committed when the block exits normally, rolled back otherwise.  A Core
        connection in a transaction, not an ORM ``AsyncSession``: no repository uses the ORM (they
        execute Core and raw statements, and ``begin_nested`` for savepoints, which a connection has
        too), and the session's own bookkeeping per transaction (its transaction objects, the
        connection it looks up again for every statement) was CPU for nothing on every unit of work."""
        with one_connection("unit of work"):
            async with self.engine.connect() as conn, conn.begin():
                yield conn

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncConnection]:
        """A connection in autocommit mode for read-only use cases: no BEGIN/COMMIT round trips.
        Each statement sees committed data as of its own start (fine for single reads and lists).
        Behind a transaction pooler it is one short transaction instead (its search_path is set per
        transaction; module docstring)."""
        with one_connection("read"):
            async with self.engine.connect() as conn:
                if self.pooled:
                    async with conn.begin():
                        yield conn
                else:
                    yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def statements(self) -> AsyncIterator[psycopg.AsyncConnection[Any] | AsyncConnection]:
        """A psycopg connection in autocommit mode, straight from a psycopg pool of its own, for hot
        paths made of single plain-SQL statements (``raw_execute``), each its own transaction.  The
        reader's SQLAlchemy connection costs more than such a statement's round trip in CPU: the
        pool checkout and check-in, the isolation level set and reset, a greenlet hop for each.
        Behind a transaction pooler it is the reader's connection (a short transaction whose
        search_path is set; module docstring)."""
        if self._raw is None:
            async with self.reader() as conn:
                yield conn
            return
        with one_connection("read"):
            if not self._raw_open:
                await self._raw.open()
                self._raw_open = True
            async with self._raw.connection() as raw:
                yield raw

    @asynccontextmanager
    async def statement_transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any] | AsyncConnection]:
        """A transaction on a connection of :meth:`statements`' pool, for a unit of work made of plain-SQL
        statements only (``raw_execute``): committed when the block exits normally, rolled back
        otherwise, without SQLAlchemy's checkout, BEGIN and COMMIT work and their greenlet hops.
        Behind a transaction pooler, a :meth:`unit_of_work`."""
        if self._raw is None:
            async with self.unit_of_work() as conn:
                yield conn
            return
        async with self.statements() as raw:
            assert isinstance(raw, psycopg.AsyncConnection)
            async with raw.transaction():
                yield raw

    def statement_repositories(self, repo: Callable[[Any], R]) -> UnitOfWork[R]:
        """Hands out ``repo(conn)`` on :meth:`statements`: for repositories whose methods used through
        it are all plain SQL (``raw_execute``), never SQLAlchemy statements."""

        @asynccontextmanager
        async def statements() -> AsyncIterator[R]:
            async with self.statements() as conn:
                yield repo(conn)

        return statements

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
        if self._raw is not None and self._raw_open:
            await self._raw.close()
        await self.engine.dispose()


async def driver_connection(session: AsyncSession | AsyncConnection | psycopg.AsyncConnection[Any]) -> Any:
    """The psycopg connection under a unit of work's session or connection (in its transaction, if it
    has one), for the few hot statements that skip SQLAlchemy's per-statement overhead; a psycopg
    connection (``Database.statements``) is its own."""
    if isinstance(session, psycopg.AsyncConnection):
        return session
    conn = session if isinstance(session, AsyncConnection) else await session.connection()
    sync = conn.sync_connection
    if sync is not None and getattr(sync, "_dbapi_connection", None) is not None:
        # checked out and valid: what ``get_raw_connection`` returns, read without its greenlet hop
        # (it only needs one to reconnect an invalidated connection: the path below)
        driver = sync.connection.driver_connection
    else:
        driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


async def raw_execute(
    session: AsyncSession | AsyncConnection | psycopg.AsyncConnection[Any],
    sql: str,
    params: Any,
    *,
    operation: str | None = None,
    row_factory: Any = None,
) -> Any:
    """Execute ``sql`` on the psycopg connection of ``session``, traced like SQLAlchemy's statements
    (``operation``: the span's name, default the statement's first word); returns the cursor."""
    conn = await driver_connection(session)
    cur = conn.cursor(row_factory=row_factory) if row_factory is not None else conn.cursor()
    with telemetry.sql_span(operation or sql.split(None, 1)[0].upper()):
        await cur.execute(sql, params)
    return cur
