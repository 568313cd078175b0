"""Fixtures shared by the whole suite.

``devstack`` (session): an isolated dev stack — its own home in a temp folder, its own port base —
with the backing services only (PostgreSQL, Redis, Kafka-protocol broker, SMTP sink).  Clients take
their URLs from ``devstack.env()``.  It never uses the developer's ``make up`` stack (port base 7400)
nor servers already on the machine, and it is stopped at the end of the session.

``make_stack`` (per test): more isolated stacks for tests that start and stop things themselves.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import psycopg
import pytest

from petpro.settings import PORT_OFFSETS, BackingSettings, StackSettings
from petpro_dev.devstack import Stack, Step, infra
from petpro_dev.devstack.process import port_in_use

PORT_SPAN = 200  # ports a stack may use above its base: PORT_OFFSETS plus test extras (< 200)
EXTRA_OFFSETS = (150,)  # tests' dummy services


def no_external_urls() -> BackingSettings:
    """Backing settings that ignore DATABASE_URL & co. from the environment / .env: test stacks are
    always embedded unless a test says otherwise."""
    return BackingSettings(**dict.fromkeys(BackingSettings.model_fields))


class PortBases:
    """Hands out port bases whose ports are free, never the same one twice in a session, and never
    one that another pytest session on this machine holds: each base is claimed with an exclusive
    lock on a file in the temp directory, held until the session ends.  (Probing the ports alone is
    not enough: a stack whose broker a test has just killed shows free ports to a second session,
    which would start its own broker there.)"""

    def __init__(self) -> None:
        self.used: set[int] = set()
        self._locks: list[IO[bytes]] = []

    def _claim(self, base: int) -> bool:
        fh = open(Path(tempfile.gettempdir()) / f"petpro-test-ports-{base}.lock", "ab")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._locks.append(fh)
        return True

    def allocate(self, preferred: int | None = None) -> int:
        candidates = list(range(17400, 32400, PORT_SPAN))  # below the ephemeral range
        random.shuffle(candidates)
        if preferred is not None:
            candidates.insert(0, preferred)
        for base in candidates:
            if base in self.used:
                continue
            offsets = (*PORT_OFFSETS.values(), *EXTRA_OFFSETS)
            if not self._claim(base):
                continue
            if not any(port_in_use("127.0.0.1", base + off) for off in offsets):
                self.used.add(base)
                return base
            self._locks.pop().close()  # in use by something that is not a test session: not ours
        raise RuntimeError("no free port range for a test stack")


def make_home(prefix: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)  # as root PostgreSQL runs as a system user, which must be able to enter it
    return home


@pytest.fixture(scope="session")
def port_bases() -> PortBases:
    return PortBases()


@pytest.fixture(scope="session")
def devstack(port_bases: PortBases) -> Iterator[Stack]:
    home = make_home("petpro-test-")
    base = port_bases.allocate(preferred=17400 + (os.getpid() % 50) * PORT_SPAN)
    stack = Stack(StackSettings(home=home, port_base=base), infra(), backing=no_external_urls())
    try:
        report = stack.up()
        times = ", ".join(f"{r.name} {r.seconds:.2f}s" for r in report.results)
        print(f"\ndevstack up in {report.seconds:.2f}s ({times}) at {home}, port base {base}")
        yield stack
    finally:
        stack.down(purge=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def make_stack(port_bases: PortBases) -> Iterator[Callable[..., Stack]]:
    """``make_stack(components, **urls)`` → a Stack with its own home and port base; ``urls`` are
    external backing URLs (``database_url=...``).  Every stack made is stopped and deleted after the
    test."""
    made: list[tuple[Stack, Path]] = []

    def factory(components: Sequence[Step], **urls: str) -> Stack:
        home = make_home("petpro-test-")
        settings = StackSettings(home=home, port_base=port_bases.allocate())
        backing = no_external_urls().model_copy(update=urls)
        stack = Stack(settings, components, backing=backing)
        made.append((stack, home))
        return stack

    yield factory
    for stack, home in reversed(made):
        try:
            stack.down(purge=True)
        finally:
            shutil.rmtree(home, ignore_errors=True)


# Holds last as long as in production: no test may depend on how fast it runs (a 6 s hold expired under
# a busy machine in the middle of tests that needed it held).  Tests that need a hold to lapse say so
# with ``Api.expire_hold`` (tests/e2e/conftest.py); sessions are expired by the tests that want it.
# The session mesh is also what the benchmark smoke test loads, so its edge has no rate limit (the
# limiter is tested on an Envoy of its own with a configured limit: tests/integration/test_edge_envoy.py).
MESH_ENV = {
    "EDGE_ENVOY_RATE_LIMIT_BURST": "0",
    # long enough that "a stream ended at once on SIGTERM" can't be confused with "cut at the drain
    # timeout", however slow the machine (tests/e2e/test_dashboard.py)
    "EDGE_GRACE_SECONDS": "60",
    "BOOKING_EXPIRY_SWEEP_SECONDS": "1",
    "PAYMENT_EXPIRY_SWEEP_SECONDS": "3600",
    # reconciliation ticks often; its grace periods stay production-length (tests age their own payment)
    "PAYMENT_RECONCILE_SECONDS": "0.5",
    "EDGE_RECONCILE_SECONDS": "0.5",
    # every test logs in from 127.0.0.1: throttle per address only far above what the suite does, and
    # make a back-off outlast any test (tests/e2e/test_throttling.py)
    "AUTH_THROTTLE_LOGIN_FREE_PER_SOURCE": "100000",
    "AUTH_THROTTLE_REGISTER_FREE_PER_SOURCE": "100000",
    "AUTH_THROTTLE_RESET_FREE_PER_SOURCE": "100000",
    "AUTH_THROTTLE_LINK_FREE_PER_SOURCE": "100000",  # the REST fuzzer sends many wrong codes
    "AUTH_THROTTLE_BASE_SECONDS": "600",
    "AUTH_ACCESS_TTL_SECONDS": "900",
    # no platform quiet hours: the reminder tests must pass at any time of day; the quiet hours are
    # tested with a clinic's own (tests/e2e/test_notification_channels.py)
    "NOTIF_QUIET_HOURS": "00:00-00:00",
    # a text left "sending" by a killed worker is settled within seconds, not a minute
    # (tests/e2e/test_sms_channel.py); the lease at least twice the provider call's timeout
    "NOTIF_SMS_LEASE_SECONDS": "12",
    "NOTIF_SMS_TIMEOUT_SECONDS": "6",
    "NOTIF_SMS_SWEEP_SECONDS": "1",
}


@pytest.fixture(scope="session")
def mesh(devstack: Stack) -> Stack:
    """The whole mesh (every component of ``petpro up``) on the session's dev stack, started once,
    with the demo catalog seeded.  Stopped with the dev stack (same home)."""
    from petpro_dev.devstack import default_components
    from petpro_dev.seed import DEMO, seed

    os.environ.update(MESH_ENV)  # inherited by the service processes
    stack = Stack(devstack.ctx.settings, default_components(), backing=no_external_urls())
    report = stack.up()
    print(f"\nmesh up in {report.seconds:.2f}s")
    seed(DEMO, {**os.environ, **stack.env()})  # the services' own seed entry points, as `petpro seed`
    return stack


@contextmanager
def database_of_its_own(url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL of ``url`` (dropped afterwards), for a test whose rows the
    session's running mesh must not see: its sweepers and reconcilers work on every due row of their
    schema, so a contract case on the mesh's own database races them (a payment "due" for the contract
    is claimed by the live payment_svc's reconciliation tick)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
