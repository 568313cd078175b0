"""The kit's per-call tax: an empty unary RPC through the kit's whole server and client stack against a
bare grpc.aio echo, CPU per call on each side.

``python -m benchmarks.kitcall serve PORT`` runs a kit server as a service runs it (``grpc_server.start``:
health, reflection, the kit's per-method wrapping, telemetry set up as deployed, uvloop) with one
BookingService method answering a constant: GetService, whose request carries one validated field
(``service_id``: a UUID), so the text and protovalidate checks run as they do on every request.

``python -m benchmarks.kitcall client kit|bare PORT SERVER_PID DURATION CONCURRENCY`` drives it (or
the bare echo of :mod:`benchmarks.echo`, its coroutine handler: on the event loop, as the kit's are) in a closed loop, after a warm-up, and prints one JSON line:
calls, the client's CPU seconds (its own rusage) and the server's (``/proc``) over the same window.
The kit client is ``petpro.grpc_client.channel`` with the generated stub, as the services call each
other; the bare one a raw-bytes multicallable on a plain channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Any

import grpc

from benchmarks.cpu import tree_cpu
from benchmarks.echo import METHOD as ECHO_METHOD

SERVICE_ID = "b0000000-0000-4000-8000-000000000002"
WARMUP_SECONDS = 1.0


def _request() -> Any:
    from petpro_api.booking.v1 import booking_pb2

    return booking_pb2.GetServiceRequest(service_id=SERVICE_ID)


async def serve(port: int) -> None:
    from petpro import grpc_server, telemetry
    from petpro.settings import ServiceSettings
    from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc

    telemetry.configure_logging("kitcall", "INFO")
    telemetry.setup_tracing("kitcall")
    answer = booking_pb2.GetServiceResponse(
        service=booking_pb2.Service(service_id=SERVICE_ID, name="Bench slot", duration_minutes=5)
    )

    class Servicer(booking_pb2_grpc.BookingServiceServicer):
        async def GetService(self, request: Any, context: Any) -> Any:
            return answer

    app = grpc_server.App(
        name="kitcall",
        settings=ServiceSettings(metrics_port=0),
        services=[
            grpc_server.Registration(
                booking_pb2_grpc.add_BookingServiceServicer_to_server,
                Servicer(),
                "petpro.booking.v1.BookingService",
            )
        ],
    )
    running = await grpc_server.start(app, port)
    print(running.port, flush=True)
    await running.server.wait_for_termination()


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def drive(kind: str, port: int, server_pid: int, duration: float, concurrency: int) -> dict[str, Any]:
    addr = f"127.0.0.1:{port}"
    if kind == "kit":
        from petpro import grpc_client, telemetry
        from petpro_api.booking.v1 import booking_pb2_grpc

        telemetry.setup_tracing("kitcall-client")
        ch = grpc_client.channel(addr, services=["petpro.booking.v1.BookingService"])
        stub = booking_pb2_grpc.BookingServiceStub(ch)
        req = _request()

        async def call() -> None:
            await stub.GetService(req)
    else:
        ch = grpc.aio.insecure_channel(addr)
        raw = ch.unary_unary(ECHO_METHOD)
        payload = _request().SerializeToString()

        async def call() -> None:
            await raw(payload)

    await asyncio.wait_for(ch.channel_ready(), 20)
    calls = 0

    async def loop(until: float) -> None:
        nonlocal calls
        while time.perf_counter() < until:
            await call()
            calls += 1

    until = time.perf_counter() + WARMUP_SECONDS
    await asyncio.gather(*(loop(until) for _ in range(concurrency)))
    calls = 0
    client0, server0, t0 = _cpu_self(), tree_cpu(server_pid), time.perf_counter()
    until = t0 + duration
    await asyncio.gather(*(loop(until) for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    out = {
        "calls": calls,
        "seconds": elapsed,
        "client_cpu_s": _cpu_self() - client0,
        "server_cpu_s": tree_cpu(server_pid) - server0,
    }
    await ch.close()
    return out


def _client(kind: str, port: int, pid: int, duration: float, concurrency: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.kitcall",
            "client",
            kind,
            str(port),
            str(pid),
            str(duration),
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 120,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {port}")
        time.sleep(0.05)


def measure(
    duration: float, concurrency: int, rounds: int = 3, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Both sides in one run, in ``rounds`` alternating rounds (bare, kit, bare, kit…) against one
    server of each: per side calls/s and CPU ms per call (client, server, both) of its least costly
    round (the one the shared box disturbed least), and the kit's tax (kit - bare, ms of CPU per call)
    and its ratio."""
    from petpro_dev.devstack.process import free_port

    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", **(env or {})}
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    argv = {"bare": ["benchmarks.echo", "{port}", "async"], "kit": ["benchmarks.kitcall", "serve", "{port}"]}
    rows: dict[str, list[dict[str, float]]] = {"bare": [], "kit": []}
    try:
        for kind, args in argv.items():
            port = free_port()
            servers[kind] = (
                subprocess.Popen(
                    [sys.executable, "-m", *(a.format(port=port) for a in args)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                ),
                port,
            )
        for _, port in servers.values():
            _wait_port(port)
        for _ in range(rounds):
            for kind, (proc, port) in servers.items():
                r = _client(kind, port, proc.pid, duration / rounds, concurrency)
                n = max(r["calls"], 1)
                row = {
                    "calls_per_s": round(r["calls"] / r["seconds"], 1),
                    "client_ms": round(r["client_cpu_s"] * 1e3 / n, 4),
                    "server_ms": round(r["server_cpu_s"] * 1e3 / n, 4),
                }
                row["total_ms"] = round(row["client_ms"] + row["server_ms"], 4)
                rows[kind].append(row)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    out: dict[str, Any] = {kind: min(rs, key=lambda r: r["total_ms"]) for kind, rs in rows.items()}
    out["rounds"] = rows
    out["tax_ms"] = round(out["kit"]["total_ms"] - out["bare"]["total_ms"], 4)
    out["ratio"] = (
        round(out["kit"]["total_ms"] / out["bare"]["total_ms"], 3) if out["bare"]["total_ms"] else None
    )
    return out


def main(argv: list[str]) -> None:
    import uvloop

    if argv[0] == "serve":
        uvloop.run(serve(int(argv[1])))
    elif argv[0] == "client":
        kind, port, pid, duration, concurrency = argv[1:6]
        print(json.dumps(uvloop.run(drive(kind, int(port), int(pid), float(duration), int(concurrency)))))
    elif argv[0] == "measure":
        print(json.dumps(measure(float(argv[1]) if len(argv) > 1 else 6.0, 16), indent=1))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
