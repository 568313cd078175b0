"""Signing-key rotation for auth_svc: ``python -m auth_svc.signing_keys list | rotate | retire KID``.

Convention: every ``*.pem`` (Ed25519) in the key directory (``AUTH_SIGNING_KEYS_DIR``, default
``$PETPRO_HOME/keys/auth-signing/``; in Kubernetes one Secret mounted there, shared by all replicas)
verifies tokens; the one whose name sorts last signs new ones.  Rotating = adding a newer key file;
every replica picks it up within ``AUTH_KEYS_RELOAD_SECONDS`` (and at once when it meets a token of
a ``kid`` it does not know yet).  Retiring = deleting the old file once the tokens it signed have
expired (``AUTH_ACCESS_TTL_SECONDS`` after the rotation): its tokens are rejected from then on.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from auth_svc.domain import VerificationKey
from auth_svc.server import AuthSettings, keys_dir
from petpro import keys
from petpro.settings import load


def describe(directory: Path) -> list[tuple[str, str, str]]:
    """(kid, file name, role) of every key, oldest first."""
    files = keys.key_files(directory)
    rows: list[tuple[str, str, str]] = []
    for n, (path, key) in enumerate(zip(files, keys.load_key_dir(directory), strict=True)):
        role = "signs + verifies" if n == len(files) - 1 else "verifies"
        rows.append((VerificationKey.of(key).kid, path.name, role))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m auth_svc.signing_keys", description=(__doc__ or "").split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the keys of the directory, oldest first")
    sub.add_parser("rotate", help="add a new key: it signs new tokens, the old ones still verify")
    retire = sub.add_parser("retire", help="delete a key that no longer signs: its tokens stop verifying")
    retire.add_argument("kid")
    args = parser.parse_args(argv)

    settings = load(AuthSettings)
    if settings.signing_key_file:
        print(
            "AUTH_SIGNING_KEY_FILE is set: one fixed key, no rotation (use AUTH_SIGNING_KEYS_DIR)",
            file=sys.stderr,
        )
        return 1
    directory = keys_dir(settings)
    if args.cmd == "rotate":
        directory.mkdir(parents=True, exist_ok=True)
        path = keys.add_key(directory, datetime.now(UTC))
        print(f"added {path}; it signs new tokens once the replicas reload (AUTH_KEYS_RELOAD_SECONDS)")
    elif args.cmd == "retire":
        rows = describe(directory)
        match = [(i, r) for i, r in enumerate(rows) if r[0] == args.kid]
        if not match:
            print(f"no key {args.kid!r} in {directory}", file=sys.stderr)
            return 1
        if match[0][0] == len(rows) - 1:
            print(
                f"{args.kid} is the signing key: rotate first, retire it after the tokens it signed expired",
                file=sys.stderr,
            )
            return 1
        (directory / match[0][1][1]).unlink()
        print(f"retired {args.kid} ({match[0][1][1]})")
    for kid, name, role in describe(directory):
        print(f"{kid}  {name}  {role}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
