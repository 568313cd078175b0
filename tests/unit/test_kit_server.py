"""The kit's server: validation → INVALID_ARGUMENT with field violations, domain errors → status with
ErrorInfo, unexpected errors → INTERNAL without internals, and graceful drain on stop."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from petpro import grpc_server
from petpro.errors import NotFound
from petpro.settings import ServiceSettings
from petpro_api.auth.v1 import auth_pb2, auth_pb2_grpc


class _Settings(ServiceSettings):
    component = "auth"


class _Servicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def GetJwks(self, request, context):  # blocks until released: an in-flight RPC
        self.entered.set()
        await self.release.wait()
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(kid="k1")])

    async def Register(self, request, context):
        raise NotFound("no such thing", reason="THING_NOT_FOUND")

    async def Login(self, request, context):
        raise RuntimeError("secret internal detail")


@pytest.fixture
async def server():
    servicer = _Servicer()
    closed = []

    async def on_stop():
        closed.append(True)

    app = grpc_server.App(
        name="test",
        settings=_Settings(grace_seconds=5),
        services=[
            grpc_server.Registration(
                auth_pb2_grpc.add_AuthServiceServicer_to_server, servicer, "petpro.auth.v1.AuthService"
            )
        ],
        on_stop=[on_stop],
    )
    running = await grpc_server.start(app, port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    yield running, servicer, channel, closed
    await channel.close()
    await running.stop(grace=0)


def _details(err: grpc.aio.AioRpcError):
    status = rpc_status.from_call(err)
    out = {}
    for d in status.details if status else ():
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if d.Is(cls.DESCRIPTOR):
                msg = cls()
                d.Unpack(msg)
                out[cls.__name__] = msg
    return out


async def test_invalid_request_names_each_field(server):
    _, _, channel, _ = server
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Register(auth_pb2.RegisterRequest(email="not-an-email", password="short", name="x"))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = _details(exc.value)
    fields = {v.field for v in details["BadRequest"].field_violations}
    assert fields == {"email", "password"}
    assert details["ErrorInfo"].reason == "INVALID_ARGUMENT"


async def test_domain_error_maps_to_status_with_reason(server):
    _, _, channel, _ = server
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Register(auth_pb2.RegisterRequest(email="a@b.co", password="long enough", name="A"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert _details(exc.value)["ErrorInfo"].reason == "THING_NOT_FOUND"
    assert _details(exc.value)["ErrorInfo"].domain == "auth.petpro.dev"  # <service>.petpro.dev


def test_error_domain_is_per_service_and_passes_through() -> None:
    from petpro.errors import Kind
    from petpro.interceptors import error_domain, status_for
    from petpro.upstream import UpstreamError

    assert error_domain("/petpro.booking.v1.BookingService/ReserveSlot") == "booking.petpro.dev"
    assert error_domain("/petpro.mobile.v1.MobileService/GetBooking") == "mobile.petpro.dev"
    assert error_domain("/grpc.health.v1.Health/Check") == "petpro.dev"
    passed = UpstreamError("gone", Kind.NOT_FOUND, domain="booking.petpro.dev", reason="BOOKING_NOT_FOUND")
    status = status_for(passed, "rid", "mobile.petpro.dev")  # the BFF re-raises booking's error
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert (info.domain, info.reason) == ("booking.petpro.dev", "BOOKING_NOT_FOUND")


async def test_unexpected_error_is_internal_without_leaking(server):
    _, _, channel, _ = server
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Login(
            auth_pb2.LoginRequest(email="a@b.co", password="pw"), metadata=(("x-request-id", "rid-42"),)
        )
    assert exc.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in exc.value.details()
    assert "rid-42" in exc.value.details()


async def test_health_and_reflection(server):
    _, _, channel, _ = server
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "petpro.auth.v1.AuthService"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = refl.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    resp = await call.read()
    await call.done_writing()
    names = {s.name for s in resp.list_services_response.service}
    assert "petpro.auth.v1.AuthService" in names and "grpc.health.v1.Health" in names


async def test_stop_drains_in_flight_rpc_then_closes_resources(server):
    running, servicer, channel, closed = server
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    in_flight = asyncio.ensure_future(stub.GetJwks(auth_pb2.GetJwksRequest()))
    await servicer.entered.wait()
    stopping = asyncio.ensure_future(running.stop(grace=5))
    await running.draining.wait()
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.aio.AioRpcError):  # new RPCs are refused while draining
        await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
    assert not in_flight.done()
    servicer.release.set()
    resp = await in_flight
    assert resp.keys[0].kid == "k1"
    await stopping
    assert closed == [True]
    with pytest.raises(grpc.aio.AioRpcError):
        await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)


async def test_rpc_not_implemented_yet_is_unimplemented_not_internal(server):
    _, _, channel, _ = server
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await auth_pb2_grpc.AuthServiceStub(channel).RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token="x")
        )
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_crashed_background_task_is_started_again() -> None:
    """A background loop that raises (a consumer whose broker was down) is run again, not left dead."""
    from petpro.grpc_server import _guard

    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ConnectionError("broker refused the connection")

    await asyncio.wait_for(_guard("test", flaky, first_backoff=0.001), timeout=60)
    assert runs == 3


async def _health(channel: grpc.aio.Channel, name: str = "") -> int:
    return (
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name))
    ).status


@pytest.mark.parametrize("joins", [True, False])
async def test_not_serving_until_ready_or_its_timeout(joins: bool) -> None:
    """A server with readiness conditions (notif: its consumer in its group) answers NOT_SERVING
    until they are met, then SERVING; one never met gives way at ``ready_timeout``, never a lock-out."""
    joined = asyncio.Event()
    app = grpc_server.App(
        name="test",
        settings=_Settings(grace_seconds=0),
        services=[
            grpc_server.Registration(
                auth_pb2_grpc.add_AuthServiceServicer_to_server, _Servicer(), "petpro.auth.v1.AuthService"
            )
        ],
        ready=[joined.wait],
        ready_timeout=3600 if joins else 0.2,
    )
    running = await grpc_server.start(app, port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            for name in ("", "petpro.auth.v1.AuthService"):
                assert await _health(channel, name) == health_pb2.HealthCheckResponse.NOT_SERVING
            if joins:
                joined.set()
            await asyncio.wait_for(running.tasks[-1], timeout=30)  # the readiness gate
            for name in ("", "petpro.auth.v1.AuthService"):
                assert await _health(channel, name) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await running.stop(grace=0)


_BLOCKED_SERVICE = """
import asyncio, threading, sys
from petpro import grpc_server
from petpro.settings import ServiceSettings

