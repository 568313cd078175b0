"""The kit's client channels: round_robin over every address a target resolves to (what makes two
booking replicas behind a headless Service share the load) and the retry policy kept beside it."""

from __future__ import annotations

import json
from collections import Counter

import grpc

from petpro import grpc_client

SERVICE = "petpro.test.v1.Who"


async def _server(name: str) -> tuple[grpc.aio.Server, int]:
    async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return name.encode()

    handler = grpc.method_handlers_generic_handler(SERVICE, {"Am": grpc.unary_unary_rpc_method_handler(who)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def test_service_config_selects_round_robin_and_keeps_retries() -> None:
    config = json.loads(grpc_client.service_config([f"{SERVICE}/Am"]))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": SERVICE, "method": "Am"}]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert json.loads(grpc_client.service_config([]))["loadBalancingConfig"] == [{"round_robin": {}}]


async def test_calls_are_spread_over_every_resolved_address() -> None:
    a, port_a = await _server("a")
    b, port_b = await _server("b")
    # one target, two addresses (as a headless Service's DNS name resolves to one A record per pod);
    # a test service has no method policy in the protos: no retries, the balancing is what is tested
    ch = grpc_client.channel(f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}", services=[])
    try:
        await ch.channel_ready()
        call = ch.unary_unary(f"/{SERVICE}/Am", request_serializer=None, response_deserializer=None)
        seen = Counter([(await call(b"", wait_for_ready=True)).decode() for _ in range(20)])
    finally:
        await ch.close()
        await a.stop(None)
        await b.stop(None)
    # pick_first (gRPC's default) would send all 20 to one server
    assert set(seen) == {"a", "b"}, seen


def test_max_connection_age_is_off_by_default_and_set_from_settings() -> None:
    from petpro.grpc_server import server_options
    from petpro.settings import ServiceSettings

    class Settings(ServiceSettings):
        component = "booking"

    assert "grpc.max_connection_age_ms" not in dict(server_options(Settings()))
    options = dict(server_options(Settings(max_connection_age_seconds=300)))
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] >= 3600_000  # open streams are not cut


async def test_an_aged_connection_is_replaced_so_the_client_re_resolves() -> None:
    from petpro.grpc_server import server_options
    from petpro.settings import ServiceSettings

    class Settings(ServiceSettings):
        component = "booking"

    async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"a"

    server = grpc.aio.server(options=server_options(Settings(max_connection_age_seconds=0.3)))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Am": grpc.unary_unary_rpc_method_handler(who)}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = grpc_client.channel(f"127.0.0.1:{port}")
    try:
        call = ch.unary_unary(f"/{SERVICE}/Am", request_serializer=None, response_deserializer=None)
        assert await call(b"", wait_for_ready=True) == b"a"
        assert ch.get_state() == grpc.ChannelConnectivity.READY
        # the server's GOAWAY at the connection's maximum age moves the channel off READY (gRPC then
        # re-resolves the target before connecting again), and calls go on over a new connection
        await ch.wait_for_state_change(grpc.ChannelConnectivity.READY)
        assert await call(b"", wait_for_ready=True) == b"a"
    finally:
        await ch.close()
        await server.stop(None)
