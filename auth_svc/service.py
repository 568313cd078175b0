"""AuthService servicer: request → handler → response.  Errors are mapped by the kit interceptor."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from auth_svc.domain import User
from auth_svc.handlers import AuthHandlers, TokenPair
from petpro_api.auth.v1 import auth_pb2, auth_pb2_grpc


def _ts(dt) -> Timestamp:  # type: ignore[no-untyped-def]
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def _roles(names: tuple[str, ...]) -> list[int]:
    return [auth_pb2.Role.Value(f"ROLE_{r}") for r in names]


def user_pb(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        user_id=str(user.id), email=user.email, name=user.name, roles=_roles(user.roles),
        clinic_ids=list(user.clinic_ids), create_time=_ts(user.created_at),
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, handlers: AuthHandlers) -> None:
        self.h = handlers

    async def Register(self, request, context):  # type: ignore[no-untyped-def]
        user = await self.h.register(request.email, request.password, request.name,
                                     client_address=request.client_address)
        return auth_pb2.RegisterResponse(user=user_pb(user))

    async def Login(self, request, context):  # type: ignore[no-untyped-def]
        pair: TokenPair = await self.h.login(request.email, request.password, request.client_address)
        return auth_pb2.LoginResponse(
            access_token=pair.access_token, refresh_token=pair.refresh_token, token_type="Bearer",
            expires_in=pair.expires_in, user=user_pb(pair.user),
        )

    async def RefreshToken(self, request, context):  # type: ignore[no-untyped-def]
        pair = await self.h.refresh(request.refresh_token)
        return auth_pb2.RefreshTokenResponse(
            access_token=pair.access_token, refresh_token=pair.refresh_token, token_type="Bearer",
            expires_in=pair.expires_in,
        )

    async def ValidateToken(self, request, context):  # type: ignore[no-untyped-def]
        c = await self.h.validate(request.token)
        return auth_pb2.ValidateTokenResponse(
            user_id=c.user_id, email=c.email, name=c.name, roles=_roles(c.roles),
            clinic_ids=list(c.clinic_ids), expires_at=_ts(c.expires_at), token_id=c.token_id,
        )

    async def RevokeToken(self, request, context):  # type: ignore[no-untyped-def]
        await self.h.revoke(request.token)
        return auth_pb2.RevokeTokenResponse()

    async def GetJwks(self, request, context):  # type: ignore[no-untyped-def]
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**self.h.issuer.jwk())])
