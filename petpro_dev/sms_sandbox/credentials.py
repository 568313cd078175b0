"""The stand-in's dev credentials (an Account SID, its auth token and a sender number), made under
``<home>/sms/`` on first run and never committed; notif_worker's settings for them (:func:`notif_env`)."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

SENDER = "+15005550006"  # Twilio's documented magic "from" number of test credentials


@dataclass(frozen=True)
class DevCredentials:
    account_sid: str
    auth_token: str
    sender: str = SENDER


def _path(home: Path) -> Path:
    return home / "sms" / "credentials.json"


def ensure(home: Path) -> DevCredentials:
    """The dev credentials under ``home``, made on first use (one process makes them)."""
    path = _path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            data = {"account_sid": "AC" + secrets.token_hex(16), "auth_token": secrets.token_hex(16)}
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, path)
    data = json.loads(path.read_text())
    return DevCredentials(data["account_sid"], data["auth_token"])


def notif_env(creds: DevCredentials, base_url: str) -> dict[str, str]:
    """notif_worker's SMS settings for these credentials and a stand-in at ``base_url``."""
    return {
        "NOTIF_SMS_ACCOUNT_SID": creds.account_sid,
        "NOTIF_SMS_AUTH_TOKEN": creds.auth_token,
        "NOTIF_SMS_FROM": creds.sender,
        "NOTIF_SMS_API_BASE": base_url,
    }
