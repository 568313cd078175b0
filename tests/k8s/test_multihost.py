"""Multi-host rehearsal: the mesh the way the cluster runs it, on one machine.

Every pod of the chart (rendered here with helm-python-sdk) is a container of the image `make image`
built, in a network namespace of its own with its own address on a bridge, the way Kubernetes makes a
pod: a pause container (``sleep infinity``) holds the pod's namespace, the test wires a veth from the
bridge into it (what a CNI plugin does), and the pod's container joins it (``--network
container:``).  Each container gets ONLY its rendered command, env (secrets resolved), mounts
(ConfigMap and Secret files, emptyDir as tmpfs) and securityContext (user 10001, read-only root,
capabilities dropped, no privilege escalation); ``dns:///petpro-booking:7402`` targets resolve
through the pod's /etc/hosts, one line per pod, the way a headless Service resolves to one A record per
pod; Envoy's config is the rendered ConfigMap.  Two replicas of booking_svc and of notif_worker; the
hook Jobs run from the image too.  The backing services (embedded PostgreSQL, Redis, tansu, SMTP sink,
Stripe sandbox) run in the root namespace bound to the bridge address, standing in for the managed ones.

While clients book through the REST edge, one booking replica is SIGKILLed and one notif replica is
stopped: every booking a client was told succeeded is confirmed exactly once, each notification is
delivered once, the calls that failed were retryable (503) and succeeded on retry, and both booking
replicas served requests before the kill.

The proxy chain: a second Envoy in its own namespace plays the Ingress controller in front of the
chart's Envoy (which trusts X-Forwarded-For from that address only: envoy.clientAddress), and two
clients in two more namespaces call through it: the login throttle and Envoy's per-client bucket
apply per real client, a client's own X-Forwarded-For does not make it another client, and a request
that bypasses the Ingress is its own address, whatever it claims.

Needs root, iproute2 and the image (`make test` builds it first; CI runs as root); skipped with the
reason otherwise, except a missing engine or image in CI, which fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ctypes
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from petpro_dev.client import CHECKUP, eventually
from tests.k8s.images import image_ref

pytestmark = [
    pytest.mark.multihost,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="multi-host rehearsal needs root (network namespaces)"),
    pytest.mark.skipif(
        shutil.which("ip") is None or shutil.which("ss") is None,
        reason="multi-host rehearsal needs iproute2 (`ip`, `ss`)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "petpro"
SECRET_NAME = "rehearsal-secrets"


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


# --------------------------------------------------------------------------------------------------
# network: a bridge in the root namespace, one namespace per pod
# --------------------------------------------------------------------------------------------------


@dataclass
class Network:
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    prefix: str = ""
    namespaces: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)  # pod name → address
    names: dict[str, list[str]] = field(default_factory=dict)  # Service name → its pods' addresses

    @property
    def bridge(self) -> str:
        return f"ppbr{self.tag}"

    @property
    def gateway(self) -> str:
        return f"{self.prefix}.1"

    def create_bridge(self) -> None:
        used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
        for _ in range(100):
            prefix = f"10.{secrets.randbelow(40) + 200}.{secrets.randbelow(254) + 1}"
            if (
                f" {prefix}." not in used
                and not routes.startswith(f"{prefix}.")
                and f"\n{prefix}." not in routes
            ):
                self.prefix = prefix
                break
        else:
            raise RuntimeError("no free 10.x.y.0/24 for the rehearsal")
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def address(self, pod: str) -> str:
        """The pod's address on the bridge (planned before any namespace exists)."""
        if pod not in self.hosts:
            self.hosts[pod] = f"{self.prefix}.{len(self.hosts) + 10}"
        return self.hosts[pod]

    def add_host(self, pod: str, pid: int | None = None) -> str:
        """A namespace on the bridge for ``pod``: a new one, or (``pid``) the one a process already
        has, e.g. a pod's pause container (``ip netns attach`` names it); its name."""
        ip = self.address(pod)
        i = ip.rsplit(".", 1)[1]
        ns, veth = f"pp{self.tag}-{pod}", f"pp{self.tag}v{i}"
        if pid is None:
            run("ip", "netns", "add", ns)
        else:
            run("ip", "netns", "attach", ns, str(pid))
        self.namespaces.append(ns)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
        self.veths.append(veth)
        run("ip", "link", "set", f"{veth}p", "netns", ns)
        run("ip", "link", "set", veth, "master", self.bridge)
        run("ip", "link", "set", veth, "up")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", f"{veth}p")
        run("ip", "netns", "exec", ns, "ip", "link", "set", f"{veth}p", "up")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        return ns

    def write_hosts(self, names: dict[str, list[str]]) -> None:
        """Each namespace's /etc/hosts: every Service name → the addresses of its pods (what a
        headless Service's DNS answers)."""
        self.names = names
        lines = ["127.0.0.1 localhost"] + [f"{ip} {name}" for name, ips in names.items() for ip in ips]
        for ns in self.namespaces:
            d = Path("/etc/netns") / ns
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts").write_text("\n".join(lines) + "\n")

    def destroy(self) -> None:
        for veth in self.veths:  # gone with its namespace, unless that outlives us
            subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)


