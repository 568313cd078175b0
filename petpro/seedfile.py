"""``python -m <service>.seed FILE``: load a seed YAML file into one service's own schema.

The common entry point of the services' seed modules (each service owns its data; the dev CLI runs
them as subprocesses and never imports a service).  The database comes from the service's own
settings (``DATABASE_URL``, else the embedded default)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from petpro.settings import ServiceSettings, load


def main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    settings: type[ServiceSettings],
    loader: Callable[[str, dict[str, Any]], Coroutine[Any, Any, Any]],
    summary: Callable[[Any], str],
) -> int:
    """Parse ``FILE``, run ``loader(database_url, data)`` and print ``summary(result)``."""
    import yaml

    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print(f"usage: python -m {prog} FILE", file=sys.stderr)
        return 2
    data = yaml.safe_load(Path(args[0]).read_text(encoding="utf-8")) or {}
    result: Any = asyncio.run(loader(load(settings).url("database_url"), data))
    print(summary(result))
    return 0
