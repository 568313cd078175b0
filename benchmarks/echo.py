"""A bare grpc.aio unary echo server: the RPC floor of this machine (``python -m benchmarks.echo PORT``).

Its handler is a plain function, which grpc.aio runs in its thread pool (the floor every ratio of
``make bench`` has used).  ``python -m benchmarks.echo PORT async`` serves a coroutine instead, run on
the event loop as every PetPro handler is: the bare side of the kit's per-call tax
(benchmarks/kitcall.py), so that figure compares the kit with nothing but the kit missing.
"""

from __future__ import annotations

import sys

import grpc

METHOD = "/bench.Echo/Echo"


async def serve(port: int, coroutine: bool = False) -> None:
    def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def echo_async(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo_async if coroutine else echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(int(sys.argv[1]), len(sys.argv) > 2 and sys.argv[2] == "async"))
