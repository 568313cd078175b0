"""Signing-key rotation through a real auth_svc (same ``build()`` as production, the stack's
database) and its key-directory CLI: rotate → the old token is still valid → new tokens carry the
new kid → retire → the old key's tokens are rejected, and GetJwks lists exactly the active keys."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Awaitable

import grpc
import httpx
import jwt
import pytest

from auth_svc.server import AuthSettings, build
from edge.gateway.config import JwtAuth
from edge.gateway.routes import AUTH_SERVICE
from petpro import grpc_client, grpc_server
from petpro.settings import StackSettings
from petpro_api.auth.v1 import auth_pb2, auth_pb2_grpc
from petpro_dev.client import eventually
from petpro_dev.devstack import Stack
from tests.integration.test_edge_envoy import start_envoy

pytestmark = pytest.mark.integration


async def keys_cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "auth_svc.signing_keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode == 0) == ok, done.stderr
    return done


async def test_rotate_then_retire_through_the_running_service(mesh: Stack, tmp_path, monkeypatch, port_bases):
    for name, value in mesh.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTH_SIGNING_KEYS_DIR", str(tmp_path / "auth-signing"))
    monkeypatch.setenv("AUTH_KEYS_RELOAD_SECONDS", "0.1")
    running = await grpc_server.start(build(AuthSettings()), port=0)
    channel = grpc_client.channel(f"127.0.0.1:{running.port}")
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    # the edge's Envoy in front of this auth_svc (jwt_authn with its JWKS, refetched every second here);
    # no BFF behind it: a token Envoy accepts gets 503 from the missing upstream, one it refuses 401
    edge_stack = StackSettings(home=tmp_path / "edge", port_base=port_bases.allocate())
    envoy = await start_envoy(
        edge_stack,
        upstreams={AUTH_SERVICE: ("127.0.0.1", running.port)},
        get_retries=0,
        jwt=JwtAuth(cache_seconds=1),
    )
    web = httpx.AsyncClient(base_url=envoy.url, trust_env=False, timeout=30)

    async def at_edge(access: str) -> int:
        r = await web.get("/v1/pets", headers={"Authorization": f"Bearer {access}"})
        assert r.json()["reason"] != "AUTH_KEYS_UNAVAILABLE" or r.status_code == 503
        return 0 if r.json()["reason"] == "AUTH_KEYS_UNAVAILABLE" else r.status_code  # (keys not fetched yet)

    try:
        email = f"rotate-{uuid.uuid4().hex[:8]}@example.com"
        await auth.Register(auth_pb2.RegisterRequest(email=email, password="correct-horse", name="R"))

        async def token() -> str:
            r = await auth.Login(auth_pb2.LoginRequest(email=email, password="correct-horse"))
            return r.access_token

        async def kids() -> list[str]:
            return [k.kid for k in (await auth.GetJwks(auth_pb2.GetJwksRequest())).keys]

        old = await token()
        (first,) = await kids()
        assert jwt.get_unverified_header(old)["kid"] == first
        assert await eventually(lambda: _status_is(at_edge(old), 503))  # accepted once the JWKS is fetched

        await keys_cli("rotate")

        async def both() -> list[str] | None:  # the service re-reads the directory every 0.1 s
            found = await kids()
            return found if len(found) == 2 else None

        first_again, second = await eventually(both)
        assert first_again == first and second != first
        assert (await auth.ValidateToken(auth_pb2.ValidateTokenRequest(token=old))).email == email
        new = await token()
        assert jwt.get_unverified_header(new)["kid"] == second
        # the edge accepts the new key's tokens within its JWKS cache time, and still the old key's
        assert await eventually(lambda: _status_is(at_edge(new), 503))
        assert await at_edge(old) == 503

        # the signing key cannot be retired; the old one can
        refused = await keys_cli("retire", second, ok=False)
        assert refused.returncode == 1 and "signing key" in refused.stderr
        assert f"retired {first}" in (await keys_cli("retire", first)).stdout

        async def only_new() -> bool:
            return await kids() == [second]

        await eventually(only_new)
        assert await eventually(
            lambda: _status_is(at_edge(old), 401)
        )  # a retired key's tokens end at the edge too
        assert await at_edge(new) == 503
        with pytest.raises(grpc.aio.AioRpcError) as rejected:
            await auth.ValidateToken(auth_pb2.ValidateTokenRequest(token=old))
        assert rejected.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (await auth.ValidateToken(auth_pb2.ValidateTokenRequest(token=new))).email == email
        assert second in (await keys_cli("list")).stdout
    finally:
        await web.aclose()
        envoy.stop()
        await channel.close()
        await running.stop(0)


async def _status_is(status: Awaitable[int], expected: int) -> bool:
    return await status == expected
