"""The list of common passwords a new password must not be (common_passwords.txt beside this module:
the 10,000 most common, lower-cased; its header lines start with "# ", a password may start with "#"), read once by the composition root."""

from __future__ import annotations

from importlib import resources


def load_common_passwords() -> frozenset[str]:
    text = resources.files("auth_svc.adapters").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("# "))
