"""AuthService and ClinicStaffService servicers: request → handler → response, and the pb <-> domain
conversions they need.  Errors are mapped by the kit interceptor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from auth_svc.domain import User
from auth_svc.handlers import (
    AuthHandlers,
    ClinicStaffHandlers,
    LocalAuthenticator,
    ServiceAccountHandlers,
    TokenPair,
)
from petpro.authn import Principal
from petpro.convert import uid
from petpro_api.auth.v1 import auth_pb2, auth_pb2_grpc, clinic_staff_pb2, clinic_staff_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def _ts(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def _roles(names: tuple[str, ...]) -> list[auth_pb2.Role.ValueType]:
    return [auth_pb2.Role.Value(f"ROLE_{r}") for r in names]


def _clinic_role(role: str) -> auth_pb2.ClinicRole.ValueType:
    return auth_pb2.ClinicRole.Value(f"CLINIC_ROLE_{role}")


def clinic_role_name(value: auth_pb2.ClinicRole.ValueType) -> str:
    return auth_pb2.ClinicRole.Name(value).removeprefix("CLINIC_ROLE_")


def _memberships(memberships: dict[str, str]) -> list[auth_pb2.ClinicMembership]:
    return [
        auth_pb2.ClinicMembership(clinic_id=c, role=_clinic_role(r)) for c, r in sorted(memberships.items())
    ]


def user_pb(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        user_id=str(user.id),
        email=user.email,
        name=user.name,
        roles=_roles(user.roles),
        clinic_ids=list(user.clinic_ids),
        create_time=_ts(user.created_at),
        memberships=_memberships(user.memberships),
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, handlers: AuthHandlers) -> None:
        self.handlers = handlers

    async def Register(
        self, request: auth_pb2.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.RegisterResponse:
        user = await self.handlers.register(
            request.email, request.password, request.name, client_address=request.client_address
        )
        return auth_pb2.RegisterResponse(user=user_pb(user))

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.LoginResponse:
        pair: TokenPair = await self.handlers.login(request.email, request.password, request.client_address)
        return auth_pb2.LoginResponse(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            token_type="Bearer",
            expires_in=pair.expires_in,
            user=user_pb(pair.user),
        )

    async def RefreshToken(
        self, request: auth_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.RefreshTokenResponse:
        pair = await self.handlers.refresh(request.refresh_token)
        return auth_pb2.RefreshTokenResponse(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            token_type="Bearer",
            expires_in=pair.expires_in,
        )

    async def ValidateToken(
        self, request: auth_pb2.ValidateTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.ValidateTokenResponse:
        c = await self.handlers.validate(request.token)
        return auth_pb2.ValidateTokenResponse(
            user_id=c.user_id,
            email=c.email,
            name=c.name,
            roles=_roles(c.roles),
            clinic_ids=list(c.clinic_ids),
            expires_at=_ts(c.expires_at),
            token_id=c.token_id,
            memberships=_memberships(c.memberships),
        )

    async def RevokeToken(
        self, request: auth_pb2.RevokeTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.RevokeTokenResponse:
        await self.handlers.revoke(request.token)
        return auth_pb2.RevokeTokenResponse()

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**k) for k in self.handlers.issuer.jwks()])


class ClinicStaffServicer(clinic_staff_pb2_grpc.ClinicStaffServiceServicer):
    """Authenticates the caller first (auth_svc verifies its own tokens), then hands the claims to the
    use case, which checks membership of the clinic named in the request."""

    def __init__(
        self, staff: ClinicStaffHandlers, accounts: ServiceAccountHandlers, authn: LocalAuthenticator
    ) -> None:
        self.staff = staff
        self.accounts = accounts
        self.authn = authn

    async def _caller(self, context: Context) -> Principal:
        return await self.authn.principal(context)

    async def InviteStaff(
        self, request: clinic_staff_pb2.InviteStaffRequest, context: Context
    ) -> clinic_staff_pb2.InviteStaffResponse:
        caller = await self._caller(context)
        inv = await self.staff.invite(
            caller, uid(request.clinic_id, "clinic_id"), request.email, clinic_role_name(request.role)
        )
        return clinic_staff_pb2.InviteStaffResponse(
            invitation=clinic_staff_pb2.Invitation(
                invitation_id=str(inv.id),
                clinic_id=str(inv.clinic_id),
                email=inv.email,
                role=_clinic_role(inv.role),
                expire_time=_ts(inv.expires_at),
                create_time=_ts(inv.created_at),
            )
        )

    async def AcceptInvitation(
        self, request: clinic_staff_pb2.AcceptInvitationRequest, context: Context
    ) -> clinic_staff_pb2.AcceptInvitationResponse:
        user = await self.staff.accept(request.token, request.password, request.name)
        return clinic_staff_pb2.AcceptInvitationResponse(user=user_pb(user))

    async def ListStaff(
        self, request: clinic_staff_pb2.ListStaffRequest, context: Context
    ) -> clinic_staff_pb2.ListStaffResponse:
        caller = await self._caller(context)
        rows, token = await self.staff.list_staff(
            caller, uid(request.clinic_id, "clinic_id"), request.page_size, request.page_token
        )
        return clinic_staff_pb2.ListStaffResponse(
            members=[
                clinic_staff_pb2.StaffMember(
                    user_id=str(m.user_id),
                    email=m.email,
                    name=m.name,
                    role=_clinic_role(m.role),
                    service_account=m.service_account,
                )
                for m in rows
            ],
            next_page_token=token,
        )

    async def RemoveStaff(
        self, request: clinic_staff_pb2.RemoveStaffRequest, context: Context
    ) -> clinic_staff_pb2.RemoveStaffResponse:
        caller = await self._caller(context)
        await self.staff.remove_staff(
            caller, uid(request.clinic_id, "clinic_id"), uid(request.user_id, "user_id")
        )
        return clinic_staff_pb2.RemoveStaffResponse()

    async def CreateServiceAccount(
        self, request: clinic_staff_pb2.CreateServiceAccountRequest, context: Context
    ) -> clinic_staff_pb2.CreateServiceAccountResponse:
        caller = await self._caller(context)
        creds = await self.accounts.create_service_account(
            caller, uid(request.clinic_id, "clinic_id"), request.name, clinic_role_name(request.role)
        )
        return clinic_staff_pb2.CreateServiceAccountResponse(
            account=clinic_staff_pb2.ServiceAccount(
                client_id=str(creds.client_id),
                clinic_id=str(creds.clinic_id),
                name=creds.name,
                role=_clinic_role(creds.role),
                create_time=_ts(creds.created_at),
            ),
            client_secret=creds.secret,
        )

    async def RotateServiceAccountSecret(
        self, request: clinic_staff_pb2.RotateServiceAccountSecretRequest, context: Context
    ) -> clinic_staff_pb2.RotateServiceAccountSecretResponse:
        caller = await self._caller(context)
        secret = await self.accounts.rotate_secret(
            caller, uid(request.clinic_id, "clinic_id"), uid(request.client_id, "client_id")
        )
        return clinic_staff_pb2.RotateServiceAccountSecretResponse(client_secret=secret)

    async def IssueServiceToken(
        self, request: clinic_staff_pb2.IssueServiceTokenRequest, context: Context
    ) -> clinic_staff_pb2.IssueServiceTokenResponse:
        pair = await self.accounts.issue_service_token(
            uid(request.client_id, "client_id"), request.client_secret
        )
        return clinic_staff_pb2.IssueServiceTokenResponse(
            access_token=pair.access_token, token_type="Bearer", expires_in=pair.expires_in
        )
