"""A rolling upgrade from the previous release, as `helm upgrade` does it, without losing anything.

The previous release (``OLD_RELEASE``, the last landed one) is taken from git (``git archive`` into a
temporary directory) and run with the same venv (``PYTHONPATH=<old>:<old>/gen``: the dependencies are
the same), on backing services of its own: its own migrations, its own seed, two replicas of every
service (auth, booking, payment, notif, edge), each replica on a loopback address of its own
(127.0.0.2 / 127.0.0.3, the same ports: two pods of one Deployment), the services reaching each other
through both (``<PEER>_ADDR=ipv4:127.0.0.2:P,127.0.0.3:P``, round_robin), and one Envoy in front with
both replicas of each upstream, health-checked (the endpoints a Service would list).

While clients book through Envoy:
1. the old release serves bookings;
2. the NEW release's migrations run (``python -m petpro.migrations`` of this tree, the pre-upgrade hook)
   while the old code serves; after them the old code keeps serving without a single error;
3. every service is rolled to the new code one replica at a time, the services at the same time as
   `helm upgrade` rolls its Deployments (SIGTERM: the replica turns NOT_SERVING, drains and exits; the
   new one starts at its address and is ready before the service's next replica is touched).

Nothing may be lost: every call that failed was a 503 (retry later) and succeeded on retry; every
booking a client was told succeeded is confirmed exactly once; every booking's event reached
notif_worker exactly once (one mail, one inbox notification each), the outbox is drained and the
consumer group caught up; at the end every replica runs the new code.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from petpro.mesh import MESH

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
OLD_RELEASE = "f22a0a0"  # the last landed release (stop 26)
SLOTS = ("127.0.0.2", "127.0.0.3")  # two replicas of each service: two "pod" addresses
ROLL_ORDER = ("auth", "payment", "booking", "notif", "edge")


def old_release(dest: Path) -> Path:
    """The previous release's tree (git archive of ``OLD_RELEASE``)."""
    have = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD_RELEASE}^{{commit}}"], capture_output=True
    )
    if have.returncode != 0:
        msg = f"commit {OLD_RELEASE} (the previous release) is not in this clone's history"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", OLD_RELEASE], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    assert archive.wait() == 0
    return dest


