"""``python -m petpro_dev.sms_sandbox --host 127.0.0.1 --port 7444 --home .petpro --webhook-url URL``:
the Twilio Messages stand-in (see app.py).  Its dev credentials are made under ``<home>/sms/`` on first
run; inbound texts are posted to ``--webhook-url`` (the edge's ``/webhooks/twilio/sms``).  SIGTERM/SIGINT
stop it."""

from __future__ import annotations

import argparse
from pathlib import Path

from petpro.settings import StackSettings
from petpro.telemetry import configure_logging
from petpro_dev.sandbox_server import run_until_signalled
from petpro_dev.sms_sandbox.app import build_app
from petpro_dev.sms_sandbox.credentials import ensure


def main(argv: list[str] | None = None) -> None:
    stack = StackSettings()
    parser = argparse.ArgumentParser(prog="python -m petpro_dev.sms_sandbox", description=__doc__)
    parser.add_argument("--host", default=stack.host)
    parser.add_argument("--port", type=int, default=stack.port("sms"))
    parser.add_argument(
        "--home", type=Path, default=stack.home_abs, help="state folder: sms/ holds the dev credentials"
    )
    parser.add_argument("--webhook-url", default="", help="where inbound texts (STOP, START) are posted")
    args = parser.parse_args(argv)
    configure_logging("sms_sandbox")
    creds = ensure(args.home)
    run_until_signalled(build_app(creds, args.webhook_url), args.host, args.port)


if __name__ == "__main__":
    main()
