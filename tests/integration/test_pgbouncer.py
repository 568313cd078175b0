"""The whole mesh behind PgBouncer in transaction mode, as a managed PostgreSQL usually runs it.

Debian's pgbouncer (``make test-tools``) sits in front of an embedded PostgreSQL with
``pool_mode = transaction`` and FEWER server connections than the services open between them, so
consecutive transactions of one service land on server connections another service used just before.
Every service's ``DATABASE_URL`` points at PgBouncer with ``DATABASE_POOL_MODE=transaction``;
``DATABASE_DIRECT_URL`` (the server itself) serves the migrations, the outbox relay's LISTEN and
booking's (the reservation long-poll's) (docs/operations.md "PgBouncer").  The suite's own booking flow (tests/e2e/test_booking_flow.py,
collected here with this module's ``api``) runs on that mesh, and a booking's event crosses Kafka
to its notification.  What would break without the pooler settings: psycopg's automatic
server-side prepared statements (``prepared statement "_pg3_0" does not exist`` on another server
connection), ``search_path`` from the startup packet (PgBouncer refuses ``options``; and a
session-level one would leak between the services' schemas), LISTEN on a pooled connection.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

# the suite's booking flow, run here against the pooled mesh (this module's `api` fixture)
from tests.e2e.conftest import Api, confirmed_booking, eventually, mails_to
from tests.e2e.test_booking_flow import (  # noqa: F401
    test_200_concurrent_reservations_of_one_slot_have_exactly_one_winner,
    test_a_held_slot_cannot_be_booked_by_someone_else,
    test_a_long_poll_through_the_rest_edge_answers_on_confirmation_and_at_its_timeout,
    test_capacity_two_takes_two_bookings_then_refuses,
    test_idempotency_key_replays_and_rejects_a_different_body,
    test_register_book_pay_confirm,
)

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SERVER_CONNECTIONS = 6  # fewer than the services' pools: server connections are shared

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def pgbouncer_binary() -> str:
    if not Path(PGBOUNCER).exists():
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is missing in CI: run `make test-tools` (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed (make test-tools)")
    return PGBOUNCER


def _config(run: Path, port: int, pg_host: str, pg_port: int) -> Path:
    (run / "userlist.txt").write_text('"postgres" ""\n')
    ini = run / "pgbouncer.ini"
    ini.write_text(
        "\n".join(
            [
                "[databases]",
                f"petpro = host={pg_host} port={pg_port} dbname=petpro user=postgres",
                "[pgbouncer]",
                f"listen_addr = {pg_host}",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {run / 'userlist.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {SERVER_CONNECTIONS}",
                "reserve_pool_size = 0",
                "max_client_conn = 1000",
                "admin_users = postgres",
                f"logfile = {run / 'pgbouncer.log'}",
                f"pidfile = {run / 'pgbouncer.pid'}",
                "",
            ]
        )
    )
    return ini


@pytest.fixture(scope="module")
def pooled_mesh(pgbouncer_binary: str, port_bases: Any) -> Iterator[tuple[Any, str]]:
    """(the mesh, PgBouncer's admin URL): PostgreSQL, PgBouncer in front, every service through it."""
    from petpro.settings import StackSettings
    from petpro_dev.devstack import Stack, default_components, postgres
    from petpro_dev.devstack.process import run_as
    from petpro_dev.seed import DEMO, seed
    from tests.conftest import MESH_ENV, make_home, no_external_urls

    home = make_home("petpro-pgbouncer-")
    server = Stack(
        StackSettings(home=home / "server", port_base=port_bases.allocate()), [postgres.component()]
    )
    mesh: Stack | None = None
    bouncer: subprocess.Popen[bytes] | None = None
    saved = dict(os.environ)
    try:
        server.up()
        direct = server.env()["DATABASE_URL"]
        host, pg_port = server.ctx.settings.host, server.ctx.port("postgres")
        run = home / "pgbouncer"
        run.mkdir()
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        ini = _config(run, port, host, pg_port)
        user = postgres.run_user()  # PgBouncer, like PostgreSQL, refuses to run as root
        if user is not None:
            for path in (run, *run.iterdir()):
                shutil.chown(path, user)
        bouncer = subprocess.Popen(
            [pgbouncer_binary, str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **run_as(user),
        )
        pooled = f"postgresql://postgres@{host}:{port}/petpro"
        for _ in range(100):
            try:
                psycopg.connect(pooled, connect_timeout=1).close()
                break
            except psycopg.OperationalError:
                assert bouncer.poll() is None, (run / "pgbouncer.log").read_text()
                time.sleep(0.05)
        os.environ.update(
            {**MESH_ENV, "DATABASE_POOL_MODE": "transaction", "DATABASE_DIRECT_URL": direct}
        )  # inherited by every process of the mesh
        mesh = Stack(
            StackSettings(home=home / "mesh", port_base=port_bases.allocate()),
            default_components(),
            backing=no_external_urls().model_copy(update={"database_url": pooled}),
        )
        mesh.up()
        seed(DEMO, {**os.environ, **mesh.env()})  # the services' seed entry points, through PgBouncer too
        yield mesh, f"postgresql://postgres@{host}:{port}/pgbouncer"
    finally:
        if mesh is not None:
            mesh.down(purge=True)
        if bouncer is not None:
            bouncer.terminate()
            bouncer.wait(timeout=10)
        server.down(purge=True)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
async def api(pooled_mesh: tuple[Any, str]) -> AsyncIterator[Api]:
    mesh, _ = pooled_mesh
    base = f"http://{mesh.ctx.settings.host}:{mesh.ctx.port('envoy')}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield Api(client, mesh)


async def test_through_the_pooler_an_event_reaches_its_notification_and_servers_are_shared(
    api: Api, pooled_mesh: tuple[Any, str]
) -> None:
    owner, _, booking_id = await confirmed_booking(api)

    # booking's outbox → Kafka → notif_worker: the mail and the in-app notification, once
    async def mailed() -> bool:
        return len(mails_to(api.stack, owner.email)) == 1

    await eventually(mailed, timeout=60)
    inbox = await api.inbox(owner)
    assert [n["data"]["booking_id"] for n in inbox] == [booking_id]

    # the services really went through PgBouncer, more clients than server connections
    _, admin = pooled_mesh
    # the admin console speaks the simple query protocol only (client-side binding)
    with psycopg.connect(admin, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        clients = conn.execute("SHOW CLIENTS").fetchall()
        servers = conn.execute("SHOW SERVERS").fetchall()
    apps = {str(row) for row in clients}
    for app in ("auth_svc", "booking_svc", "payment_svc", "notif_worker"):
        assert any(app in row for row in apps), (app, clients)
    assert 0 < len(servers) <= SERVER_CONNECTIONS < len(clients), (len(servers), len(clients))
