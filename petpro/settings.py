"""Typed settings shared by every deployable.

Two layers:

* :class:`StackSettings` (env prefix ``PETPRO_``) — where the mesh lives: state folder, bind host and the
  port map.  Every default port is ``port_base + offset``; each one can be overridden on its own
  (``PETPRO_<NAME>_PORT``).  The defaults avoid the ports commonly taken on a developer machine
  (5432, 6379, 5672, 1883, 4222, 3306).
* :class:`BackingSettings` — the URLs of the backing services (``DATABASE_URL``, ``REDIS_URL``,
  ``KAFKA_BOOTSTRAP_SERVERS``, ``SMTP_URL``, ``STRIPE_*``), unprefixed because they are the well-known
  names.  When one is unset the embedded component of ``petpro up`` is used.
* Each service subclasses :class:`ServiceSettings` with its own prefix (``AUTH_``, ``BOOKING_`` …).

A missing or invalid value fails at start with pydantic's message naming the variable.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from petpro.mesh import MESH

# name -> offset from PETPRO_PORT_BASE (default 7400): each service's gRPC port (<name>), its /metrics
# (<name>_metrics) and HTTP listener (<name>_http), the backing services and Envoy (envoy, envoy_admin).
# Declared in the mesh manifest (petpro/mesh.py); documented in docs/operations.md's ports table.
PORT_OFFSETS: dict[str, int] = MESH.port_offsets()


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PETPRO_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path(".petpro"), description="state, data and logs of the dev stack")
    host: str = "127.0.0.1"
    port_base: int = Field(default=MESH.port_base, ge=1024, le=65000)

    def port(self, name: str) -> int:
        """Port of a component: ``PETPRO_<NAME>_PORT`` if set, else ``port_base + offset``."""
        if name not in PORT_OFFSETS:
            raise KeyError(f"unknown component {name!r}; known: {', '.join(PORT_OFFSETS)}")
        override = os.environ.get(f"PETPRO_{name.upper()}_PORT")
        if override:
            try:
                return int(override)
            except ValueError:
                raise SystemExit(f"PETPRO_{name.upper()}_PORT={override!r} is not a port number") from None
        return self.port_base + PORT_OFFSETS[name]

    def addr(self, name: str) -> str:
        return f"{self.host}:{self.port(name)}"

    @property
    def home_abs(self) -> Path:
        return self.home.resolve()


class BackingSettings(BaseSettings):
    """URLs of backing services; ``None`` means "the embedded one from ``petpro up``"."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = None
    # behind a transaction-mode pooler (PgBouncer): "transaction" (docs/operations.md, PgBouncer)
    database_pool_mode: Literal["session", "transaction"] | None = None  # None: session
    # the server itself, bypassing the pooler: migrations (advisory lock) and LISTEN
    database_direct_url: str | None = None
    redis_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    smtp_url: str | None = None
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: str | None = None
    push_api_base: str | None = (
        None  # the push providers' stand-in (FCM + APNs); real ones: NOTIF_FCM_*, NOTIF_APNS_*
    )
    sms_api_base: str | None = None  # the Twilio stand-in; real Twilio: NOTIF_SMS_* (docs/notifications.md)


def embedded_urls(stack: StackSettings) -> dict[str, str]:
    """URLs of the embedded components that ``petpro up`` starts for this port map."""
    h = stack.host
    return {
        "database_url": f"postgresql://postgres@{h}:{stack.port('postgres')}/petpro",
        "redis_url": f"redis://{h}:{stack.port('redis')}/0",
        "kafka_bootstrap_servers": f"{h}:{stack.port('kafka')}",
        "smtp_url": f"smtp://{h}:{stack.port('smtp')}",
        "stripe_api_base": f"http://{h}:{stack.port('stripe')}",
        "push_api_base": f"http://{h}:{stack.port('push')}",
        "sms_api_base": f"http://{h}:{stack.port('sms')}",
    }


class ServiceSettings(BaseSettings):
    """Base for a deployable's settings.  Subclasses set ``model_config`` with their env prefix and
    ``component`` (the key in :data:`PORT_OFFSETS`)."""

    component: ClassVar[str] = ""
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    grpc_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="0 disables /metrics")
    bind_host: str = "127.0.0.1"
    grace_seconds: float = Field(default=10.0, ge=0, description="drain time for in-flight RPCs on SIGTERM")
    max_connection_age_seconds: float = Field(
        default=0, ge=0, description="0: unlimited; else clients reconnect (and re-resolve DNS) this often"
    )
    log_level: str = "INFO"

    @cached_property
    def stack(self) -> StackSettings:
        return StackSettings()

    @cached_property
    def backing(self) -> BackingSettings:
        return BackingSettings()

    def url(self, name: str) -> str:
        """A backing URL (``database_url`` …): the explicit env var, else the embedded default."""
        explicit = getattr(self.backing, name)
        return explicit or embedded_urls(self.stack)[name]

    @property
    def listen_port(self) -> int:
        return self.grpc_port if self.grpc_port is not None else self.stack.port(self.component)

    @property
    def metrics_listen_port(self) -> int:
        if self.metrics_port is not None:
            return self.metrics_port
        return self.stack.port(f"{self.component}_metrics")

    def peer(self, component: str) -> str:
        """host:port of another service of the mesh (``<COMPONENT>_ADDR`` overrides, e.g. in k8s)."""
        return os.environ.get(f"{component.upper()}_ADDR") or self.stack.addr(component)


T = TypeVar("T", bound=BaseSettings)


def load(cls: type[T]) -> T:
    """Instantiate settings, turning a validation error into a clear start-up failure."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        lines = [f"invalid configuration for {cls.__name__}:"]
        for err in exc.errors():
            var = (prefix + "_".join(str(p) for p in err["loc"])).upper()
            lines.append(f"  {var}: {err['msg']}")
        raise SystemExit("\n".join(lines)) from None
