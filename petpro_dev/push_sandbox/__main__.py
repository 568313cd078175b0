"""``python -m petpro_dev.push_sandbox --host 127.0.0.1 --port 7443 --home .petpro``: the FCM and APNs
stand-in (see app.py) on one port, HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) via Hypercorn.
Its dev keys are made under ``<home>/push/`` on first run.  SIGTERM/SIGINT stop it."""

from __future__ import annotations

import argparse
from pathlib import Path

from petpro.settings import StackSettings
from petpro.telemetry import configure_logging
from petpro_dev.push_sandbox.app import build_app
from petpro_dev.push_sandbox.keys import ensure
from petpro_dev.sandbox_server import run_until_signalled


def main(argv: list[str] | None = None) -> None:
    stack = StackSettings()
    parser = argparse.ArgumentParser(prog="python -m petpro_dev.push_sandbox", description=__doc__)
    parser.add_argument("--host", default=stack.host)
    parser.add_argument("--port", type=int, default=stack.port("push"))
    parser.add_argument(
        "--home", type=Path, default=stack.home_abs, help="state folder: push/ holds the dev keys"
    )
    args = parser.parse_args(argv)
    configure_logging("push_sandbox")
    keys = ensure(args.home)
    run_until_signalled(build_app(keys), args.host, args.port)


if __name__ == "__main__":
    main()
