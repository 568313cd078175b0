"""auth_svc composition root: AuthSettings, build(settings) wiring the database, Redis throttle, signing
keys, the common-passwords list and SMTP (invitations; the account mails' background sender) into the
use cases and the two servicers (AuthService, ClinicStaffService)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from auth_svc.adapters.common_passwords import load_common_passwords
from auth_svc.adapters.mail import AccountMailer, InvitationMailer
from auth_svc.adapters.repository import AuthRepository
from auth_svc.adapters.tables import SCHEMA
from auth_svc.domain import PasswordPolicy, Passwords, TokenIssuer
from auth_svc.handlers import (
    LOGIN_PER_ACCOUNT_AND_SOURCE,
    LOGIN_PER_SOURCE,
    REGISTER_PER_SOURCE,
    RESET_PER_ACCOUNT,
    RESET_PER_SOURCE,
    VERIFICATION_PER_ACCOUNT,
    AccountDeletion,
    AccountHandlers,
    AccountRules,
    AuthHandlers,
    ClinicStaffHandlers,
    InvitationSender,
    LocalAuthenticator,
    NoThrottle,
    ServiceAccountHandlers,
)
from auth_svc.ports import AccountMail, UnitOfWork
from auth_svc.service import AuthServicer, ClinicStaffServicer
from petpro import cache, events, grpc_server, keys
from petpro.backoff import Rule
from petpro.db import Database
from petpro.erasure import encode_account_deleted
from petpro.outbox import OutboxRelay
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
    throttle_reset_free_per_account: int = Field(
        default=3, ge=1, description="password-reset mails per email address per hour before back-off"
    )
    throttle_reset_free_per_source: int = Field(
        default=10, ge=1, description="password-reset requests from one address per hour before back-off"
    )
    throttle_link_free_per_source: int = Field(
        default=10, ge=1, description="wrong reset or verification codes from one address before back-off"
    )
    throttle_verification_free_per_account: int = Field(
        default=3, ge=1, description="verification mails asked for again per account per hour before back-off"
    )
    reset_token_ttl_minutes: int = Field(
        default=30, ge=5, le=24 * 60, description="lifetime of a password-reset code"
    )
    verification_ttl_hours: int = Field(
        default=48, ge=1, le=24 * 30, description="lifetime of an email-verification code"
    )
    reset_answer_seconds: float = Field(
        default=0.25,
        ge=0,
        le=5,
        description="a password-reset request is answered after this long at the earliest, whether or "
        "not the email has an account",
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


def account_rules(settings: AuthSettings) -> AccountRules:
    def rule(r: Rule, free: int) -> Rule:
        return dataclasses.replace(
            r, free=free, base=settings.throttle_base_seconds, max=settings.throttle_max_seconds
        )

    defaults = AccountRules()
    return dataclasses.replace(
        defaults,
        reset_account=rule(RESET_PER_ACCOUNT, settings.throttle_reset_free_per_account),
        reset_source=rule(RESET_PER_SOURCE, settings.throttle_reset_free_per_source),
        verification_account=rule(VERIFICATION_PER_ACCOUNT, settings.throttle_verification_free_per_account),
        link_source=rule(defaults.link_source, settings.throttle_link_free_per_source),
        password_check=rule(defaults.password_check, defaults.password_check.free),
    )


def build(
    settings: AuthSettings,
    *,
    uow: UnitOfWork | None = None,
    read: UnitOfWork | None = None,
    passwords: Passwords | None = None,
    send_invitation: InvitationSender | None = None,
    throttle: Throttle | NoThrottle | None = None,
    account_mail: AccountMail | None = None,
) -> grpc_server.App:
    """The auth service.  Tests pass fakes of the ports (``uow``/``read``, the invitation mailer, the
    account mail, the throttle: ``NoThrottle()``) instead of the database, SMTP and Redis."""
    issuer = make_issuer(settings)
    on_stop: list[Callable[[], Awaitable[None]]] = []
    relayed: list[Callable[[], Awaitable[None]]] = []  # the outbox relay (AccountDeleted), with the database
    if uow is None:
        db = Database(
            settings.url("database_url"), SCHEMA, app_name="auth_svc", pool_size=settings.db_pool_size
        )
        uow, read = db.repositories(AuthRepository)
        on_stop.append(db.close)
        relay = OutboxRelay(
            db,
            lambda: events.producer(settings.url("kafka_bootstrap_servers"), "auth_svc-outbox"),
            source="/petpro/auth_svc",
            listen_dsn=settings.url("database_url"),
        )
        relayed.append(relay.run)
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
        policy=PasswordPolicy(load_common_passwords()),
    )
    base = settings.public_base_url or f"http://{settings.stack.host}:{settings.stack.port('envoy')}"
    background: list[Callable[[], Awaitable[None]]] = []
    if send_invitation is None or account_mail is None:
        smtp = SmtpClient(settings.url("smtp_url"), connections=2)  # account mails and invitations
        on_stop.append(smtp.close)
        if send_invitation is None:
            send_invitation = InvitationMailer(smtp, settings.mail_from, f"{base}/v1/invitations:accept").send
        if account_mail is None:
            mailer = AccountMailer(smtp, settings.mail_from, base)
            background.append(mailer.run)
            on_stop.append(mailer.drain)  # runs before smtp.close (on_stop runs in reverse)
            account_mail = mailer
    account = AccountHandlers(
        handlers,
        account_mail,
        reset_ttl=timedelta(minutes=settings.reset_token_ttl_minutes),
        verification_ttl=timedelta(hours=settings.verification_ttl_hours),
        rules=account_rules(settings),
        answer_floor=settings.reset_answer_seconds,
    )
    deletion = AccountDeletion(account, encode_account_deleted)
    background += relayed
    staff = ClinicStaffHandlers(
        handlers, send_invitation, invitation_ttl=timedelta(hours=settings.invitation_ttl_hours)
    )
    return grpc_server.App(
        name="auth_svc",
        settings=settings,
        services=[
            grpc_server.Registration(
                auth_pb2_grpc.add_AuthServiceServicer_to_server,
                AuthServicer(handlers, account, deletion),
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
            ),
            *background,
        ],
        on_stop=on_stop,
    )


def main() -> None:
    grpc_server.main(build, load(AuthSettings))
