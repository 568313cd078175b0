"""``python -m petpro_dev.stripe_sandbox --port 7411 --home .petpro --webhook-url URL``.

Defaults come from the stack settings (``PETPRO_HOME``, ``PETPRO_HOST``, ``PETPRO_STRIPE_PORT`` /
``PETPRO_PORT_BASE``); the webhook URL defaults to the public edge's ``/webhooks/stripe``.  The signing
secret is ``STRIPE_WEBHOOK_SECRET`` if set, else ``<home>/keys/stripe-webhook-secret`` (made on first run).
SIGTERM/SIGINT stop it cleanly; undelivered events are delivered after the next start.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from petpro.settings import StackSettings
from petpro.telemetry import configure_logging
from petpro_dev.stripe_sandbox.app import serve
from petpro_dev.stripe_sandbox.config import API_VERSION, RetryPolicy, SandboxConfig


def parse_args(argv: list[str] | None = None) -> SandboxConfig:
    stack = StackSettings()
    default_webhook = f"http://{stack.host}:{stack.port('envoy')}/webhooks/stripe"
    parser = argparse.ArgumentParser(
        prog="python -m petpro_dev.stripe_sandbox",
        description="Stripe-compatible sandbox (checkout, refunds, signed webhooks)",
    )
    parser.add_argument("--host", default=stack.host)
    parser.add_argument("--port", type=int, default=stack.port("stripe"))
    parser.add_argument(
        "--home",
        type=Path,
        default=stack.home_abs,
        help="state folder: data/stripe/ (SQLite) and keys/stripe-webhook-secret",
    )
    parser.add_argument(
        "--webhook-url",
        default=default_webhook,
        help=f"where events are POSTed (default {default_webhook}); '' records them only",
    )
    parser.add_argument(
        "--public-url",
        default=None,
        help="base URL of the hosted pay pages in session.url (default http://HOST:PORT)",
    )
    parser.add_argument(
        "--enabled-events",
        default="*",
        help="comma-separated event types to deliver, like an endpoint's enabled_events",
    )
    parser.add_argument("--retry-base", type=float, default=0.5, help="first retry delay, doubled each time")
    parser.add_argument("--retry-cap", type=float, default=30.0, help="longest delay between attempts")
    parser.add_argument("--max-attempts", type=int, default=8, help="delivery attempts per event")
    parser.add_argument("--delivery-timeout", type=float, default=10.0, help="seconds per attempt")
    parser.add_argument(
        "--min-expires-in",
        type=int,
        default=1800,
        help="shortest expires_at accepted, seconds from creation (Stripe: 1800)",
    )
    parser.add_argument("--sweep-interval", type=float, default=1.0, help="seconds between expiry sweeps")
    parser.add_argument("--api-version", default=API_VERSION, help="api_version stamped on events")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.max_attempts < 1:
        parser.error("--max-attempts must be at least 1")
    configure_logging("stripe-sandbox", args.log_level)
    return SandboxConfig(
        host=args.host,
        port=args.port,
        home=args.home.resolve(),
        webhook_url=args.webhook_url or None,
        public_url=args.public_url,
        retry=RetryPolicy(
            base=args.retry_base,
            cap=args.retry_cap,
            max_attempts=args.max_attempts,
            timeout=args.delivery_timeout,
        ),
        enabled_events=tuple(e.strip() for e in args.enabled_events.split(",") if e.strip()) or ("*",),
        min_expires_in=args.min_expires_in,
        sweep_interval=args.sweep_interval,
        api_version=args.api_version,
    )


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
