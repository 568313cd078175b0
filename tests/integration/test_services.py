"""Every service of the mesh, as real processes: health, reflection, graceful SIGTERM, validation."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from petpro.mesh import MESH
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc
from petpro_dev.devstack import Stack
from petpro_dev.devstack.process import free_port

pytestmark = pytest.mark.integration

# component → (package, env prefix, the gRPC services it serves): the mesh manifest's
SERVICES = {s.name: (s.package, s.env_prefix.removesuffix("_"), list(s.serves)) for s in MESH.services}


async def _reflected_services(channel: grpc.aio.Channel) -> set[str]:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    resp = await call.read()
    await call.done_writing()
    return {s.name for s in resp.list_services_response.service}


@pytest.mark.parametrize("name", SERVICES)
async def test_service_is_healthy_and_reflects_its_services(mesh: Stack, name: str):
    _, _, services = SERVICES[name]
    async with grpc.aio.insecure_channel(mesh.address(name)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for svc in ["", *services]:
            resp = await health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING, svc
        assert set(services) <= await _reflected_services(channel)


async def test_invalid_request_to_a_real_server_names_the_field(mesh: Stack):
    async with grpc.aio.insecure_channel(mesh.address("booking")) as channel:
        stub = booking_pb2_grpc.BookingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetAvailability(
                booking_pb2.GetAvailabilityRequest(service_id="nope", date="2030-13-01"), timeout=5
            )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(exc.value)
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(bad.DESCRIPTOR))
    assert {v.field for v in bad.field_violations} == {"service_id", "date"}


@pytest.mark.parametrize("name", SERVICES)
async def test_sigterm_goes_not_serving_then_exits_zero(mesh: Stack, name: str):
    """A second instance of the service on its own port: a health Watch stream (an in-flight RPC)
    sees SERVING, then NOT_SERVING after SIGTERM while the server keeps it open (draining); once the
    client ends it the process exits 0.  (The kit's drain of a unary RPC: tests/unit/test_kit_server.)"""
    module, prefix, _ = SERVICES[name]
    port = free_port()
    env = {
        **os.environ,
        **mesh.env(),
        f"{prefix}_GRPC_PORT": str(port),
        f"{prefix}_METRICS_PORT": "0",
        f"{prefix}_GRACE_SECONDS": "5",
        "EDGE_HTTP_PORT": str(free_port()),
    }
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", module],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            while first.status != health_pb2.HealthCheckResponse.SERVING:
                first = await watch.read()
            proc.send_signal(signal.SIGTERM)
            update = await watch.read()  # the first thing shutdown does: report NOT_SERVING
            assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()  # the client ends its stream; the server drains and stops
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _rpcs() -> list[tuple[str, str, object]]:
    """(component, full method, empty request message) for every RPC of every internal service."""
    from google.protobuf import symbol_database

    from petpro_api.auth.v1 import auth_pb2
    from petpro_api.booking.v1 import booking_pb2 as _b
    from petpro_api.mobile.v1 import mobile_pb2
    from petpro_api.notification.v1 import clinic_feed_pb2, notification_pb2
    from petpro_api.payment.v1 import payment_pb2

    db = symbol_database.Default()
    out = []
    for component, module in (
        ("auth", auth_pb2),
        ("booking", _b),
        ("payment", payment_pb2),
        ("notif", clinic_feed_pb2),
        ("notif", notification_pb2),
        ("edge", mobile_pb2),
    ):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                request = db.GetSymbol(m.input_type.full_name)()
                out.append((component, f"/{service.full_name}/{m.name}", request, m.server_streaming))
    return out


RPCS = _rpcs()


@pytest.mark.parametrize(("component", "method", "request_msg", "streaming"), RPCS, ids=[r[1] for r in RPCS])
async def test_empty_request_to_every_rpc_is_a_client_error_never_internal(
    mesh: Stack, component: str, method: str, request_msg, streaming: bool
):
    """Every RPC, called with an all-default request (no auth), answers with a client-error status."""
    async with grpc.aio.insecure_channel(mesh.address(component)) as channel:
        kind = channel.unary_stream if streaming else channel.unary_unary
        call = kind(method, request_serializer=lambda m: m.SerializeToString(), response_deserializer=bytes)
        try:
            result = call(request_msg, timeout=10)
            if streaming:
                async for _ in result:
                    pass
            else:
                await result
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        else:
            code = grpc.StatusCode.OK
    assert code in {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OK,
        grpc.StatusCode.NOT_FOUND,
    }, (method, code)
