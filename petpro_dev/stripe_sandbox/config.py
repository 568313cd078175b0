"""Settings of one sandbox instance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The API version the installed `stripe` SDK pins (stripe 16.x); events carry it as `api_version`.
API_VERSION = "2026-10-28.endive"


@dataclass(frozen=True)
class RetryPolicy:
    """Webhook retries: attempt n fails → wait min(base * 2**(n-1), cap), up to ``max_attempts`` in all."""

    base: float = 0.5
    cap: float = 30.0
    max_attempts: int = 8
    timeout: float = 10.0  # per attempt

    def delay(self, attempt: int) -> float:
        return float(min(self.base * (2 ** (attempt - 1)), self.cap))


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 7411
    # state folder of the stack (PETPRO_HOME): data under data/stripe/, the signing secret under keys/;
    # None keeps everything in memory (then give webhook_secret, or a random one is made up)
    home: Path | None = None
    webhook_url: str | None = None  # None: events are recorded, not delivered
    public_url: str | None = None  # base of the hosted pages' URLs; default http://host:port
    webhook_secret: str | None = None  # default: load_webhook_secret(home)
    retry: RetryPolicy = RetryPolicy()
    # event types delivered to the webhook ("*" = all), like a Stripe endpoint's enabled_events
    enabled_events: tuple[str, ...] = ("*",)
    # Stripe accepts expires_at between 30 minutes and 24 hours from creation; tests may allow shorter
    min_expires_in: int = 1800
    max_expires_in: int = 86400
    sweep_interval: float = 1.0  # how often open sessions past expires_at are expired
    api_version: str = API_VERSION

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def db_path(self) -> Path | None:
        return self.home / "data" / "stripe" / "sandbox.sqlite3" if self.home is not None else None

    def delivers(self, event_type: str) -> bool:
        return "*" in self.enabled_events or event_type in self.enabled_events
