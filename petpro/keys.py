"""Dev keys generated at first run (never committed); production mounts them from a secret."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _load_ed25519(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"{path}: not an Ed25519 private key")
    return key


def load_or_create_ed25519(path: Path) -> Ed25519PrivateKey:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        try:
            os.link(tmp, path)  # atomic: when processes race, the first key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return _load_ed25519(path)


def load_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A random hex secret kept in a file (e.g. the sandbox's webhook signing secret)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = os.urandom(nbytes).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


# --------------------------------------------------------------------------------------------------
# a key directory: several keys, shared by every replica (Kubernetes mounts one Secret as files)
# --------------------------------------------------------------------------------------------------

FIRST_KEY_NAME = "00000000T000000Z.pem"  # sorts before every rotated key


def key_files(directory: Path) -> list[Path]:
    """The ``*.pem`` files of ``directory`` in name order: the last one is the newest.  (A mounted
    Kubernetes Secret's ``..data`` links are hidden names and are skipped.)"""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.pem") if p.is_file() and not p.name.startswith("."))


def load_key_dir(directory: Path) -> list[Ed25519PrivateKey]:
    """Every Ed25519 key of the directory, oldest first; ValueError names a file that is not one."""
    out = []
    for path in key_files(directory):
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
        out.append(key)
    return out


def load_or_create_key_dir(directory: Path) -> list[Ed25519PrivateKey]:
    """:func:`load_key_dir`, creating a first key when the directory has none (the dev stack)."""
    try:
        found = load_key_dir(directory)
        if not found:
            load_or_create_ed25519(directory / FIRST_KEY_NAME)
            found = load_key_dir(directory)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"signing keys in {directory}: {exc}") from None
    return found


def add_key(directory: Path, now: datetime | None = None) -> Path:
    """Write a new key named by the UTC time (so it sorts last and becomes the signing key)."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    path = directory / when.strftime("%Y%m%dT%H%M%S.%fZ.pem")
    if path.exists():
        raise FileExistsError(path)
    load_or_create_ed25519(path)
    return path