# --------------------------------------------------------------------------------------------------
# pods: a rendered container run as a container of the image, in its pod's namespace
# --------------------------------------------------------------------------------------------------


@dataclass
class ContainerProc:
    """A pod's container, with what the test needs of a process: its host pid (signals reach it from
    the host as from the kubelet), poll/wait for the exit code, its log."""

    engine: list[str]
    name: str
    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        out = subprocess.run(
            [*self.engine, "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", self.name],
            capture_output=True,
            text=True,
        ).stdout.split()
        if out and out[0] == "false":
            self.returncode = int(out[1])
        return self.returncode

    def wait(self, timeout: float) -> int:
        try:
            out = subprocess.run(
                [*self.engine, "wait", self.name], capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise subprocess.TimeoutExpired(self.name, timeout) from None
        self.returncode = int(out.stdout.strip())
        return self.returncode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def logs(self, n: int) -> str:
        r = subprocess.run(
            [*self.engine, "logs", "--tail", str(n), self.name], capture_output=True, text=True
        )
        return r.stdout + r.stderr


@dataclass
class Pod:
    name: str  # e.g. "booking-0"
    component: str
    netns: str
    ip: str
    proc: Any  # ContainerProc (a chart pod) or subprocess.Popen (the test's Ingress)
    log: Path | None
    probe: dict[str, Any]

    def log_tail(self, n: int = 30) -> str:
        if isinstance(self.proc, ContainerProc):
            return self.proc.logs(n)
        with contextlib.suppress(OSError):
            assert self.log is not None
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""


def container_args(
    spec: dict[str, Any],
    container: dict[str, Any],
    volumes: dict[str, Path],
    secret: dict[str, str],
    files: dict[str, dict[str, str]],
) -> list[str]:
    """``docker run`` arguments for a rendered container (the kubelet's job): its env with secret refs
    resolved, ConfigMap/Secret volumes as read-only files owned by the pod's user, emptyDirs as tmpfs,
    the securityContext, the image, the command."""
    sc = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    uid, gid = int(sc["runAsUser"]), int(sc.get("runAsGroup", sc["runAsUser"]))
    args = ["--user", f"{uid}:{gid}"]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if "ALL" in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", "ALL"]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    kinds = {v["name"]: v for v in spec.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        volume = kinds[m["name"]]
        if "emptyDir" in volume:
            limit = volume["emptyDir"].get("sizeLimit", "64Mi").replace("Mi", "m")
            args += ["--tmpfs", f"{m['mountPath']}:rw,size={limit},mode=1777"]
            continue
        local = volumes[m["name"]]
        local.mkdir(parents=True, exist_ok=True)
        os.chown(local, uid, gid)
        for fname, content in files.get(m["name"], {}).items():
            (local / fname).write_text(content)
            os.chown(local / fname, uid, gid)
            (local / fname).chmod(0o400)
        args += ["-v", f"{local}:{m['mountPath']}:ro"]
    for e in container.get("env", []):
        if "value" in e:
            args += ["-e", f"{e['name']}={e['value']}"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET_NAME, ref
            args += ["-e", f"{e['name']}={secret[ref['key']]}"]
    return args


class Rehearsal:
    def __init__(
        self,
        home: Path,
        net: Network,
        stack: Any,
        objects: list[dict[str, Any]],
        secret: dict[str, str],
        engine: list[str],
    ) -> None:
        self.home, self.net, self.stack, self.objects, self.secret = home, net, stack, objects, secret
        self.engine, self.label = engine, f"petpro-rehearsal={net.tag}"
        self.pods: dict[str, Pod] = {}
        self.containers: list[str] = []  # every container started (pause ones too), for the teardown

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def workload(self, suffix: str) -> dict[str, Any]:
        (o,) = [
            o
            for o in self.objects
            if o["kind"] in ("Deployment", "Job") and o["metadata"]["name"] == f"{RELEASE}-{suffix}"
        ]
        return o

    def _files(self) -> dict[str, dict[str, str]]:
        (cm,) = self.kind("ConfigMap")
        return {
            "config": dict(cm["data"]),
            "signing-keys": {"auth-signing.pem": self.secret["auth-signing.pem"]},
        }

    def start(self, pod: str, component: str, workload: dict[str, Any]) -> Pod:
        """The pod: its pause container, its namespace wired to the bridge, then its container."""
        spec = workload["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        base = self.home / "pods" / pod
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        volumes = {v["name"]: base / v["name"] for v in spec.get("volumes", [])}
        hosts = [
            a for name, ips in self.net.names.items() for ip in ips for a in ("--add-host", f"{name}:{ip}")
        ]
        pause = f"pp{self.net.tag}-{pod}-pause"
        self._engine("run", "-d", "--name", pause, "--label", self.label, "--network", "none", *hosts,
                     "--read-only", "--cap-drop", "ALL", image_ref(), "sleep", "infinity")  # fmt: skip
        self.containers.append(pause)
        ns = self.net.add_host(pod, pid=self._pid(pause))
        name = f"pp{self.net.tag}-{pod}"
        args = container_args(spec, container, volumes, self.secret, self._files())
        self._engine("run", "-d", "--name", name, "--label", self.label, "--network", f"container:{pause}",
                     *args, image_ref(), *container["command"])  # fmt: skip
        self.containers.append(name)
        proc = ContainerProc(self.engine, name, self._pid(name))
        p = Pod(pod, component, ns, self.net.hosts[pod], proc, None, container.get("readinessProbe", {}))
        self.pods[pod] = p
        return p

    def _engine(self, *args: str) -> str:
        r = subprocess.run([*self.engine, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(args[:4])} …: {r.stdout}{r.stderr}"
        return r.stdout.strip()

    def _pid(self, name: str) -> int:
        return int(self._engine("inspect", "-f", "{{.State.Pid}}", name))

    def start_ingress(self) -> Pod:
        """The Ingress controller's pod: a second Envoy in front of the chart's."""
        from edge.gateway.envoy import envoy_binary

        base = self.home / "pods" / INGRESS
        base.mkdir(parents=True, exist_ok=True)
        config = base / "envoy.json"
        config.write_text(json.dumps(ingress_config(self.net.hosts["envoy-0"])))
        log = base / "log"
        ns = f"pp{self.net.tag}-{INGRESS}"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    *("ip", "netns", "exec", ns, envoy_binary(), "-c", str(config)),
                    *("--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        p = Pod(INGRESS, "ingress", ns, self.net.hosts[INGRESS], proc, log, {"exec": "admin"})
        self.pods[INGRESS] = p
        return p

    def run_job(self, pod: str, suffix: str) -> None:
        p = self.start(f"{pod}-{suffix}", suffix, self.workload(suffix))
        try:
            code = p.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            raise
        assert code == 0, f"hook job {suffix} failed:\n{p.log_tail()}"
        del self.pods[p.name]

    async def ready(self, pod: Pod, timeout: float = 90) -> None:
        """What the kubelet's readiness probe checks: gRPC health SERVING / Envoy's /ready."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async def probe() -> bool:
            if pod.proc.poll() is not None:
                raise AssertionError(f"{pod.name} exited with {pod.proc.returncode}:\n{pod.log_tail()}")
            if pod.component == "ingress":  # its listener answers (any status: it forwards to Envoy)
                async with httpx.AsyncClient(timeout=1) as c:
                    try:
                        await c.get(f"http://{pod.ip}:80/healthz")
                    except httpx.HTTPError:
                        return False
                    return True
            if "grpc" in pod.probe:
                async with grpc.aio.insecure_channel(f"{pod.ip}:{pod.probe['grpc']['port']}") as ch:
                    try:
                        r = await health_pb2_grpc.HealthStub(ch).Check(
                            health_pb2.HealthCheckRequest(), timeout=1
                        )
                    except grpc.aio.AioRpcError:
                        return False
                    return r.status == health_pb2.HealthCheckResponse.SERVING
            async with httpx.AsyncClient(timeout=1) as c:
                try:
                    r = await c.get(f"http://{pod.ip}:9901{pod.probe['httpGet']['path']}")
                except httpx.HTTPError:
                    return False
                return r.status_code == 200

        try:
            await eventually(probe, timeout=timeout, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{pod.name} not ready: {exc}\n{pod.log_tail()}") from None

    def stop_all(self) -> None:
        if self.containers:
            subprocess.run([*self.engine, "rm", "-f", *self.containers], capture_output=True, timeout=120)
        for p in self.pods.values():
            if isinstance(p.proc, subprocess.Popen):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.proc.wait(timeout=10)


def infra_components(envoy_ip: str) -> list[Any]:
    """The dev stack's backing services, PostgreSQL accepting the bridge's subnet, the Stripe
    sandbox delivering webhooks to Envoy's pod."""
    from petpro_dev.devstack import Component, infra
    from petpro_dev.devstack.component import Launch

    def pg_prepare(original: Callable[[Any], None] | None) -> Callable[[Any], None]:
        def prepare(ctx: Any) -> None:
            if original:
                original(ctx)
            hba = ctx.data_dir("postgres") / "pg_hba.conf"
            subnet = ".".join(envoy_ip.split(".")[:3]) + ".0/24"
            line = f"host all all {subnet} trust\n"
            if line not in hba.read_text():
                with hba.open("a") as fh:
                    fh.write(line)

        return prepare

    out = []
    for c in infra():
        if c.name in (
            "push",
            "sms",
        ):  # the rehearsal chart points at no provider stand-ins: no device push, no SMS
            continue
        if c.name == "postgres":
            c = dataclasses.replace(c, prepare=pg_prepare(c.prepare))
        if c.name == "stripe":

            def launch(ctx: Any) -> Launch:
                return Launch(
                    [
                        sys.executable,
                        "-m",
                        "petpro_dev.stripe_sandbox",
                        "--host",
                        ctx.settings.host,
                        "--port",
                        str(ctx.port("stripe")),
                        "--home",
                        str(ctx.home),
                        "--webhook-url",
                        f"http://{envoy_ip}:8080/webhooks/stripe",
                        "--retry-base",
                        "0.2",
                        "--retry-cap",
                        "2",
                        "--max-attempts",
                        "20",
                    ]
                )

            c = dataclasses.replace(c, launch=launch)
        out.append(c)
    assert [c.name for c in out] == ["postgres", "redis", "kafka", "smtp", "stripe"]
    return [c for c in out if isinstance(c, Component)]


def rehearsal_values(stack: Any, ingress_ip: str) -> dict[str, Any]:
    env = stack.env()
    two = {"replicas": 2, "autoscaling": {"enabled": False}}
    one = {"replicas": 1, "autoscaling": {"enabled": False}}
    return {
        "secrets": {"existingSecret": SECRET_NAME, "existingSigningKeysSecret": "rehearsal-signing-keys"},
        "kafka": {
            "bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "replicationFactor": 1,
            "partitions": 4,
        },
        "stripe": {"apiBase": env["STRIPE_API_BASE"]},
        "common": {"settings": {"GRACE_SECONDS": "3"}},
        "services": {
            # a back-off long enough that a throttle check cannot pass by waiting it out
            "auth": {**one, "settings": {"THROTTLE_BASE_SECONDS": "600"}},
            "booking": two,
            "payment": one,
            "notif": two,
            "edge": one,
        },
        # X-Forwarded-For is believed from the Ingress controller's address only
        "envoy": {
            **one,
            "concurrency": 1,
            "clientAddress": {"trustedProxyHops": 0, "trustedProxyCidrs": [f"{ingress_ip}/32"]},
        },
    }


PODS = {  # pod (its own host) → component
    "auth-0": "auth",
    "booking-0": "booking",
    "booking-1": "booking",
    "payment-0": "payment",
    "notif-0": "notif",
    "notif-1": "notif",
    "edge-0": "edge",
    "envoy-0": "envoy",
}
JOBS = ("migrate", "topics")  # the hook Jobs, run as pods "jobs-migrate", "jobs-topics"
# hosts outside the chart: the Ingress controller in front of Envoy, and two clients
INGRESS, CLIENTS = "ingress-0", ("client-a", "client-b")


def ingress_config(envoy_ip: str) -> dict[str, Any]:
    """A plain Envoy reverse proxy as an Ingress controller is one: it appends the peer's address to
    the client's X-Forwarded-For (use_remote_address, no trusted hops) and forwards everything to
    the chart's Envoy Service."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "use_remote_address": True,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "petpro",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": "petpro-envoy", "timeout": "60s"}}
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}},
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "petpro-envoy",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "petpro-envoy",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": envoy_ip, "port_value": 8080}
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


_CLONE_NEWNET = 0x40000000


async def in_netns(netns: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn()`` on an event loop of a thread that entered ``netns``: its sockets are that
    host's (a client on another machine).  setns(2) moves the calling thread only."""
    out: dict[str, Any] = {}

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        try:
            out["value"] = asyncio.run(fn())
        except BaseException as exc:  # re-raised in the caller
            out["error"] = exc

    t = threading.Thread(target=target, name=f"netns-{netns}")
    t.start()
    await asyncio.to_thread(t.join)
    if "error" in out:
        raise out["error"]
    return out["value"]


def render_chart(values: dict[str, Any]) -> list[dict[str, Any]]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("k8s_render", ROOT / "k8s" / "render.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rendered = mod.render(copy.deepcopy(values), release=RELEASE, namespace="rehearsal")
    return [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]


def signing_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


@pytest.fixture(scope="module")
async def rehearsal(port_bases: Any, engine: list[str]) -> Any:
    from petpro.settings import StackSettings
    from petpro_dev.devstack import Stack
    from petpro_dev.image import forward_policy
    from petpro_dev.seed import DEMO, seed
    from petpro_dev.stripe_sandbox.signing import load_webhook_secret
    from tests.conftest import make_home, no_external_urls

    # a container engine that set FORWARD to DROP would cut the bridge silently (test_forward_policy.py)
    assert forward_policy() in (None, "ACCEPT"), f"iptables FORWARD policy is {forward_policy()}"
    home = make_home("petpro-multihost-")
    net = Network()
    stack: Stack | None = None
    reh: Rehearsal | None = None
    try:
        net.create_bridge()
        for pod in [*PODS, *(f"jobs-{job}" for job in JOBS)]:
            net.address(pod)  # the chart's pods: addresses now, namespaces when their pause containers start
        for pod in [INGRESS, *CLIENTS]:
            net.add_host(pod)
        net.write_hosts(
            {
                f"{RELEASE}-{c}": [net.hosts[p] for p, pc in PODS.items() if pc == c]
                for c in dict.fromkeys(PODS.values())
            }
        )
        settings = StackSettings(home=home, host=net.gateway, port_base=port_bases.allocate())
        stack = Stack(settings, infra_components(net.hosts["envoy-0"]), backing=no_external_urls())
        stack.up()
        env = stack.env()
        secret = {
            "DATABASE_URL": env["DATABASE_URL"],
            "REDIS_URL": env["REDIS_URL"],
            "SMTP_URL": env["SMTP_URL"],
            "STRIPE_API_KEY": "sk_test_rehearsal",
            "STRIPE_WEBHOOK_SECRET": load_webhook_secret(home, env=False),
            "auth-signing.pem": signing_key_pem(),
        }
        objects = render_chart(rehearsal_values(stack, net.hosts[INGRESS]))
        reh = Rehearsal(home, net, stack, objects, secret, engine)
        # the hook Jobs, each a pod of its own
        for job in JOBS:
            reh.run_job("jobs", job)
        seed(
            DEMO, {"PATH": os.environ["PATH"], "DATABASE_URL": env["DATABASE_URL"]}
        )  # the services' seed entry points
        for pod, component in PODS.items():
            reh.start(pod, component, reh.workload(component))
        reh.start_ingress()
        for p in list(reh.pods.values()):
            await reh.ready(p)
        yield reh
    finally:
        if reh is not None:
            reh.stop_all()
        if stack is not None:
            stack.down(purge=True)
        net.destroy()
        shutil.rmtree(home, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# the client side
# --------------------------------------------------------------------------------------------------


@dataclass
class Booked:
    email: str
    token: str
    lock_id: str
    booking_id: str


class Client:
    """A mobile client: every failed call must be a 503 (retry later), and is retried."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.failures: list[tuple[str, int]] = []

    async def call(self, method: str, url: str, ok: int, **kw: Any) -> httpx.Response:
        for _ in range(60):
            r = await self.http.request(method, url, **kw)
            if r.status_code == ok:
                return r
            assert r.status_code == 503, (
                f"{method} {url} → {r.status_code} {r.text}"
            )  # never a client error/500
            self.failures.append((f"{method} {url.split('?')[0]}", r.status_code))
            await asyncio.sleep(0.2)  # the client's retry backoff
        raise AssertionError(f"{method} {url} still failing after 60 tries")

    async def slots(self, n: int) -> list[str]:
        import datetime as dt

        found: list[str] = []
        day = dt.date.today() + dt.timedelta(days=2)
        while len(found) < n:
            if day.weekday() <= 3:
                r = await self.call("GET", f"/v1/services/{CHECKUP}/availability?date={day.isoformat()}", 200)
                found += [s["start_time"] for s in r.json()["slots"] if s["free"]]
            day += dt.timedelta(days=1)
        return found[:n]

    async def owner(self) -> tuple[str, str, dict[str, str], str]:
        """A new account, signed in, with a pet: (email, token, auth header, pet id)."""
        email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
        await self.call(
            "POST",
            "/v1/auth/register",
            201,
            json={"email": email, "password": "correct-horse", "name": "Ann"},
        )
        login = await self.call(
            "POST", "/v1/auth/login", 200, json={"email": email, "password": "correct-horse"}
        )
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        pet = await self.call(
            "POST", "/v1/pets", 201, json={"name": "Rex", "species": "SPECIES_DOG"}, headers=auth
        )
        return email, login.json()["access_token"], auth, pet.json()["pet"]["pet_id"]

    async def book(self, slot: str, owner: tuple[str, str, dict[str, str], str] | None = None) -> Booked:
        email, token, auth, pet_id = owner or await self.owner()
        key = uuid.uuid4().hex  # the same key on every retry: one hold, one payment session
        held = await self.call(
            "POST",
            "/v1/bookings",
            201,
            headers={**auth, "Idempotency-Key": key},
            json={
                "service_id": CHECKUP,
                "pet_id": pet_id,
                "slot": slot,
                "payment_method": "card",
            },
        )
        lock_id, payment_url = held.json()["lock_id"], held.json()["payment_url"]
        async with httpx.AsyncClient(timeout=10) as c:
            paid = await c.post(
                payment_url, data={"card_number": "4242424242424242"}, headers={"Accept": "application/json"}
            )
        assert paid.status_code == 200, paid.text

        async def confirmed() -> dict[str, Any] | None:
            r = await self.call("GET", f"/v1/reservations/{lock_id}", 200, headers=auth)
            return r.json() if r.json()["status"] == "CONFIRMED" else None

        res = await eventually(confirmed, timeout=90, interval=0.2)
        return Booked(email, token, lock_id, res["booking_id"])


async def served(http: httpx.AsyncClient, ip: str) -> float:
    """BookingService RPCs this booking replica completed (its Prometheus counter, from its host)."""
    text = (await http.get(f"http://{ip}:7502/metrics")).text
    return sum(
        float(m.group(1))
        for m in re.finditer(
            r"^grpc_server_handled_total\{[^}]*BookingService/[^}]*\} ([0-9.e+]+)$", text, re.M
        )
    )


async def test_behind_an_ingress_each_client_is_its_own_address_and_cannot_pose_as_another(
    rehearsal: Rehearsal,
) -> None:
    r = rehearsal
    ingress = f"http://{r.net.hosts[INGRESS]}:80"
    direct = f"http://{r.net.hosts['envoy-0']}:8080"  # bypassing the Ingress
    a_ns, b_ns = (f"pp{r.net.tag}-{c}" for c in CLIENTS)
    b_ip = r.net.hosts[CLIENTS[1]]
    posing_as_b = {"X-Forwarded-For": b_ip, "X-Petpro-Client-Address": b_ip}  # both claims are ignored

    async def logins(base: str, email: str, passwords: list[str], headers: dict[str, str]) -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=20, headers=headers) as c:
            return [
                (await c.post("/v1/auth/login", json={"email": email, "password": pw})).status_code
                for pw in passwords
            ]

    async def register(email: str) -> None:
        async with httpx.AsyncClient(base_url=direct, timeout=20) as c:
            r = await c.post(
                "/v1/auth/register", json={"email": email, "password": "correct-horse", "name": "A"}
            )
            assert r.status_code == 201, r.text

    victims = [f"victim-{uuid.uuid4().hex[:8]}@example.com" for _ in range(3)]
    for email in victims:
        await register(email)
    wrong = ["wrong-horse"] * 6 + ["correct-horse"]  # 5 free failures, the 6th starts a 600 s back-off

    # 1. A, through the Ingress, claims to be B (its own X-Forwarded-For): A is throttled, B is not
    assert await in_netns(a_ns, lambda: logins(ingress, victims[0], wrong, posing_as_b)) == [401] * 6 + [429]
    assert await in_netns(b_ns, lambda: logins(ingress, victims[0], ["correct-horse"], {})) == [200]

    # 2. A bypasses the Ingress (straight to Envoy) and claims to be B: Envoy takes A's own address, so
    #    the back-off lands on A (also when A comes back through the Ingress), never on B
    assert await in_netns(a_ns, lambda: logins(direct, victims[1], wrong, posing_as_b)) == [401] * 6 + [429]
    assert await in_netns(b_ns, lambda: logins(ingress, victims[1], ["correct-horse"], {})) == [200]
    assert await in_netns(a_ns, lambda: logins(ingress, victims[1], ["correct-horse"], {})) == [429]

    # 3. the throttle is per client, not per proxy: B's failures through the Ingress throttle B only
    assert await in_netns(b_ns, lambda: logins(ingress, victims[2], wrong, {})) == [401] * 6 + [429]
    assert await in_netns(a_ns, lambda: logins(ingress, victims[2], ["correct-horse"], {})) == [200]

    # 4. Envoy's per-client bucket (burst 200, 100/s): A floods through the Ingress (posing as B) and is
    #    cut off with 429s while B, through the same Ingress at the same time, is never limited
    flood_done = threading.Event()

    async def flood() -> Counter[int]:
        """1,600 requests pipelined on 8 HTTP/1.1 connections: far faster than the bucket refills,
        whatever the machine's speed (a Python client awaiting each answer is not)."""
        import h11

        host, port = r.net.hosts[INGRESS], 80

        async def connection(n: int) -> list[int]:
            reader, writer = await asyncio.open_connection(host, port)
            raw = f"GET /v1/no-such-route HTTP/1.1\r\nhost: api\r\nx-forwarded-for: {b_ip}\r\n\r\n".encode()
            writer.write(raw * n)
            await writer.drain()
            # h11 parses the answers in order; it wants to have "sent" each request it reads a reply to
            parser = h11.Connection(h11.CLIENT)
            statuses: list[int] = []
            while len(statuses) < n:
                parser.send(h11.Request(method="GET", target="/", headers=[("host", "api")]))
                parser.send(h11.EndOfMessage())
                while True:
                    event = parser.next_event()
                    if event is h11.NEED_DATA:
                        parser.receive_data(await asyncio.wait_for(reader.read(65536), 30))
                        continue
                    if isinstance(event, h11.Response):
                        statuses.append(event.status_code)
                    if isinstance(event, h11.EndOfMessage):
                        break
                parser.start_next_cycle()
            writer.close()
            return statuses

        try:
            results = await asyncio.gather(*(connection(200) for _ in range(8)))
        finally:
            flood_done.set()
        return Counter(status for statuses in results for status in statuses)

    async def steady() -> Counter[int]:
        async with httpx.AsyncClient(base_url=ingress, timeout=20) as c:
            statuses: Counter[int] = Counter()
            while not flood_done.is_set():
                statuses[(await c.get("/v1/no-such-route")).status_code] += 1
                await asyncio.sleep(0.02)
            return statuses

    flooded, calm = await asyncio.gather(in_netns(a_ns, flood), in_netns(b_ns, steady))
    assert flooded[429] > 0 and set(flooded) <= {404, 429}, flooded
    assert calm[404] >= 5 and set(calm) == {404}, calm
    print(f"\nproxy chain: flood from A (posing as B) {dict(flooded)}, B meanwhile {dict(calm)}")


async def test_the_alert_rules_name_metrics_the_pods_export(rehearsal: Rehearsal) -> None:
    """Every metric the chart's alerts select (k8s/helm/petpro/files/alerts.yaml) is in some pod's
    /metrics, and booking's refund gauges are measured (they have samples from the start)."""
    from prometheus_client.parser import text_string_to_metric_families

    from petpro.mesh import MESH
    from tests.k8s.test_alerts import rule_metric_names

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported: set[str] = set()
    samples: dict[str, list[Any]] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for pod in rehearsal.pods.values():
            if pod.component not in {s.name for s in MESH.services}:
                continue
            text = (await http.get(f"http://{pod.ip}:{MESH.port(f'{pod.component}_metrics')}/metrics")).text
            for family in text_string_to_metric_families(text):
                exported |= {family.name + sfx for sfx in suffixes.get(family.type, ("",))}
                for sample in family.samples:
                    samples.setdefault(sample.name, []).append((pod.component, sample.labels))
    missing = rule_metric_names() - exported
    assert not missing, f"the alerts select metrics no pod exports: {sorted(missing)}"
    refund_states = {
        labels["state"] for component, labels in samples["booking_refunds_open"] if component == "booking"
    }
    assert refund_states == {"PENDING", "PROCESSING", "FAILED"}


async def test_bookings_survive_a_killed_booking_replica_and_a_stopped_notif_replica(
    rehearsal: Rehearsal,
) -> None:
    import psycopg

    from petpro.events import group_lag
    from petpro_dev.devstack.mail import list_messages

    r = rehearsal
    booking0, booking1 = r.pods["booking-0"], r.pods["booking-1"]
    async with httpx.AsyncClient(base_url=f"http://{r.net.hosts['envoy-0']}:8080", timeout=30) as http:
        client = Client(http)
        slots = await client.slots(24)
        booked: list[Booked] = []

        # 1. load is balanced: both booking replicas serve the bookings' RPCs (round_robin per call;
        #    the edge reaches them through one dns:/// name)
        booked.append(await client.book(slots.pop()))
        served_before_kill = {p.name: await served(http, p.ip) for p in (booking0, booking1)}
        assert all(n > 0 for n in served_before_kill.values()), served_before_kill

        env = r.stack.env()

        def outbox_pending() -> int:
            with psycopg.connect(env["DATABASE_URL"]) as conn:
                return conn.execute("SELECT count(*) FROM booking.outbox WHERE sent_at IS NULL").fetchone()[0]

        async def drained() -> bool:
            state["outbox"] = outbox_pending()
            state["lag"] = group_lag(env["KAFKA_BOOTSTRAP_SERVERS"], "notif-worker", "booking.created")
            return state["outbox"] == 0 and state["lag"] == 0

        state: dict[str, int] = {}

        async def wait_drained() -> None:
            try:
                await eventually(drained, timeout=120, interval=0.5)
            except AssertionError:
                logs = "\n".join(
                    f"--- {p.name}\n{p.log_tail(15)}"
                    for p in r.pods.values()
                    if p.component in ("booking", "notif")
                )
                raise AssertionError(f"events not drained: {state}\n{logs}") from None

        # the consumer group has formed (both notif replicas joined) before anything is stopped
        await wait_drained()

        # 2. concurrent clients; after two more bookings booking-0 dies with RPCs in flight (frozen,
        #    then SIGKILLed once a request waits in its socket) and notif-0 is stopped (SIGTERM)
        #    The owners sign up first: argon2 (deliberately slow) on a busy 2-core machine is no part of
        #    what this phase tests, and 12 concurrent sign-ups could outlast the edge's deadline.
        progressed = asyncio.Event()
        phase2: list[Booked] = []
        todo = slots[:12]
        owners = dict(zip(todo, [await client.owner() for _ in todo], strict=True))

        async def worker(mine: list[str]) -> None:
            for slot in mine:
                phase2.append(await client.book(slot, owners[slot]))
                if len(phase2) >= 2:
                    progressed.set()

        def in_flight() -> bool:  # bytes of an RPC are waiting unread in the frozen replica's sockets
            out = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    booking0.netns,
                    "ss",
                    "-Htn",
                    "state",
                    "established",
                    "sport",
                    "= :7402",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return any(int(line.split()[0]) > 0 for line in out.splitlines())

        async def chaos() -> None:
            await progressed.wait()
            os.kill(booking0.proc.pid, signal.SIGSTOP)
            await eventually(lambda: asyncio.to_thread(in_flight), timeout=60, interval=0.05)
            os.kill(booking0.proc.pid, signal.SIGKILL)
            r.pods["notif-0"].proc.send_signal(signal.SIGTERM)

        await asyncio.gather(chaos(), *(worker(todo[i::4]) for i in range(4)))
        booked += phase2
        assert booking0.proc.wait(timeout=10) == 128 + signal.SIGKILL
        assert r.pods["notif-0"].proc.wait(timeout=30) == 0  # drained and exited cleanly
        assert await served(http, booking1.ip) > served_before_kill["booking-1"]  # the survivor took over

        # 3. every booking the clients were told succeeded is confirmed exactly once
        for b in booked:
            auth = {"Authorization": f"Bearer {b.token}"}
            mine = (await client.call("GET", "/v1/bookings", 200, headers=auth)).json()["bookings"]
            assert [(x["booking_id"], x["reservation_lock_id"]) for x in mine] == [(b.booking_id, b.lock_id)]

        # 4. each notification delivered once: wait until the events are relayed and consumed
        await wait_drained()
        # the bookings' mail (every registration also sends an account verification mail)
        mails = [m for m in list_messages(r.stack.ctx.mail_dir) if m.message["X-PetPro-Mail"] is None]
        for b in booked:
            assert len([m for m in mails if b.email in m.to]) == 1, b.email
            auth = {"Authorization": f"Bearer {b.token}"}
            inbox = (await client.call("GET", "/v1/me/notifications", 200, headers=auth)).json()[
                "notifications"
            ]
            assert [n["data"]["booking_id"] for n in inbox] == [b.booking_id]

    # the failed calls were all "retry later" and all succeeded on retry (Client.call asserts both)
    print(
        f"\nrehearsal: {len(booked)} bookings, BookingService RPCs per replica before the kill {served_before_kill}, "
        f"{len(client.failures)} retried 503s: {sorted(set(client.failures))}"
    )