@dataclass
class Replica:
    service: str
    slot: str
    version: str  # "old" | "new"
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Fleet:
    stack: Any
    roots: dict[str, Path]  # version → tree
    home: Path
    replicas: dict[tuple[str, str], Replica] = field(default_factory=dict)

    def env(self, version: str, service: str | None = None, slot: str | None = None) -> dict[str, str]:
        from tests.conftest import MESH_ENV

        root = self.roots[version]
        env = {**os.environ, **MESH_ENV, **self.stack.env(), "PYTHONPATH": f"{root}:{root}/gen"}
        env["PETPRO_HOST"] = "127.0.0.1"
        for s in MESH.services:
            port = self.stack.ctx.port(s.name)
            env[f"{s.name.upper()}_ADDR"] = "ipv4:" + ",".join(f"{ip}:{port}" for ip in SLOTS)
        if service is not None and slot is not None:
            prefix = next(s.env_prefix for s in MESH.services if s.name == service)
            env[f"{prefix}BIND_HOST"] = slot
        return env

    def run(self, version: str, *argv: str) -> str:
        # in the fleet's home, as the replicas: `python -c` / `-m` put the working directory first on
        # sys.path, and the suite's (the new tree) would shadow the old version's PYTHONPATH
        result = subprocess.run(
            [sys.executable, *argv], env=self.env(version), cwd=self.home, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, f"{version}: {' '.join(argv)}\n{result.stdout}{result.stderr}"
        return result.stdout + result.stderr

    def start(self, service: str, slot: str, version: str) -> Replica:
        package = next(s.package for s in MESH.services if s.name == service)
        log = self.home / "logs" / f"{service}-{slot}-{version}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", package],
                env=self.env(version, service, slot),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        replica = Replica(service, slot, version, proc, log)
        self.replicas[(service, slot)] = replica
        return replica

    async def ready(self, replica: Replica, timeout: float = 60) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from petpro_dev.client import eventually

        target = f"{replica.slot}:{self.stack.ctx.port(replica.service)}"

        async def serving() -> bool:
            if replica.proc.poll() is not None:
                raise AssertionError(
                    f"{replica.service}@{replica.slot} ({replica.version}) exited:\n{tail(replica.log)}"
                )
            async with grpc.aio.insecure_channel(target) as ch:
                try:
                    r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.aio.AioRpcError:
                    return False
                return r.status == health_pb2.HealthCheckResponse.SERVING

        await eventually(serving, timeout=timeout, interval=0.1)

    async def roll(self, service: str, slot: str) -> None:
        """One replica to the new code: SIGTERM the old one (it turns NOT_SERVING, drains, exits: the
        kubelet's part), then start the new one at its address and wait until it serves."""
        old = self.replicas[(service, slot)]
        old.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(old.proc.wait, 60)
        except subprocess.TimeoutExpired:
            stack = py_spy_dump(old.proc.pid)
            os.killpg(old.proc.pid, signal.SIGKILL)  # the kubelet's part after the grace period
            old.proc.wait(timeout=10)
            # this release bounds every step of its stop (petpro.grpc_server: STOP_STEP_SECONDS,
            # EXIT_THREADS_SECONDS); the previous one could wait for ever on one (seen in 2 of 6 runs
            # on a loaded box: "shutting down", never "stopped").  Killed, as Kubernetes would: what it
            # served is checked below like the rest (nothing lost)
            assert old.version == "old", (
                f"{service}@{slot} ({old.version}) did not exit within 60 s of SIGTERM:\n{tail(old.log)}\n{stack}"
            )
            warnings.warn(
                f"{service}@{slot} ({old.version}) did not exit within 60 s of SIGTERM (killed):\n"
                f"{tail(old.log, 5)}\n{stack}",
                stacklevel=1,
            )
            code = 0
        assert code == 0, f"{service}@{slot} did not stop cleanly ({code}):\n{tail(old.log)}"
        await self.ready(self.start(service, slot, "new"))

    async def stop_gracefully(self) -> None:
        """SIGTERM every replica at once (a scale-down); each exits 0 within 30 s, the grace Kubernetes
        gives it, and logs no stop step left behind."""
        for r in self.replicas.values():
            r.proc.send_signal(signal.SIGTERM)
        for r in self.replicas.values():
            code = await asyncio.to_thread(r.proc.wait, 30)
            text = r.log.read_text(errors="replace")
            assert code == 0 and '"msg": "stopped"' in text, f"{r.service}@{r.slot}: {code}\n{tail(r.log)}"
            assert "left behind" not in text, f"{r.service}@{r.slot}:\n{tail(r.log)}"

    def stop_all(self) -> None:
        for r in self.replicas.values():
            if r.proc.poll() is None:
                os.killpg(r.proc.pid, signal.SIGKILL)
                r.proc.wait(timeout=10)


