"""The dev stack against real processes: embedded PostgreSQL, Redis, tansu, the SMTP sink, and a
stand-in gRPC service launched through the same mechanism as the real services."""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from kafka import KafkaAdminClient

from petpro_dev.devstack import (
    Component,
    Launch,
    Stack,
    StackError,
    checks,
    infra,
    list_messages,
    postgres,
    process,
)
from petpro_dev.devstack.component import BACKING_ENV, Context

StackFactory = Callable[..., Stack]

pytestmark = pytest.mark.integration

DUMMY_SERVICE = Path(__file__).with_name("dummy_service.py")
DUMMY_OFFSET = 150


def dummy_service(depends_on: tuple[str, ...] = ("postgres", "redis")) -> Component:
    def port(ctx: Context) -> int:
        return ctx.settings.port_base + DUMMY_OFFSET

    return Component(
        name="dummy",
        launch=lambda ctx: Launch([sys.executable, str(DUMMY_SERVICE), "--port", str(port(ctx))]),
        ready=checks.grpc_health,
        port=port,
        depends_on=depends_on,
    )


def component(name: str) -> Component:
    return next(c for c in infra() if c.name == name)


def leaders_on_ports(stack: Stack) -> list[int]:
    """Process-group leaders whose command line names one of the stack's ports: what ``up`` started
    (a duplicate would show up here)."""
    ports = {str(c.port_of(stack.ctx)) for c in stack.steps if isinstance(c, Component)}
    found = []
    for pid in psutil.pids():
        if process.process_group(pid) == pid:
            words = " ".join(process.proc_cmdline(pid)).replace(":", " ").split()
            if ports & set(words) and process.is_alive(pid):
                found.append(pid)
    return sorted(found)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- the session stack


def test_up_makes_every_backing_service_healthy(devstack: Stack) -> None:
    statuses = devstack.status()
    assert [s.name for s in statuses] == ["postgres", "redis", "kafka", "smtp", "stripe", "push", "sms"]
    assert all(s.state == "running" and s.pid for s in statuses), statuses

    env = devstack.env()
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("petpro",)
        assert conn.execute("SHOW max_connections").fetchone() == ("200",)
    client = redis.Redis.from_url(env["REDIS_URL"])
    assert client.ping()
    client.close()
    admin = KafkaAdminClient(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        topics = {t["name"]: t for t in admin.describe_topics(["booking.created", "booking.created.dlq"])}
    finally:
        admin.close()
    assert {name: len(t["partitions"]) for name, t in topics.items()} == {
        "booking.created": 6,
        "booking.created.dlq": 6,
    }
    if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as the dedicated system user
        pg_pid = next(s.pid for s in statuses if s.name == "postgres")
        uid = int(Path(f"/proc/{pg_pid}/status").read_text().split("Uid:")[1].split()[0])
        assert uid != 0


def test_up_again_starts_nothing(devstack: Stack) -> None:
    before = {s.name: s.pid for s in devstack.status()}
    leaders = leaders_on_ports(devstack)

    report = devstack.up()

    assert {r.name: r.state for r in report.results} == dict.fromkeys(before, "already running")
    assert {r.name: r.pid for r in report.results} == before
    assert leaders_on_ports(devstack) == leaders == sorted(pid for pid in before.values() if pid)


def test_smtp_sink_keeps_every_message(devstack: Stack) -> None:
    subject = f"Booking confirmed {uuid.uuid4()}"
    msg = EmailMessage()
    msg["From"] = "PetPro <clinic@petpro.test>"
    msg["To"] = "owner@petpro.test"
    msg["Subject"] = subject
    msg.set_content("See you on Tuesday at 10:00 ✓")
    host, port = checks.host_port(devstack.env()["SMTP_URL"])
    with smtplib.SMTP(host, port, timeout=5) as smtp:
        smtp.send_message(msg)

    # delivery is complete when the server answers 250: no waiting needed
    found = [m for m in list_messages(devstack.ctx.mail_dir) if m.subject == subject]
    assert len(found) == 1
    mail = found[0]
    assert mail.mail_from == "clinic@petpro.test"
    assert mail.rcpt_to == ("owner@petpro.test",)
    assert mail.from_ == "PetPro <clinic@petpro.test>"
    assert mail.to == "owner@petpro.test"
    assert mail.body().strip() == "See you on Tuesday at 10:00 ✓"


def test_cli_sees_the_same_stack(devstack: Stack) -> None:
    env = {k: v for k, v in os.environ.items() if k not in BACKING_ENV.values()}
    env.update(PETPRO_HOME=str(devstack.ctx.home), PETPRO_PORT_BASE=str(devstack.settings.port_base))

    def petpro(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "petpro_dev", *args],
            env=env,
            cwd=devstack.ctx.home,
            capture_output=True,
            text=True,
            timeout=60,
        )

    status = petpro("status")
    lines = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
    # the CLI reports what the Python API sees (the services run only if the mesh fixture ran first)
    seen = {s.name: s.ok for s in devstack.status()}
    assert all("running" in lines[name] for name in ("postgres", "redis", "kafka", "smtp")), status.stdout
    mesh = Stack(devstack.settings)  # every component `petpro up` knows, on the same home
    expected_ok = all(s.ok for s in mesh.status())
    assert status.returncode == (0 if expected_ok else 3), status
    assert all(seen.values())

    up = petpro("up", "--infra")
    assert up.returncode == 0, up
    assert up.stdout.count("already running") == len(infra()), up.stdout

    mail = petpro("mail")
    assert mail.returncode == 0, mail


