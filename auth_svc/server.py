"""auth_svc composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from auth_svc.domain import Passwords, TokenIssuer
from auth_svc.handlers import AuthHandlers, ClinicStaffHandlers, InvitationSender, LocalAuthenticator
from auth_svc.mail import InvitationMailer
from auth_svc.ports import UnitOfWork
from auth_svc.repository import SCHEMA, AuthRepository
from auth_svc.service import AuthServicer, ClinicStaffServicer
from petpro import grpc_server, keys
from petpro.db import Database
from petpro.settings import ServiceSettings, load
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
        default=None, description="Ed25519 PEMs, the one whose name sorts last signs; default "
        "<PETPRO_HOME>/keys/auth-signing/, a first key generated when empty",
    )
    keys_reload_seconds: float = Field(default=30.0, gt=0, description="how often the key directory is re-read")
    db_pool_size: int = Field(default=10, ge=1, le=100)
    invitation_ttl_hours: int = Field(default=72, ge=1, le=24 * 30, description="lifetime of staff invitations")
    mail_from: str = "PetPro <accounts@petpro.dev>"
    public_base_url: str | None = Field(default=None, description="REST edge base for links in emails")


def keys_dir(settings: AuthSettings) -> Path:
    return settings.signing_keys_dir or settings.stack.home_abs / "keys" / "auth-signing"


def make_issuer(settings: AuthSettings) -> TokenIssuer:
    """Tokens signed by the newest key of the key directory (every replica mounts the same one) and
    verified by any key in it; or by the one ``AUTH_SIGNING_KEY_FILE``."""
    ttl = timedelta(seconds=settings.access_ttl_seconds)
    if settings.signing_key_file:
        return TokenIssuer(keys.load_or_create_ed25519(settings.signing_key_file), issuer=settings.issuer,
                           audience=settings.audience, ttl=ttl)
    directory = keys_dir(settings)
    return TokenIssuer(keys.load_or_create_key_dir(directory), issuer=settings.issuer, audience=settings.audience,
                       ttl=ttl, load=lambda: keys.load_key_dir(directory))


def build(settings: AuthSettings, *, uow: UnitOfWork | None = None, read: UnitOfWork | None = None,
          passwords: Passwords | None = None, send_invitation: InvitationSender | None = None) -> grpc_server.App:
    """The auth service.  Tests pass fakes of the ports (``uow``/``read``, the invitation mailer) instead of
    the database and SMTP."""
    issuer = make_issuer(settings)
    on_stop: list[Callable[[], Awaitable[None]]] = []
    if uow is None:
        db = Database(settings.url("database_url"), SCHEMA, app_name="auth_svc", pool_size=settings.db_pool_size)
        uow, read = db.repositories(AuthRepository)
        on_stop.append(db.close)
    handlers = AuthHandlers(uow, passwords or Passwords(), issuer,
                            refresh_ttl=timedelta(days=settings.refresh_ttl_days), read=read)
    base = settings.public_base_url or f"http://{settings.stack.host}:{settings.stack.port('envoy')}"
    mailer = InvitationMailer(settings.url("smtp_url"), settings.mail_from, f"{base}/v1/invitations:accept")
    staff = ClinicStaffHandlers(handlers, send_invitation or mailer.send,
                                invitation_ttl=timedelta(hours=settings.invitation_ttl_hours))
    return grpc_server.App(
        name="auth_svc",
        settings=settings,
        services=[
            grpc_server.Registration(
                auth_pb2_grpc.add_AuthServiceServicer_to_server, AuthServicer(handlers), "petpro.auth.v1.AuthService"
            ),
            grpc_server.Registration(
                clinic_staff_pb2_grpc.add_ClinicStaffServiceServicer_to_server, ClinicStaffServicer(staff, LocalAuthenticator(handlers)),
                "petpro.auth.v1.ClinicStaffService",
            ),
        ],
        # rotated or retired keys are picked up by every replica within keys_reload_seconds
        background=[grpc_server.periodic("auth_svc.signing_keys", settings.keys_reload_seconds,
                                         lambda: asyncio.to_thread(issuer.reload))],
        on_stop=on_stop,
    )


def main() -> None:
    grpc_server.main(build, load(AuthSettings))
