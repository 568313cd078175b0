"""Caller authentication for gRPC servers that face clients (the BFF, the clinic feed).

Reads ``authorization: Bearer <jwt>`` from metadata and asks AuthService.ValidateToken (the one
authority on signature, expiry and revocation), caching the answer briefly and never past expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from cachetools import TLRUCache

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


class TokenCache:
    """Validated tokens for a few seconds, never past the token's own expiry (cachetools' TLRU cache:
    each entry expires at min(now + ttl, token expiry); when full, the least recently used goes)."""

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000, *,
                 timer: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        # wall-clock timer: a token's expiry (``exp``) is wall-clock too
        self._entries: TLRUCache[str, Principal] = TLRUCache(maxsize=max_entries, ttu=self._until, timer=timer)

    def _until(self, _token: str, principal: Principal, now: float) -> float:
        return min(now + self.ttl, principal.expires_at)

    def get(self, token: str) -> Principal | None:
        return self._entries.get(token)

    def put(self, token: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        self._entries[token] = principal

    @property
    def size(self) -> int:
        return len(self._entries)


def metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def bearer(md: dict[str, str]) -> str:
    scheme, _, token = md.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token", reason="TOKEN_MISSING")
    return token.strip()


class Authenticator:
    def __init__(self, auth: auth_pb2_grpc.AuthServiceAsyncStub, cache: TokenCache | None = None) -> None:
        self.auth = auth
        self.cache = cache if cache is not None else TokenCache()

    async def principal(self, context: grpc.aio.ServicerContext) -> Principal:
        return await self.validate(bearer(metadata(context)))

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
