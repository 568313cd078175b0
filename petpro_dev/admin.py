"""``petpro admin``: clinic onboarding on a fresh install, through the services' entry points and APIs.

``create-platform-admin`` runs ``python -m auth_svc.admin create-platform-admin EMAIL`` (the one account
nobody can create through the API); ``create-clinic`` makes sure that account exists, then logs in over
REST and calls ``POST /v1/clinics`` (ClinicAdminService.CreateClinic) and
``POST /v1/clinics/{id}/invitations`` for the clinic's first admin, who gets the invitation email.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
DEFAULT_HOURS = ("mon-fri=09:00-17:00",)
_SPEC = re.compile(r"^(?P<days>[a-z]{3}(-[a-z]{3})?)=(?P<ivs>\d\d:\d\d-\d\d:\d\d(,\d\d:\d\d-\d\d:\d\d)*)$")


class AdminFailed(RuntimeError):
    pass


def parse_hours(specs: Sequence[str]) -> list[dict[str, Any]]:
    """``["mon-fri=08:00-12:00,13:00-18:00", "sat=09:00-13:00"]`` → OpeningHours JSON objects."""
    out = []
    names = list(WEEKDAYS)
    for spec in specs:
        m = _SPEC.match(spec.strip().lower())
        if not m:
            raise AdminFailed(f"bad --hours {spec!r}: use e.g. mon-fri=08:00-12:00,13:00-18:00")
        first, _, last = m["days"].partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise AdminFailed(f"bad --hours {spec!r}: weekdays are {', '.join(names)}")
        days = names[names.index(first) : names.index(last or first) + 1]
        for day in days:
            for iv in m["ivs"].split(","):
                a, b = iv.split("-")
                out.append({"weekday": f"WEEKDAY_{_FULL[day]}", "open_time": a, "close_time": b})
    return out


_FULL = {
    "mon": "MONDAY",
    "tue": "TUESDAY",
    "wed": "WEDNESDAY",
    "thu": "THURSDAY",
    "fri": "FRIDAY",
    "sat": "SATURDAY",
    "sun": "SUNDAY",
}


def create_platform_admin(email: str, password: str, env: Mapping[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "auth_svc.admin", "create-platform-admin", email],
        env={**env, "PETPRO_ADMIN_PASSWORD": password},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AdminFailed(
            f"python -m auth_svc.admin failed (exit {result.returncode}):\n{result.stderr.strip()}"
        )
    return result.stdout.strip()


@dataclass(frozen=True)
class Onboarded:
    clinic: dict[str, Any]
    invitation: dict[str, Any]


def _ok(r: httpx.Response, what: str) -> dict[str, Any]:
    if r.status_code >= 300:
        raise AdminFailed(f"{what}: HTTP {r.status_code} {r.text}")
    return dict(r.json())


def create_clinic(
    api: str, platform_email: str, platform_password: str, clinic: dict[str, Any], admin_email: str
) -> Onboarded:
    with httpx.Client(base_url=api, timeout=30) as c:
        token = _ok(
            c.post("/v1/auth/login", json={"email": platform_email, "password": platform_password}),
            "log in as the platform admin",
        )["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        created = _ok(c.post("/v1/clinics", json=clinic, headers=auth), "create the clinic")
        clinic_id = created["clinic"]["clinic_id"]
        invited = _ok(
            c.post(
                f"/v1/clinics/{clinic_id}/invitations",
                json={"email": admin_email, "role": "CLINIC_ROLE_ADMIN"},
                headers=auth,
            ),
            "invite the clinic admin",
        )
    return Onboarded(created["clinic"], invited["invitation"])
