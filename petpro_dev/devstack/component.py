"""What a dev-stack component is: data, not code paths.

A :class:`Component` is a long-running process (name, how to launch it, how to tell it is ready, what
it depends on); a :class:`Task` is a one-shot step between them (migrations).  The :class:`Context`
gives both the stack's settings, folders and URLs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from petpro.settings import BackingSettings, StackSettings, embedded_urls
from petpro_dev.devstack.checks import ReadyCheck

# BackingSettings field → environment variable every child process gets
BACKING_ENV: dict[str, str] = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "smtp_url": "SMTP_URL",
    "stripe_api_base": "STRIPE_API_BASE",
    "push_api_base": "PUSH_API_BASE",
    "sms_api_base": "SMS_API_BASE",
}
# notif_worker's real push credentials: with both set the stand-in is neither started nor used
PUSH_CREDENTIALS = ("NOTIF_FCM_CREDENTIALS_FILE", "NOTIF_APNS_KEY_FILE")


@dataclass(frozen=True)
class Context:
    """Where a stack lives and which backing URLs it uses."""

    settings: StackSettings
    backing: BackingSettings

    @property
    def home(self) -> Path:
        return self.settings.home_abs

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_root(self) -> Path:
        return self.home / "data"

    @property
    def mail_dir(self) -> Path:
        return self.home / "mail"

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def data_dir(self, name: str) -> Path:
        return self.data_root / name

    def port(self, name: str) -> int:
        return self.settings.port(name)

    def explicit_url(self, key: str) -> str | None:
        """The user's URL for a backing service (env or .env), None when the embedded one is used."""
        value = getattr(self.backing, key)
        return value or None

    def url(self, key: str) -> str:
        return self.explicit_url(key) or embedded_urls(self.settings)[key]

    def webhook_secret(self) -> str:
        """The secret Stripe webhooks are signed with: ``STRIPE_WEBHOOK_SECRET`` when set, else the
        sandbox's, generated once under the home.  The stack hands it to the payment service."""
        from petpro_dev.stripe_sandbox.signing import load_webhook_secret

        return self.backing.stripe_webhook_secret or load_webhook_secret(self.home)

    def client_env(self) -> dict[str, str]:
        """What a client of this stack needs: backing URLs, the webhook secret and the stack's own
        settings."""
        env = {var: self.url(key) for key, var in BACKING_ENV.items()}
        if not self.backing.stripe_api_key:  # with real Stripe the user gives their endpoint's secret
            env["STRIPE_WEBHOOK_SECRET"] = self.webhook_secret()
        env.update(self.push_env())
        env.update(self.sms_env())
        env["PETPRO_HOME"] = str(self.home)
        env["PETPRO_HOST"] = self.settings.host
        env["PETPRO_PORT_BASE"] = str(self.settings.port_base)
        return env

    def push_env(self) -> dict[str, str]:
        """notif_worker's push settings for the stand-in and its dev keys (made here on first use), for
        each provider whose real credentials the user did not configure."""
        from petpro_dev.push_sandbox.keys import ensure, notif_env

        env = notif_env(ensure(self.home), self.url("push_api_base"))
        for credential in PUSH_CREDENTIALS:
            if os.environ.get(credential):  # the user's real provider: none of the stand-in's settings for it
                prefix = credential.rsplit("_", 2)[0] + "_"
                env = {k: v for k, v in env.items() if not k.startswith(prefix)}
        return env

    def sms_env(self) -> dict[str, str]:
        """notif_worker's SMS settings for the Twilio stand-in and its dev credentials, unless the user
        configured real Twilio credentials (``NOTIF_SMS_ACCOUNT_SID``)."""
        from petpro_dev.sms_sandbox.credentials import ensure, notif_env

        if os.environ.get("NOTIF_SMS_ACCOUNT_SID"):
            return {}
        env = notif_env(ensure(self.home), self.url("sms_api_base"))
        # where the stand-in posts incoming texts (the edge through Envoy): their signature covers it
        env["NOTIF_SMS_WEBHOOK_URL"] = f"http://{self.settings.host}:{self.port('envoy')}/webhooks/twilio/sms"
        return env

    def child_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of every process the stack starts."""
        env = dict(os.environ)
        env.update(self.client_env())
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env


@dataclass(frozen=True)
class Launch:
    """How to start a component's process."""

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)  # on top of Context.child_env()
    user: str | None = None  # system user to run as when we are root (PostgreSQL refuses root)


@dataclass(frozen=True)
class Component:
    """A long-running process of the stack.

    ``url_key`` names a :class:`BackingSettings` field (``database_url`` …): when the user sets it,
    the component is *external* — not started, only checked for reachability (and provisioned).
    """

    name: str
    launch: Callable[[Context], Launch]
    ready: ReadyCheck  # called with address(ctx); raises NotReady until the component answers
    depends_on: tuple[str, ...] = ()
    url_key: str | None = None
    port: Callable[[Context], int] | None = None  # default: the stack's port map entry for ``name``
    prepare: Callable[[Context], None] | None = None  # before each start (idempotent: initdb …)
    provision: Callable[[Context, str], None] | None = None  # once ready, given the URL (create db …)
    stop: Callable[[Context, int], None] | None = None  # polite stop instead of SIGTERM to the group
    start_timeout: float = 30.0
    stop_grace: float = 10.0

    def port_of(self, ctx: Context) -> int:
        return self.port(ctx) if self.port is not None else ctx.port(self.name)

    def address(self, ctx: Context) -> str:
        """URL (backing services) or host:port (gRPC services) shown to the user and checked."""
        if self.url_key is not None:
            return ctx.url(self.url_key)
        return f"{ctx.settings.host}:{self.port_of(ctx)}"

    def is_external(self, ctx: Context) -> bool:
        return self.url_key is not None and ctx.explicit_url(self.url_key) is not None


@dataclass(frozen=True)
class Task:
    """A one-shot step run during ``up`` once its dependencies are ready (e.g. migrations).

    ``run`` returns a short note for the progress line, or raises :class:`TaskFailed`.
    """

    name: str
    run: Callable[[Context], str]
    depends_on: tuple[str, ...] = ()


class TaskFailed(Exception):
    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


Step = Component | Task
