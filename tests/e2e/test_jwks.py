"""The public key set at ``/.well-known/jwks.json`` (Envoy → AuthService.GetJwks): no token needed,
and a client verifies an access token offline with it."""

from __future__ import annotations

import jwt
import pytest

from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e


async def test_jwks_through_envoy_verifies_an_access_token_offline(api: Api):
    owner = await api.user()
    r = await api.c.get("/.well-known/jwks.json")  # public: no Authorization header
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    kid = jwt.get_unverified_header(owner.token)["kid"]
    (jwk,) = [k for k in body["keys"] if k["kid"] == kid]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")

    key = jwt.PyJWKSet.from_dict(body)[kid]
    claims = jwt.decode(owner.token, key.key, algorithms=["EdDSA"], audience="petpro", issuer="petpro-auth")
    assert claims["sub"] == owner.user_id


async def test_other_auth_methods_are_not_reachable_through_envoy(api: Api):
    # a raw gRPC call of another AuthService method ends at the edge's catch-all route
    r = await api.c.post("/petpro.auth.v1.AuthService/Login", headers={"content-type": "application/grpc"})
    assert (r.headers.get("grpc-status"), r.headers.get("grpc-message")) == ("12", "no such route")
    r = await api.c.post("/.well-known/jwks.json")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
