"""A stand-in gRPC service for the dev-stack tests: grpc.aio server with the standard health service.

``python tests/integration/dummy_service.py --port P``; SIGTERM → NOT_SERVING → stop → exit 0.
It is launched through the same Component mechanism as the real services.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2_grpc


async def serve(port: int) -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    # prove the stack's environment reached the child
    print(f"dummy serving on {port}; DATABASE_URL={os.environ.get('DATABASE_URL')}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await servicer.enter_graceful_shutdown()
    await server.stop(grace=1.0)
    print("dummy stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