# ---------------------------------------------------------------------------- stacks of their own


def test_down_stops_everything_and_frees_the_ports(make_stack: StackFactory) -> None:
    stack = make_stack([*infra(), dummy_service()])
    stack.up()
    pids = [s.pid for s in stack.status()]
    assert all(pids) and len(pids) == len(infra()) + 1
    ports = [c.port_of(stack.ctx) for c in stack.steps if isinstance(c, Component)]
    families = {pid: process.family(pid) for pid in pids if pid}
    assert len(families[stack.pid("postgres") or 0]) > 1  # postmaster and its helpers

    results = stack.down()

    assert {r.name: r.state for r in results} == dict.fromkeys(
        ["dummy", "sms", "push", "stripe", "smtp", "kafka", "redis", "postgres"], "stopped"
    )
    assert not [p for fam in families.values() for p in fam if process.is_alive(p)]
    assert not [p for leader in families for p in process.family(leader)]  # nothing new either
    assert not [p for p in ports if process.port_in_use("127.0.0.1", p)]
    assert not list(stack.ctx.run_dir.glob("*.pid"))
    assert (stack.ctx.data_dir("postgres") / "PG_VERSION").exists()  # data stays
    log = stack.log_path("dummy").read_text()
    assert f"DATABASE_URL={stack.env()['DATABASE_URL']}" in log  # the stack's env reached the child
    assert "dummy stopped" in log  # SIGTERM, not SIGKILL

    stack.up()  # the kept data is reused
    stack.down(purge=True)
    assert not stack.ctx.data_root.exists()


def test_stale_pid_file_of_a_dead_process_is_replaced(make_stack: StackFactory) -> None:
    stack = make_stack([component("redis")])
    stack.up()
    old = stack.pid("redis")
    assert old is not None
    os.killpg(old, 9)
    assert process.wait_exit(old, 5.0)
    assert stack.status()[0].state == "stopped"

    result = stack.up().by_name()["redis"]

    assert (result.state, result.detail) == ("started", "stale pid file removed")
    assert result.pid != old and stack.status()[0].state == "running"


def test_pid_reused_by_an_unrelated_process_is_left_alone(make_stack: StackFactory) -> None:
    stack = make_stack([component("redis")])
    unrelated = subprocess.Popen(["sleep", "60"])
    pid_path = stack.ctx.pid_path("redis")
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        for content in (f"{unrelated.pid}\n1\n", f"{unrelated.pid}\n"):  # wrong start time / hand-written
            pid_path.write_text(content)
            assert stack.status()[0].state == "stopped"
            result = stack.up().by_name()["redis"]
            assert result.state == "started" and result.pid != unrelated.pid
            stack.down()
            assert unrelated.poll() is None  # never signalled
    finally:
        unrelated.kill()
        unrelated.wait()


def test_external_database_url_is_used_instead_of_the_embedded_one(make_stack: StackFactory) -> None:
    server = make_stack([postgres.component()])  # a second embedded PostgreSQL plays "the user's server"
    server.up()
    external_url = server.env()["DATABASE_URL"].rsplit("/", 1)[0] + "/petpro_external"
    stack = make_stack([*infra(), dummy_service()], database_url=external_url)

    report = stack.up()

    pg = report.by_name()["postgres"]
    assert (pg.state, pg.pid, pg.address) == ("external", None, external_url)
    assert not stack.ctx.pid_path("postgres").exists()
    assert not stack.ctx.data_dir("postgres").exists()
    assert not process.port_in_use("127.0.0.1", stack.ctx.port("postgres"))
    assert stack.env()["DATABASE_URL"] == external_url
    assert {s.name: s.state for s in stack.status()}["postgres"] == "external"
    with psycopg.connect(external_url) as conn:  # the stack created the database it names
        assert conn.execute("SELECT current_database()").fetchone() == ("petpro_external",)

    stack.down()
    assert f"DATABASE_URL={external_url}" in stack.log_path("dummy").read_text()
    assert server.status()[0].state == "running"  # an external server is never stopped


def test_unreachable_external_server_fails_up(make_stack: StackFactory) -> None:
    stack = make_stack([component("redis")], redis_url=f"redis://127.0.0.1:{unused_port()}/0")
    with pytest.raises(StackError, match="unreachable"):
        stack.up(timeout=0.5)


def test_a_component_that_dies_fails_up_with_its_log(make_stack: StackFactory) -> None:
    crashing = Component(
        name="crashy",
        launch=lambda ctx: Launch(
            [sys.executable, "-c", "print('boom: SETTING_X is missing'); raise SystemExit(3)"]
        ),
        ready=checks.tcp,
        port=lambda ctx: ctx.settings.port_base + DUMMY_OFFSET + 1,
    )
    stack = make_stack([crashing, dummy_service(depends_on=("crashy",))])

    with pytest.raises(StackError) as failure:
        stack.up(timeout=30)

    message = str(failure.value)
    assert "crashy failed: exited with code 3" in message
    assert "boom: SETTING_X is missing" in message  # the log tail
    assert {r.name: r.state for r in failure.value.results} == {"crashy": "failed", "dummy": "skipped"}
    assert not stack.ctx.pid_path("crashy").exists()


def test_component_list_is_validated() -> None:
    with pytest.raises(ValueError, match="must come before"):
        Stack(components=[dummy_service(depends_on=("redis",)), component("redis")])
    with pytest.raises(ValueError, match="listed twice"):
        Stack(components=[component("redis"), component("redis")])
