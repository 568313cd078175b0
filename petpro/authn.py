"""Caller authentication for gRPC servers that face clients (the BFF, the clinic feed).

Reads ``authorization: Bearer <jwt>`` from metadata and asks AuthService.ValidateToken (the one
authority on signature, expiry and revocation), caching the answer briefly and never past expiry.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
from cachetools import TLRUCache

from petpro.errors import NotFound, PermissionDenied, Unauthenticated
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
    # clinic id → clinic role ("ADMIN" or "STAFF"); staff users and service accounts (one clinic each)
    clinic_roles: Mapping[str, str] = field(default_factory=dict)
    # the login session the token belongs to (its ``sid``): "log out" and "change password" act on it
    session_id: str = ""
    # the user's preferred language (BCP 47, from the token; "" when unknown)
    locale: str = ""

    @property
    def platform_admin(self) -> bool:
        return "PLATFORM_ADMIN" in self.roles

    def clinic_role(self, clinic_id: str) -> str | None:
        """The caller's role in ``clinic_id`` (``"ADMIN"`` for a platform admin), None when not a member."""
        if self.platform_admin:
            return "ADMIN"
        if not ({"CLINIC_STAFF", "SERVICE"} & self.roles):
            return None
        if clinic_id not in self.clinic_ids:
            return None
        return self.clinic_roles.get(clinic_id, "STAFF")

    def can_read_clinic(self, clinic_id: str) -> bool:
        """Staff (any clinic role) and service accounts of that clinic, or a platform admin."""
        return self.clinic_role(clinic_id) is not None

    def can_manage_clinic(self, clinic_id: str) -> bool:
        """Clinic admins and service accounts with the admin role of that clinic, or a platform admin."""
        return self.clinic_role(clinic_id) == "ADMIN"


class ClinicNotVisible(NotFound):
    """The caller is no member of the clinic: answered like an unknown clinic (nothing revealed)."""

    reason = "CLINIC_NOT_FOUND"


class ClinicAdminRequired(PermissionDenied):
    reason = "CLINIC_ADMIN_REQUIRED"


class PlatformAdminRequired(PermissionDenied):
    reason = "PLATFORM_ADMIN_REQUIRED"


def require_clinic(principal: Principal, clinic_id: str, *, admin: bool = False) -> str:
    """The one membership check of clinic-scoped methods: a non-member gets NOT_FOUND (the clinic's
    existence is not revealed), a member without the admin role PERMISSION_DENIED on admin methods.
    Returns the caller's clinic role."""
    role = principal.clinic_role(clinic_id)
    if role is None:
        raise ClinicNotVisible("clinic not found")
    if admin and role != "ADMIN":
        raise ClinicAdminRequired("this needs the clinic admin role")
    return role


def require_platform_admin(principal: Principal) -> None:
    if not principal.platform_admin:
        raise PlatformAdminRequired("this needs a platform admin")


# The caller of the current RPC, set by the kit's server interceptor when it authenticated the call
# (client-facing services, non-public methods) before validation; None otherwise.
principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "petpro_principal", default=None
)


class TokenCache:
    """Validated tokens for a few seconds, never past the token's own expiry (cachetools' TLRU cache:
    each entry expires at min(now + ttl, token expiry); when full, the least recently used goes)."""

    def __init__(
        self, ttl: float = 5.0, max_entries: int = 10_000, *, timer: Callable[[], float] = time.time
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        # wall-clock timer: a token's expiry (``exp``) is wall-clock too
        self._entries: TLRUCache[str, Principal] = TLRUCache(
            maxsize=max_entries, ttu=self._until, timer=timer
        )

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


# the request header the REST edge's Envoy overwrites with the client's address as it established it
# (edge.gateway.config.ClientAddress); the edge's throttles read only this
CLIENT_ADDRESS_HEADER = "x-petpro-client-address"


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
        """The caller: the one the kit's interceptor authenticated for this RPC, else from metadata."""
        return principal_var.get() or await self.validate(bearer(metadata(context)))

    async def validate(self, token: str) -> Principal:
        cached = self.cache.get(token)
        if cached:
            return cached
        v = await call(self.auth.ValidateToken, auth_pb2.ValidateTokenRequest(token=token))
        principal = Principal(
            v.user_id,
            v.email,
            v.name,
            frozenset(auth_pb2.Role.Name(r).removeprefix("ROLE_") for r in v.roles),
            frozenset(v.clinic_ids),
            v.expires_at.ToSeconds(),
            {
                m.clinic_id: auth_pb2.ClinicRole.Name(m.role).removeprefix("CLINIC_ROLE_")
                for m in v.memberships
            },
            v.session_id,
            v.locale,
        )
        self.cache.put(token, principal)
        return principal
