"""The stand-in's dev credentials, made once under ``<home>/push/`` (never committed): a Google
service-account JSON key (RSA) for FCM's OAuth grant, and an APNs auth key (.p8, EC P-256) with its
key id, team id and topic.  The stand-in verifies with their public halves; notif_worker signs with
them, as it would with the real ones."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PROJECT_ID = "petpro-dev"
CLIENT_EMAIL = "notif-worker@petpro-dev.iam.gserviceaccount.com"
APNS_TEAM_ID = "PETPRODEV1"
APNS_TOPIC = "dev.petpro.app"


@dataclass(frozen=True)
class DevKeys:
    folder: Path

    @property
    def fcm_credentials(self) -> Path:
        return self.folder / "fcm-service-account.json"

    @property
    def apns_key(self) -> Path:
        return self.folder / "apns-auth-key.p8"

    @property
    def apns_meta(self) -> Path:
        return self.folder / "apns.json"

    def service_account(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.fcm_credentials.read_text())
        return data

    def fcm_public_key_pem(self) -> bytes:
        key = serialization.load_pem_private_key(self.service_account()["private_key"].encode(), None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def apns(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.apns_meta.read_text())
        return data

    def apns_public_key_pem(self) -> bytes:
        key = serialization.load_pem_private_key(self.apns_key.read_bytes(), None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none


def ensure(home: Path) -> DevKeys:
    """The dev keys under ``home``, made on first use."""
    keys = DevKeys(home / "push")
    keys.folder.mkdir(parents=True, exist_ok=True)
    if keys.fcm_credentials.exists() and keys.apns_meta.exists():
        return keys
    # the stack starts its components from several threads and processes: one makes the keys
    with open(keys.folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _make(keys)
    return keys


def _make(keys: DevKeys) -> None:
    if not keys.fcm_credentials.exists():
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        info = {
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            # the real endpoint, as in a downloaded key: notif_worker's NOTIF_FCM_TOKEN_URI points at us
            "token_uri": "https://oauth2.googleapis.com/token",
        }
        _write_private(keys.fcm_credentials, json.dumps(info, indent=2).encode())
    if not keys.apns_key.exists() or not keys.apns_meta.exists():
        private_ec = ec.generate_private_key(ec.SECP256R1())
        _write_private(
            keys.apns_key,
            private_ec.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        meta = {"key_id": secrets.token_hex(5).upper(), "team_id": APNS_TEAM_ID, "topic": APNS_TOPIC}
        _write_private(keys.apns_meta, json.dumps(meta).encode())


def notif_env(keys: DevKeys, base_url: str) -> dict[str, str]:
    """notif_worker's settings for these keys and a stand-in at ``base_url``."""
    apns = keys.apns()
    return {
        "NOTIF_FCM_CREDENTIALS_FILE": str(keys.fcm_credentials),
        "NOTIF_FCM_API_BASE": base_url,
        "NOTIF_FCM_TOKEN_URI": f"{base_url}/token",
        "NOTIF_APNS_KEY_FILE": str(keys.apns_key),
        "NOTIF_APNS_KEY_ID": apns["key_id"],
        "NOTIF_APNS_TEAM_ID": apns["team_id"],
        "NOTIF_APNS_TOPIC": apns["topic"],
        "NOTIF_APNS_API_BASE": base_url,
    }
