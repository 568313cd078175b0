"""Caller authentication for gRPC servers that face clients (the BFF, the clinic feed).

Reads ``authorization: Bearer <jwt>`` from metadata and asks AuthService.ValidateToken (the one
authority on signature, expiry and revocation), caching the answer briefly and never past expiry.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass

import grpc

from petpro.errors import Unauthenticated
from petpro.upstream import call
from petpro_api.auth.v1 import auth_pb2, auth_pb2_grpc


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    name: str
    roles: frozenset[str]
    clinic_ids: frozenset[str]
    expires_at: float

    def can_read_clinic(self, clinic_id: str) -> bool:
        return "SERVICE" in self.roles or ("CLINIC_STAFF" in self.roles and clinic_id in self.clinic_ids)


# The caller of the current RPC, set by the kit's server interceptor when it authenticated the call
# (client-facing services, non-public methods) before validation; None otherwise.
principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("petpro_principal", default=None)


class TokenCache:
    """Validated tokens for a few seconds (bounded), never past the token's own expiry."""

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token: str) -> Principal | None:
        hit = self._entries.get(token)
        if hit is None:
            return None
        until, principal = hit
        if until < time.monotonic() or principal.expires_at <= time.time():
            self._entries.pop(token, None)
            return None
        return principal

    def put(self, token: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[token] = (time.monotonic() + self.ttl, principal)


def metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def bearer(md: dict[str, str]) -> str:
    scheme, _, token = md.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token", reason="TOKEN_MISSING")
    return token.strip()


class Authenticator:
    def __init__(self, auth: auth_pb2_grpc.AuthServiceStub, cache: TokenCache | None = None) -> None:
        self.auth = auth
        self.cache = cache or TokenCache()

    async def principal(self, context: grpc.aio.ServicerContext) -> Principal:
        """The caller: the one the kit's interceptor authenticated for this RPC, else from metadata."""
        return principal_var.get() or await self.validate(bearer(metadata(context)))

    async def validate(self, token: str) -> Principal:
        cached = self.cache.get(token)
        if cached:
            return cached
        v = await call(self.auth.ValidateToken, auth_pb2.ValidateTokenRequest(token=token))
        principal = Principal(
            v.user_id, v.email, v.name,
            frozenset(auth_pb2.Role.Name(r).removeprefix("ROLE_") for r in v.roles),
            frozenset(v.clinic_ids), v.expires_at.ToSeconds(),
        )
        self.cache.put(token, principal)
        return principal
