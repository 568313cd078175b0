"""A bare grpc.aio unary echo server: the RPC floor of this machine (``python -m benchmarks.echo PORT``)."""

from __future__ import annotations

import sys

import grpc

METHOD = "/bench.Echo/Echo"


async def serve(port: int) -> None:
    def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(int(sys.argv[1])))
