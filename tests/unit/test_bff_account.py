"""MobileService's account methods: each passes the caller from the validated token (never a user named
in the body), the caller's session to ChangePassword, the client's address to the throttled calls,
and the Accept-Language header to Register."""

from __future__ import annotations

import time
import uuid
from typing import Any

from google.protobuf import field_mask_pb2, timestamp_pb2

from edge.bff.service import MobileServicer, Stubs
from petpro_api.auth.v1 import auth_pb2
from petpro_api.mobile.v1 import mobile_pb2

USER, SESSION, OTHER = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


class RecordingAuth:
    def __init__(self) -> None:
        self.requests: dict[str, Any] = {}

    async def ValidateToken(self, request: auth_pb2.ValidateTokenRequest) -> auth_pb2.ValidateTokenResponse:
        return auth_pb2.ValidateTokenResponse(
            user_id=USER,
            email="ann@example.com",
            name="Ann",
            session_id=SESSION,
            expires_at=timestamp_pb2.Timestamp(seconds=int(time.time()) + 600),
        )

    def __getattr__(self, name: str) -> Any:
        async def rpc(request: Any) -> Any:
            self.requests[name] = request
            response = getattr(auth_pb2, f"{name}Response")()
            if "user" in response.DESCRIPTOR.fields_by_name:
                response.user.user_id = USER
            return response

        return rpc


class Context:
    def __init__(self, **md: str) -> None:
        self.md = {"authorization": "Bearer token", "x-petpro-client-address": "203.0.113.7", **md}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.md.items())

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"


def servicer() -> tuple[MobileServicer, RecordingAuth]:
    auth = RecordingAuth()
    stubs = Stubs(auth=auth, booking=None, payment=None, notification=None)  # type: ignore[arg-type]
    return MobileServicer(stubs), auth


async def test_every_signed_in_method_acts_for_the_token_user() -> None:
    bff, auth = servicer()
    ctx = Context()
    await bff.ChangePassword(
        mobile_pb2.ChangePasswordRequest(current_password="a", new_password="b" * 8), ctx
    )
    await bff.ChangeEmail(mobile_pb2.ChangeEmailRequest(password="a", new_email="n@example.com"), ctx)
    await bff.Logout(mobile_pb2.LogoutRequest(refresh_token="r.t"), ctx)
    await bff.LogoutEverywhere(mobile_pb2.LogoutEverywhereRequest(), ctx)
    await bff.ResendVerificationEmail(mobile_pb2.ResendVerificationEmailRequest(), ctx)
    await bff.GetMe(mobile_pb2.GetMeRequest(), ctx)
    body = auth_pb2.User(user_id=OTHER, name="Mallory", email="x@example.com")  # user_id is output only
    await bff.UpdateMe(
        mobile_pb2.UpdateMeRequest(user=body, update_mask=field_mask_pb2.FieldMask(paths=["name"])), ctx
    )
    r = auth.requests
    assert (r["ChangePassword"].user_id, r["ChangePassword"].session_id) == (USER, SESSION)
    assert r["ChangePassword"].client_address == r["ChangeEmail"].client_address == "203.0.113.7"
    for name in ("ChangeEmail", "Logout", "LogoutEverywhere", "ResendVerification", "GetUser"):
        assert r[name].user_id == USER, name
    assert (r["UpdateUser"].user.user_id, r["UpdateUser"].user.name) == (USER, "Mallory")
    assert list(r["UpdateUser"].update_mask.paths) == ["name"]


async def test_public_methods_pass_the_client_address_and_register_the_language() -> None:
    bff, auth = servicer()
    ctx = Context(**{"accept-language": "de-AT,de;q=0.9"})
    await bff.Register(mobile_pb2.RegisterRequest(email="a@example.com", password="p" * 8, name="A"), ctx)
    await bff.RequestPasswordReset(mobile_pb2.RequestPasswordResetRequest(email="a@example.com"), ctx)
    await bff.ResetPassword(
        mobile_pb2.ResetPasswordRequest(email="a@example.com", token="t" * 43, new_password="p" * 8), ctx
    )
    await bff.VerifyEmail(mobile_pb2.VerifyEmailRequest(token="t" * 43), ctx)
    r = auth.requests
    assert r["Register"].accept_language == "de-AT,de;q=0.9"
    for name in ("Register", "RequestPasswordReset", "ResetPassword", "VerifyEmail"):
        assert r[name].client_address == "203.0.113.7", name
