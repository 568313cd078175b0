"""Readiness checks: one function per protocol, each given the component's address or URL.

A check returns when the component answers and raises :class:`NotReady` (with the reason) when it
does not.  Each attempt is short (about a second at most); :func:`wait_ready` repeats it until a
deadline.  Every check first tries a plain TCP connect, so the client libraries (imported lazily) are
only used once something listens, and do not log connection errors while a server is still starting.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

ReadyCheck = Callable[[str], None]

ATTEMPT_TIMEOUT = 1.0


class NotReady(Exception):
    """The component does not answer (yet); the message says why."""


def host_port(address: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port``, ``scheme://[user@]host:port/...`` or the first of a comma-separated list."""
    first = address.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"//{first}")
    port = parts.port or default_port
    if not parts.hostname or port is None:
        raise ValueError(f"cannot find host and port in {address!r}")
    return parts.hostname, port


def tcp(address: str) -> None:
    host, port = host_port(address)
    try:
        socket.create_connection((host, port), timeout=ATTEMPT_TIMEOUT).close()
    except OSError as exc:
        raise NotReady(f"{host}:{port}: {exc.strerror or exc}") from None


def libpq_url(url: str) -> str:
    """A SQLAlchemy-style URL (``postgresql+psycopg://``) as libpq wants it (``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


def postgres(url: str) -> None:
    """The server accepts a session.  A missing database still counts as ready (the stack creates it)."""
    tcp(url)
    import psycopg

    try:
        psycopg.connect(libpq_url(url), connect_timeout=2).close()
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc) and "database" in str(exc):
            return
        raise NotReady(str(exc).strip().splitlines()[-1]) from None


def redis(url: str) -> None:
    tcp(url)
    import redis as redis_lib

    client = redis_lib.Redis.from_url(
        url, socket_connect_timeout=ATTEMPT_TIMEOUT, socket_timeout=ATTEMPT_TIMEOUT
    )
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        raise NotReady(str(exc)) from None
    finally:
        client.close()


def kafka(bootstrap: str) -> None:
    """Broker metadata can be fetched with kafka-python."""
    tcp(bootstrap)
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="petpro-devstack", request_timeout_ms=2000
        )
    except KafkaError as exc:
        raise NotReady(str(exc)) from None
    try:
        admin.list_topics()
    except KafkaError as exc:
        raise NotReady(str(exc)) from None
    finally:
        admin.close()


def smtp(url: str) -> None:
    host, port = host_port(url, default_port=25)
    import smtplib

    try:
        with smtplib.SMTP(host, port, timeout=ATTEMPT_TIMEOUT) as client:
            code, _ = client.noop()
    except (OSError, smtplib.SMTPException) as exc:
        raise NotReady(f"{host}:{port}: {exc}") from None
    if code != 250:
        raise NotReady(f"NOOP answered {code}")


def grpc_health(address: str) -> None:
    """The standard gRPC health check (``grpc.health.v1``, service "") answers SERVING."""
    tcp(address)
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=ATTEMPT_TIMEOUT
            )
        except grpc.RpcError as exc:
            raise NotReady(f"health check: {exc.code().name} {exc.details() or ''}".strip()) from None
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise NotReady(f"health status {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")


def http_ok(path: str = "/") -> ReadyCheck:
    """A check for an HTTP component: ``GET <address><path>`` answers 2xx/3xx."""

    def check(address: str) -> None:
        base = address if "://" in address else f"http://{address}"
        tcp(base)
        try:
            with urllib.request.urlopen(base.rstrip("/") + path, timeout=ATTEMPT_TIMEOUT) as resp:
                if resp.status >= 400:
                    raise NotReady(f"GET {path} answered {resp.status}")
        except urllib.error.HTTPError as exc:
            raise NotReady(f"GET {path} answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise NotReady(f"GET {path}: {exc}") from None

    return check


def wait_ready(
    check: ReadyCheck,
    address: str,
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Repeat ``check(address)`` until it passes, ``timeout`` expires or ``cancel`` is set.

    With ``proc`` the wait ends at once if that process exits: the pause between attempts *is* a wait
    on the process, so an early crash is noticed immediately rather than at the deadline.
    Raises :class:`NotReady` (timeout, with the last reason) or :class:`ProcessExited`.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            check(address)
            return
        except NotReady as exc:
            last = str(exc)
        if proc is not None and proc.poll() is not None:
            raise ProcessExited(proc.returncode)
        if cancel is not None and cancel.is_set():
            raise NotReady("cancelled")
        left = deadline - time.monotonic()
        if left <= 0:
            raise NotReady(f"not ready after {timeout:.0f}s: {last}")
        pause = min(pause * 2, 0.1, left)
        if proc is not None:
            try:
                proc.wait(pause)
            except subprocess.TimeoutExpired:
                continue
            raise ProcessExited(proc.returncode)
        if cancel is not None:
            cancel.wait(pause)
        else:
            time.sleep(pause)


class ProcessExited(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(f"exited with code {returncode}")
        self.returncode = returncode