def py_spy_dump(pid: int) -> str:
    """Where a process's threads are (py-spy, a dev dependency), for a report."""
    exe = Path(sys.executable).with_name("py-spy")
    try:
        out = subprocess.run(
            [str(exe), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        )  # fmt: skip
        return out.stdout + out.stderr
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(no py-spy dump: {exc})"


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def envoy_config(stack: Any) -> dict[str, Any]:
    """The edge's Envoy (this tree's generator) with both replicas of every upstream, health-checked
    the way a Service's endpoints follow readiness."""
    from edge.gateway.config import RateLimit, build_config

    ports = {s.name: stack.ctx.port(s.name) for s in MESH.services}
    config = build_config(
        stack.ctx.settings,
        upstreams={g: (SLOTS[0], ports[MESH.server_of(g).name]) for g in MESH.gateway.routes},
        http_upstream=(SLOTS[0], stack.ctx.port("edge_http")),
        rate_limit=RateLimit(burst=0),
    )
    for cluster in config["staticResources"]["clusters"]:
        endpoints = cluster["loadAssignment"]["endpoints"][0]["lbEndpoints"]
        address = endpoints[0]["endpoint"]["address"].get("socketAddress", {})
        if address.get("address") != SLOTS[0]:
            continue  # the JWKS route back into Envoy itself
        second = json.loads(json.dumps(endpoints[0]))
        second["endpoint"]["address"]["socketAddress"]["address"] = SLOTS[1]
        endpoints.append(second)
        check: dict[str, Any] = {
            "timeout": "1s",
            "interval": "0.5s",
            "unhealthyThreshold": 1,
            "healthyThreshold": 1,
        }
        http2 = "http2ProtocolOptions" in json.dumps(cluster.get("typedExtensionProtocolOptions", {}))
        check.update({"grpcHealthCheck": {}} if http2 else {"httpHealthCheck": {"path": "/healthz"}})
        cluster["healthChecks"] = [check]
    return config


def start_envoy(stack: Any, home: Path) -> subprocess.Popen[bytes]:
    from edge.gateway.envoy import envoy_binary

    cfg = home / "envoy.json"
    cfg.write_text(json.dumps(envoy_config(stack)))
    log = home / "logs" / "envoy.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [envoy_binary(), "-c", str(cfg), "--base-id", str(stack.ctx.port("envoy")), "--concurrency", "1",
             "--log-level", "warn", "--disable-hot-restart"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


@pytest.fixture
async def upgrade(port_bases: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from petpro.settings import StackSettings
    from petpro_dev.client import eventually
    from petpro_dev.devstack import Stack, infra
    from tests.conftest import make_home, no_external_urls

    home = make_home("petpro-upgrade-")
    old_root = old_release(tmp_path_factory.mktemp("old") / "tree")
    stack = Stack(
        StackSettings(home=home, port_base=port_bases.allocate()), infra(), backing=no_external_urls()
    )
    fleet = Fleet(stack, {"old": old_root, "new": ROOT}, home)
    envoy: subprocess.Popen[bytes] | None = None
    try:
        stack.up()
        fleet.run("old", "-m", "petpro.migrations")  # the database as the old release left it
        fleet.run("old", "-c", "import os; from petpro_dev.seed import DEMO, seed; seed(DEMO, os.environ)")
        # auth's first replica first: it makes the dev signing keys the others read
        await fleet.ready(fleet.start("auth", SLOTS[0], "old"))
        starting = [
            fleet.start(s, slot, "old")
            for s in ROLL_ORDER
            for slot in SLOTS
            if (s, slot) != ("auth", SLOTS[0])
        ]
        await asyncio.gather(*(fleet.ready(r) for r in starting))
        envoy = start_envoy(stack, home)
        admin = f"http://127.0.0.1:{stack.ctx.port('envoy_admin')}"

        async def envoy_ready() -> bool:
            async with httpx.AsyncClient(timeout=1) as c:
                try:
                    return (await c.get(f"{admin}/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

        await eventually(envoy_ready, timeout=30, interval=0.1)
        yield fleet
    finally:
        if envoy is not None:
            envoy.kill()
            envoy.wait(timeout=10)
        fleet.stop_all()
        stack.down(purge=True)
        if not os.environ.get("PETPRO_KEEP_UPGRADE_HOME"):
            shutil.rmtree(home, ignore_errors=True)


def drain_state(env: dict[str, str]) -> str:
    """What is left undelivered: booking's unsent outbox rows, and notif-worker's committed offset
    against each partition's end (for the failure message)."""
    from kafka import KafkaConsumer, TopicPartition

    from petpro.events import _last_offsets_plus_one

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        unsent = conn.execute(
            "SELECT topic, count(*), min(created_at)::text FROM booking.outbox WHERE sent_at IS NULL GROUP BY topic"
        ).fetchall()
    c = KafkaConsumer(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"].split(","),
        group_id="notif-worker",
        enable_auto_commit=False,
    )
    try:
        parts = [
            TopicPartition("booking.created", p) for p in c.partitions_for_topic("booking.created") or ()
        ]
        ends = _last_offsets_plus_one(c, parts)
        offsets = {tp.partition: (c.committed(tp), ends[tp]) for tp in parts}
    finally:
        c.close(autocommit=False)
    return f"unsent outbox rows {unsent}; booking.created partition: (committed, end) {offsets}"


def migration_heads(database_url: str) -> dict[str, str]:
    """Each schema's applied revision."""
    from petpro.migrations import MIGRATED

    with psycopg.connect(database_url) as conn:
        return {
            schema: conn.execute(f"SELECT version_num FROM {schema}.alembic_version").fetchone()[0]  # type: ignore[index]
            for schema in MIGRATED.values()
        }


def tree_heads() -> dict[str, str]:
    """Each schema's head revision in this tree."""
    from alembic.script import ScriptDirectory

    from petpro.migrations import MIGRATED, alembic_config

    return {
        schema: ScriptDirectory.from_config(
            alembic_config(pkg, "postgresql://heads/heads")
        ).get_current_head()
        or ""
        for pkg, schema in MIGRATED.items()
    }


async def test_a_rolling_upgrade_from_the_previous_release_loses_nothing(upgrade: Fleet) -> None:
    from petpro.events import group_lag
    from petpro_dev.client import eventually
    from petpro_dev.devstack.mail import list_messages
    from tests.k8s.test_multihost import Booked, Client

    fleet, stack = upgrade, upgrade.stack
    env = stack.env()
    base = f"http://127.0.0.1:{stack.ctx.port('envoy')}"
    phases: dict[str, list[Booked]] = {}
    failures: dict[str, list[tuple[str, int]]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        client = Client(http)
        slots = await client.slots(120)

        async def book_while(phase: str, work: asyncio.Task[Any], workers: int = 2) -> None:
            """Clients book (each worker one booking after another) until ``work`` is done."""
            done: list[Booked] = []
            before = len(client.failures)

            async def worker() -> None:
                while not work.done():
                    done.append(await client.book(slots.pop()))
                    await asyncio.sleep(0.5)  # a client's pace, not a load test

            await asyncio.gather(work, *(worker() for _ in range(workers)))
            phases[phase] = done
            failures[phase] = client.failures[before:]

        # 1. the old release serves
        phases["old"] = [await client.book(slots.pop()) for _ in range(2)]

        # 2. the new release's migrations while the old code serves (the pre-upgrade hook)
        before = migration_heads(env["DATABASE_URL"])
        migrate = asyncio.create_task(asyncio.to_thread(fleet.run, "new", "-m", "petpro.migrations"))
        await book_while("migrating", migrate)
        after = migration_heads(env["DATABASE_URL"])
        assert after == tree_heads()  # (the same as `before` while no migration landed since OLD_RELEASE)
        # 3. the old code after the migrations: not a single failure
        failures_before = len(client.failures)
        phases["old on the new schema"] = [await client.book(slots.pop()) for _ in range(3)]
        assert client.failures[failures_before:] == [], "the old code failed on the new schema"

        # 4. every service rolled, one replica at a time, while clients book; like `helm upgrade`, the
        #    Deployments roll at the same time
        async def roll_service(service: str) -> None:
            for slot in SLOTS:
                await fleet.roll(service, slot)

        async def roll_all() -> None:
            await asyncio.gather(*(roll_service(s) for s in ROLL_ORDER))

        await book_while("rolling", asyncio.create_task(roll_all()))
        assert {(r.service, r.version) for r in fleet.replicas.values()} == {(s, "new") for s in ROLL_ORDER}
        phases["new"] = [await client.book(slots.pop()) for _ in range(2)]

        booked = [b for bs in phases.values() for b in bs]
        # every booking a client was told succeeded is confirmed, exactly once
        for b in booked:
            auth = {"Authorization": f"Bearer {b.token}"}
            mine = (await client.call("GET", "/v1/bookings", 200, headers=auth)).json()["bookings"]
            assert [(x["booking_id"], x["reservation_lock_id"]) for x in mine] == [(b.booking_id, b.lock_id)]

        # every booking's event reached notif_worker exactly once
        async def drained() -> bool:
            with psycopg.connect(env["DATABASE_URL"]) as conn:
                (pending,) = conn.execute(
                    "SELECT count(*) FROM booking.outbox WHERE sent_at IS NULL"
                ).fetchone()  # type: ignore[misc]
            lag = group_lag(env["KAFKA_BOOTSTRAP_SERVERS"], "notif-worker", "booking.created")
            return pending == 0 and lag == 0

        try:
            await eventually(drained, timeout=120, interval=0.5)
        except AssertionError as e:
            raise AssertionError(f"not drained: {drain_state(env)}") from e

        def booking_mails() -> list[Any]:  # not the account verification mail the new auth sends
            return [m for m in list_messages(stack.ctx.mail_dir) if m.message["X-PetPro-Mail"] is None]

        mails = booking_mails()

        async def notified() -> bool:
            nonlocal mails
            mails = booking_mails()
            return all(len([m for m in mails if b.email in m.to]) >= 1 for b in booked)

        await eventually(notified, timeout=60, interval=0.5)
        for b in booked:
            assert len([m for m in mails if b.email in m.to]) == 1, b.email
            auth = {"Authorization": f"Bearer {b.token}"}
            inbox = (await client.call("GET", "/v1/me/notifications", 200, headers=auth)).json()[
                "notifications"
            ]
            assert [n["data"]["booking_id"] for n in inbox] == [b.booking_id]

    # 5. the new release stops cleanly, every replica at once, after the roll
    await fleet.stop_gracefully()

    # the calls that failed were all 503s that succeeded on retry (Client.call asserts both)
    counts = {phase: len(bs) for phase, bs in phases.items()}
    print(
        f"\nupgrade {OLD_RELEASE} → this tree: migrations {before} → {after}; bookings per phase {counts}; "
        f"retried 503s per phase { {p: len(f) for p, f in failures.items()} }: {sorted({f for fs in failures.values() for f in fs})}"
    )
