"""auth_svc composition root."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from auth_svc.domain import Passwords, TokenIssuer
from auth_svc.handlers import (
    LOGIN_PER_ACCOUNT_AND_SOURCE,
    LOGIN_PER_SOURCE,
    REGISTER_PER_SOURCE,
    AuthHandlers,
)
from auth_svc.repository import SCHEMA, AuthRepository
from auth_svc.service import AuthServicer
from petpro import cache, grpc_server, keys
from petpro.db import Database
from petpro.settings import ServiceSettings, load
from petpro.throttle import Rule, Throttle
from petpro_api.auth.v1 import auth_pb2_grpc


class AuthSettings(ServiceSettings):
    component = "auth"
    model_config = SettingsConfigDict(env_prefix="AUTH_", env_file=".env", extra="ignore")

    access_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_ttl_days: int = Field(default=30, ge=1, le=365)
    issuer: str = "petpro-auth"
    audience: str = "petpro"
    signing_key_file: Path | None = Field(
        default=None, description="Ed25519 PEM; default <PETPRO_HOME>/keys/auth-signing.pem, generated on first run"
    )
    db_pool_size: int = Field(default=10, ge=1, le=100)
    throttle_login_free_per_account_source: int = Field(
        default=5, ge=1, description="failed logins of one account from one address before back-off")
    throttle_login_free_per_source: int = Field(
        default=20, ge=1, description="failed logins from one address (any account) before back-off")
    throttle_register_free_per_source: int = Field(
        default=20, ge=1, description="registrations from one address per hour before back-off")
    throttle_base_seconds: float = Field(default=1.0, gt=0, description="first back-off; doubles per failure")
    throttle_max_seconds: float = Field(default=900.0, gt=0, description="longest back-off")


def build(settings: AuthSettings) -> grpc_server.App:
    key_file = settings.signing_key_file or settings.stack.home_abs / "keys" / "auth-signing.pem"
    issuer = TokenIssuer(
        keys.load_or_create_ed25519(key_file), issuer=settings.issuer, audience=settings.audience,
        ttl=timedelta(seconds=settings.access_ttl_seconds),
    )
    db = Database(settings.url("database_url"), SCHEMA, app_name="auth_svc", pool_size=settings.db_pool_size)

    uow, read = db.repositories(AuthRepository)
    redis = cache.make_redis(settings.url("redis_url"))

    def rule(r: Rule, free: int) -> Rule:
        return dataclasses.replace(r, free=free, base=settings.throttle_base_seconds, max=settings.throttle_max_seconds)

    rules = (rule(LOGIN_PER_ACCOUNT_AND_SOURCE, settings.throttle_login_free_per_account_source),
             rule(LOGIN_PER_SOURCE, settings.throttle_login_free_per_source),
             rule(REGISTER_PER_SOURCE, settings.throttle_register_free_per_source))
    handlers = AuthHandlers(uow, Passwords(), issuer, refresh_ttl=timedelta(days=settings.refresh_ttl_days),
                            read=read, throttle=Throttle(redis), rules=rules)

    async def close_redis() -> None:
        await redis.aclose()

    return grpc_server.App(
        name="auth_svc",
        settings=settings,
        services=[grpc_server.Registration(
            auth_pb2_grpc.add_AuthServiceServicer_to_server, AuthServicer(handlers), "petpro.auth.v1.AuthService"
        )],
        on_stop=[db.close, close_redis],
    )


def main() -> None:
    grpc_server.main(build, load(AuthSettings))