class Settings(ServiceSettings):
    component = "auth"

never = threading.Event()

def blocked_read():  # a broker read that never gets an answer
    print("blocked", flush=True)
    never.wait()

async def reads():
    await asyncio.to_thread(blocked_read)

def build(settings):
    return grpc_server.App(name="blocked", settings=settings, services=[], background=[reads])

grpc_server.EXIT_THREADS_SECONDS = float(sys.argv[1])
grpc_server.main(build, Settings(grpc_port=int(sys.argv[2]), metrics_port=0, grace_seconds=0))
"""


@pytest.mark.parametrize("blocked", [True, False])
def test_a_thread_that_never_finishes_does_not_hold_the_exit(blocked: bool, tmp_path) -> None:
    """SIGTERM → the graceful stop, then worker threads get EXIT_THREADS_SECONDS: one blocked in a
    read that never returns (a Kafka metadata request without an answer) is named in the log and left
    behind, and the process exits 0 (Python would otherwise join it at exit, for ever).  With nothing
    blocked, nothing is waited for and nothing is logged."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:  # a free port (the settings want one)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "blocked.py"
    script.write_text(_BLOCKED_SERVICE if blocked else _BLOCKED_SERVICE.replace("never.wait()", "pass"))
    proc = subprocess.Popen(
        [sys.executable, str(script), "0.5", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # serving and (when blocked) the thread is in its read
            if ('"serving"' in line and not blocked) or line.startswith("blocked"):
                break
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert '"msg": "stopped' in out, out  # the graceful sequence ran
    if blocked:
        assert "worker threads still busy after the stop" in out, out
        assert "blocked_read" in out  # where it is stuck, for the operator
        assert time.monotonic() - started < 20
    else:
        assert "worker threads still busy" not in out


async def test_a_stop_step_that_never_ends_is_named_and_left_behind(monkeypatch, caplog) -> None:
    """Every step after the drain is bounded: a background task that swallows its cancellation and a
    resource whose close never returns are logged with where they wait, and the stop still ends
    (closing the resources after them), instead of hanging until the kubelet's SIGKILL."""
    monkeypatch.setattr(grpc_server, "STOP_STEP_SECONDS", 0.2)
    closed = []
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue  # (a bug: it will not end)

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def closes() -> None:
        closed.append(True)

    app = grpc_server.App(
        name="test",
        settings=_Settings(grace_seconds=0),
        services=[],
        background=[stubborn],
        on_stop=[closes, hangs],  # (closed in reverse: hangs first)
    )
    running = await grpc_server.start(app, port=0)
    await asyncio.sleep(0)  # the background task is waiting
    with caplog.at_level("WARNING", logger="petpro.server"):
        await asyncio.wait_for(running.stop(), timeout=10)
    assert closed == [True]
    messages = [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]
    assert any("still running after its cancellation" in m and "stubborn" in f["at"] for m, f in messages)
    assert any("did not finish in time" in m and "hangs" in f["step"] for m, f in messages)
    released.set()  # (the test's own clean-up)
    await asyncio.wait_for(asyncio.gather(*running.tasks), timeout=10)
