"""AuthService's servicer: request → handler → response for accounts and tokens (register, login,
refresh, validate, revoke, JWKS) and the owner's account (password reset, email verification, password
and email changes, logout, profile), and the pb <-> domain conversions both servicers use.  Errors are
mapped by the kit interceptor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from auth_svc.domain import PROFILE_FIELDS, User
from auth_svc.handlers import AccountDeletion, AccountHandlers, AuthHandlers, TokenPair
from petpro.convert import uid
from petpro_api.auth.v1 import auth_pb2, auth_pb2_grpc

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
        email_verified=user.email_verified,
        phone=user.phone,
        locale=user.locale,
        time_zone=user.time_zone,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, handlers: AuthHandlers, account: AccountHandlers, deletion: AccountDeletion) -> None:
        self.handlers = handlers
        self.account = account
        self.deletion = deletion

    async def Register(
        self, request: auth_pb2.RegisterRequest, context: Context
    ) -> auth_pb2.RegisterResponse:
        user = await self.account.register(
            request.email,
            request.password,
            request.name,
            locale=request.locale,
            time_zone=request.time_zone,
            accept_language=request.accept_language,
            client_address=request.client_address,
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
            session_id=c.session_id,
            locale=c.locale,
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

    # -- the owner's account --------------------------------------------------------------------------
    async def RequestPasswordReset(
        self, request: auth_pb2.RequestPasswordResetRequest, context: Context
    ) -> auth_pb2.RequestPasswordResetResponse:
        await self.account.request_password_reset(request.email, request.client_address)
        return auth_pb2.RequestPasswordResetResponse()

    async def ResetPassword(
        self, request: auth_pb2.ResetPasswordRequest, context: Context
    ) -> auth_pb2.ResetPasswordResponse:
        await self.account.reset_password(
            request.email, request.token, request.new_password, request.client_address
        )
        return auth_pb2.ResetPasswordResponse()

    async def InviteOwner(
        self, request: auth_pb2.InviteOwnerRequest, context: Context
    ) -> auth_pb2.InviteOwnerResponse:
        user, invited = await self.account.invite_owner(
            request.email,
            request.name,
            phone=request.phone,
            clinic_name=request.clinic_name,
            validate_only=request.validate_only,
        )
        out = auth_pb2.InviteOwnerResponse(invited=invited)
        if user is not None:
            out.user.CopyFrom(user_pb(user))
        return out

    async def VerifyEmail(
        self, request: auth_pb2.VerifyEmailRequest, context: Context
    ) -> auth_pb2.VerifyEmailResponse:
        user = await self.account.verify_email(request.token, request.client_address)
        return auth_pb2.VerifyEmailResponse(user=user_pb(user))

    async def ResendVerification(
        self, request: auth_pb2.ResendVerificationRequest, context: Context
    ) -> auth_pb2.ResendVerificationResponse:
        await self.account.resend_verification(uid(request.user_id, "user_id"))
        return auth_pb2.ResendVerificationResponse()

    async def ChangePassword(
        self, request: auth_pb2.ChangePasswordRequest, context: Context
    ) -> auth_pb2.ChangePasswordResponse:
        await self.account.change_password(
            uid(request.user_id, "user_id"),
            uid(request.session_id, "session_id") if request.session_id else None,
            request.current_password,
            request.new_password,
            request.client_address,
        )
        return auth_pb2.ChangePasswordResponse()

    async def DeleteAccount(
        self, request: auth_pb2.DeleteAccountRequest, context: Context
    ) -> auth_pb2.DeleteAccountResponse:
        await self.deletion.delete_account(
            uid(request.user_id, "user_id"), request.password, request.client_address
        )
        return auth_pb2.DeleteAccountResponse()

    async def ExportAccount(
        self, request: auth_pb2.ExportAccountRequest, context: Context
    ) -> auth_pb2.ExportAccountResponse:
        out = auth_pb2.ExportAccountResponse()
        out.data.update(await self.deletion.export_account(uid(request.user_id, "user_id")))
        return out

    async def ChangeEmail(
        self, request: auth_pb2.ChangeEmailRequest, context: Context
    ) -> auth_pb2.ChangeEmailResponse:
        user = await self.account.change_email(
            uid(request.user_id, "user_id"), request.password, request.new_email, request.client_address
        )
        return auth_pb2.ChangeEmailResponse(user=user_pb(user))

    async def Logout(self, request: auth_pb2.LogoutRequest, context: Context) -> auth_pb2.LogoutResponse:
        await self.account.logout(uid(request.user_id, "user_id"), request.refresh_token)
        return auth_pb2.LogoutResponse()

    async def LogoutEverywhere(
        self, request: auth_pb2.LogoutEverywhereRequest, context: Context
    ) -> auth_pb2.LogoutEverywhereResponse:
        await self.account.logout_everywhere(uid(request.user_id, "user_id"))
        return auth_pb2.LogoutEverywhereResponse()

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: Context) -> auth_pb2.GetUserResponse:
        user = await self.account.get_user(uid(request.user_id, "user_id"))
        return auth_pb2.GetUserResponse(user=user_pb(user))

    async def UpdateUser(
        self, request: auth_pb2.UpdateUserRequest, context: Context
    ) -> auth_pb2.UpdateUserResponse:
        values = {f: getattr(request.user, f) for f in PROFILE_FIELDS}
        user = await self.account.update_profile(
            uid(request.user.user_id, "user.user_id"), list(request.update_mask.paths), values
        )
        return auth_pb2.UpdateUserResponse(user=user_pb(user))
