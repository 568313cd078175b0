"""Serving a provider stand-in's ASGI app (the push and SMS sandboxes) with Hypercorn on one port,
HTTP/1.1 and HTTP/2 (cleartext, prior knowledge), until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config


def run_until_signalled(app: Any, host: str, port: int) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    stop = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, config, shutdown_trigger=stop.wait)

    asyncio.run(run())
