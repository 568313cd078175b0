"""auth_svc composition root: AuthSettings, build(settings) wiring the database, Redis throttle, signing
keys and SMTP into the use cases and the two servicers (AuthService, ClinicStaffService)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from auth_svc.adapters.mail import InvitationMailer
from auth_svc.adapters.repository import AuthRepository
from auth_svc.adapters.tables import SCHEMA
from auth_svc.domain import Passwords, TokenIssuer
from auth_svc.handlers import (
    LOGIN_PER_ACCOUNT_AND_SOURCE,
    LOGIN_PER_SOURCE,
    REGISTER_PER_SOURCE,
    AuthHandlers,
    ClinicStaffHandlers,
    InvitationSender,
    LocalAuthenticator,
    NoThrottle,
    ServiceAccountHandlers,
)
from auth_svc.ports import UnitOfWork
from auth_svc.service import AuthServicer, ClinicStaffServicer
from petpro import cache, grpc_server, keys
from petpro.backoff import Rule
from petpro.db import Database
from petpro.settings import ServiceSettings, load
from petpro.smtp import SmtpClient
from petpro.throttle import Throttle
from petpro_api.auth.v1 import auth_pb2_grpc, clinic_staff_pb2_grpc


class AuthSettings(ServiceSettings):
    component = "auth"
    model_config = SettingsConfigDict(env_prefix="AUTH_", env_file=".env", extra="ignore")

    access_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_ttl_days: int = Field(default=30, ge=1, le=365)
    issuer: str = "petpro-auth"
    audience: str = "petpro"
    signing_key_file: Path | None = Field(
        default=None, description="one Ed25519 PEM (no rotation); when unset, the keys of signing_keys_dir"
    )
    signing_keys_dir: Path | None = Field(
        default=None,
        description="Ed25519 PEMs, the one whose name sorts last signs; default "
        "<PETPRO_HOME>/keys/auth-signing/, a first key generated when empty",
    )
    keys_reload_seconds: float = Field(
        default=30.0, gt=0, description="how often the key directory is re-read"
    )
    db_pool_size: int = Field(default=10, ge=1, le=100)
    invitation_ttl_hours: int = Field(
        default=72, ge=1, le=24 * 30, description="lifetime of staff invitations"
    )
    mail_from: str = "PetPro <accounts@petpro.dev>"
    public_base_url: str | None = Field(default=None, description="REST edge base for links in emails")
    throttle_login_free_per_account_source: int = Field(
        default=5, ge=1, description="failed logins of one account from one address before back-off"
    )
    throttle_login_free_per_source: int = Field(
        default=20, ge=1, description="failed logins from one address (any account) before back-off"
    )
    throttle_register_free_per_source: int = Field(
        default=20, ge=1, description="registrations from one address per hour before back-off"
    )
    throttle_base_seconds: float = Field(default=1.0, gt=0, description="first back-off; doubles per failure")
    throttle_max_seconds: float = Field(default=900.0, gt=0, description="longest back-off")


def keys_dir(settings: AuthSettings) -> Path:
    return settings.signing_keys_dir or settings.stack.home_abs / "keys" / "auth-signing"


def make_issuer(settings: AuthSettings) -> TokenIssuer:
    """Tokens signed by the newest key of the key directory (every replica mounts the same one) and
    verified by any key in it; or by the one ``AUTH_SIGNING_KEY_FILE``."""
    ttl = timedelta(seconds=settings.access_ttl_seconds)
    if settings.signing_key_file:
        return TokenIssuer(
            keys.load_or_create_ed25519(settings.signing_key_file),
            issuer=settings.issuer,
            audience=settings.audience,
            ttl=ttl,
        )
    directory = keys_dir(settings)
    return TokenIssuer(
        keys.load_or_create_key_dir(directory),
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=ttl,
        load=lambda: keys.load_key_dir(directory),
    )


def throttle_rules(settings: AuthSettings) -> tuple[Rule, Rule, Rule]:
    def rule(r: Rule, free: int) -> Rule:
        return dataclasses.replace(
            r, free=free, base=settings.throttle_base_seconds, max=settings.throttle_max_seconds
        )

    return (
        rule(LOGIN_PER_ACCOUNT_AND_SOURCE, settings.throttle_login_free_per_account_source),
        rule(LOGIN_PER_SOURCE, settings.throttle_login_free_per_source),
        rule(REGISTER_PER_SOURCE, settings.throttle_register_free_per_source),
    )


def build(
    settings: AuthSettings,
    *,
    uow: UnitOfWork | None = None,
    read: UnitOfWork | None = None,
    passwords: Passwords | None = None,
    send_invitation: InvitationSender | None = None,
    throttle: Throttle | NoThrottle | None = None,
) -> grpc_server.App:
    """The auth service.  Tests pass fakes of the ports (``uow``/``read``, the invitation mailer, the
    throttle: ``NoThrottle()``) instead of the database, SMTP and Redis."""
    issuer = make_issuer(settings)
    on_stop: list[Callable[[], Awaitable[None]]] = []
    if uow is None:
        db = Database(
            settings.url("database_url"), SCHEMA, app_name="auth_svc", pool_size=settings.db_pool_size
        )
        uow, read = db.repositories(AuthRepository)
        on_stop.append(db.close)
    if throttle is None:
        redis = cache.make_redis(settings.url("redis_url"))
        throttle = Throttle(redis)

        async def close_redis() -> None:
            await redis.aclose()

        on_stop.append(close_redis)
    handlers = AuthHandlers(
        uow,
        passwords or Passwords(),
        issuer,
        refresh_ttl=timedelta(days=settings.refresh_ttl_days),
        read=read,
        throttle=throttle,
        rules=throttle_rules(settings),
    )
    base = settings.public_base_url or f"http://{settings.stack.host}:{settings.stack.port('envoy')}"
    if send_invitation is None:
        smtp = SmtpClient(settings.url("smtp_url"), connections=2)  # invitations are rare
        on_stop.append(smtp.close)
        mailer = InvitationMailer(smtp, settings.mail_from, f"{base}/v1/invitations:accept")
        send_invitation = mailer.send
    staff = ClinicStaffHandlers(
        handlers, send_invitation, invitation_ttl=timedelta(hours=settings.invitation_ttl_hours)
    )
    return grpc_server.App(
        name="auth_svc",
        settings=settings,
        services=[
            grpc_server.Registration(
                auth_pb2_grpc.add_AuthServiceServicer_to_server,
                AuthServicer(handlers),
                "petpro.auth.v1.AuthService",
            ),
            grpc_server.Registration(
                clinic_staff_pb2_grpc.add_ClinicStaffServiceServicer_to_server,
                ClinicStaffServicer(
                    staff, ServiceAccountHandlers(handlers), authn := LocalAuthenticator(handlers)
                ),
                # authenticated by the kit before the body is decoded (no token → 401, whatever the body)
                "petpro.auth.v1.ClinicStaffService",
                authenticator=authn,
            ),
        ],
        # rotated or retired keys are picked up by every replica within keys_reload_seconds
        background=[
            grpc_server.periodic(
                "auth_svc.signing_keys",
                settings.keys_reload_seconds,
                lambda: asyncio.to_thread(issuer.reload),
            )
        ],
        on_stop=on_stop,
    )


def main() -> None:
    grpc_server.main(build, load(AuthSettings))
