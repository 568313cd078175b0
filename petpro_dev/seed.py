"""``petpro seed``: load seed data through each service's own seed entry point.

The dev tooling does not reach into the services' code: it runs ``python -m booking_svc.seed FILE``
(clinics, services) and ``python -m auth_svc.seed FILE`` (clinic staff accounts) as processes with the
stack's environment, each writing to its own service's schema.  Both are idempotent.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

DEMO = Path(__file__).parent / "seed_data" / "demo.yaml"
# booking first: the staff accounts name clinics of the catalog
SEED_MODULES = ("booking_svc.seed", "auth_svc.seed")


class SeedFailed(RuntimeError):
    pass


def seed(path: Path, env: Mapping[str, str]) -> list[str]:
    """Run every service's seed entry point on ``path``; their summary lines, or :class:`SeedFailed`."""
    lines: list[str] = []
    for module in SEED_MODULES:
        result = subprocess.run(
            [sys.executable, "-m", module, str(path)],
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SeedFailed(
                f"python -m {module} {path} failed (exit {result.returncode}):\n{result.stderr.strip()}"
            )
        lines += result.stdout.strip().splitlines()
    return lines
