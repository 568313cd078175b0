"""The owner's profile and password rules: what a password must not be (short, common, the email),
the profile's fields (name, E.164 phone, BCP 47 locale, IANA time zone for display), the AIP-134
update-mask rule for changing them, and the locale picked from an Accept-Language header."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from zoneinfo import available_timezones

from auth_svc.domain.accounts import User
from petpro.errors import FieldViolation, InvalidArgument
from petpro.locale import canonical_locale

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128


@dataclass(frozen=True)
class PasswordPolicy:
    """A new password is at least 8 characters, not one of ``common`` (compared lower-cased and
    stripped, as Django's CommonPasswordValidator does) and not the account's email or its name part."""

    common: frozenset[str] = frozenset()

    def violation(self, password: str, *, email: str = "", field: str = "password") -> FieldViolation | None:
        if len(password) < MIN_PASSWORD_LENGTH:
            return FieldViolation(
                field, f"must be at least {MIN_PASSWORD_LENGTH} characters", "PASSWORD_TOO_SHORT"
            )
        if len(password) > MAX_PASSWORD_LENGTH:
            return FieldViolation(
                field, f"must be at most {MAX_PASSWORD_LENGTH} characters", "PASSWORD_TOO_LONG"
            )
        folded = password.lower().strip()
        if folded in self.common:
            return FieldViolation(
                field, "is one of the most common passwords; choose another", "PASSWORD_TOO_COMMON"
            )
        local = email.lower().partition("@")[0]
        if email and (folded == email.lower() or (len(local) >= 4 and local in folded)):
            return FieldViolation(field, "must not contain your email address", "PASSWORD_CONTAINS_EMAIL")
        return None

    def check(self, password: str, *, email: str = "", field: str = "password") -> None:
        bad = self.violation(password, email=email, field=field)
        if bad is not None:
            raise InvalidArgument(f"{field}: {bad.description}", reason="WEAK_PASSWORD", violations=[bad])


# E.164: "+", a country code not starting with 0, at most 15 digits in all
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def locale_from_accept_language(header: str) -> str:
    """The client's most preferred well-formed language of an Accept-Language header (RFC 9110: the
    highest q, the first of equals; "*" and q=0 skipped), "" if none."""
    best, best_q = "", 0.0
    for item in header.split(",")[:20]:
        tag, _, params = item.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            key, _, value = p.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        locale = canonical_locale(tag) if tag.strip() != "*" else None
        if locale and q > best_q:
            best, best_q = locale, q
    return best


PROFILE_FIELDS = ("name", "phone", "locale", "time_zone")


def profile_violations(values: Mapping[str, str], prefix: str = "user.") -> list[FieldViolation]:
    """What is wrong with the given profile fields ("" clears phone, locale and time zone)."""
    out: list[FieldViolation] = []
    if "name" in values:
        name = values["name"].strip()
        if not name or len(name) > 100:
            out.append(FieldViolation(f"{prefix}name", "must be 1 to 100 characters", "NAME_INVALID"))
    phone = values.get("phone", "")
    if phone and not _E164.match(phone):
        out.append(
            FieldViolation(
                f"{prefix}phone",
                "must be an E.164 number: + and 7 to 15 digits, e.g. +43123456789",
                "PHONE_INVALID",
            )
        )
    locale = values.get("locale", "")
    if locale and canonical_locale(locale) is None:
        out.append(
            FieldViolation(f"{prefix}locale", "must be a BCP 47 language tag, e.g. de-AT", "LOCALE_INVALID")
        )
    zone = values.get("time_zone", "")
    if zone and zone not in _zones():
        out.append(
            FieldViolation(
                f"{prefix}time_zone", "must be an IANA time zone, e.g. Europe/Vienna", "TIME_ZONE_INVALID"
            )
        )
    return out


def check_profile(values: Mapping[str, str], prefix: str = "user.") -> dict[str, str]:
    """The values normalised (name stripped, locale in canonical case); InvalidArgument with every
    violation otherwise."""
    bad = profile_violations(values, prefix)
    if bad:
        raise InvalidArgument("; ".join(f"{v.field}: {v.description}" for v in bad), violations=bad)
    out = dict(values)
    if "name" in out:
        out["name"] = out["name"].strip()
    if out.get("locale"):
        out["locale"] = canonical_locale(out["locale"]) or out["locale"]
    return out


def update_paths(mask: Iterable[str], values: Mapping[str, str]) -> list[str]:
    """AIP-134: the fields to change are the mask's paths; without a mask, every profile field
    given a non-empty value.  A path that is no profile field is a violation of ``update_mask``
    (email and password have their own methods, the rest is output only)."""
    paths = list(dict.fromkeys(mask))
    if not paths:
        return [f for f in PROFILE_FIELDS if values.get(f)]
    bad = [p for p in paths if p not in PROFILE_FIELDS and p != "*"]
    if bad:
        raise InvalidArgument.field(
            "update_mask",
            f"cannot change {', '.join(bad)}; updatable: {', '.join(PROFILE_FIELDS)}"
            " (the email and password have their own methods)",
            "FIELD_NOT_UPDATABLE",
        )
    return list(PROFILE_FIELDS) if "*" in paths else paths


def updated_profile(user: User, mask: Iterable[str], values: Mapping[str, str]) -> User:
    """The user with the masked profile fields set to ``values`` (validated, normalised)."""
    paths = update_paths(mask, values)
    changes = check_profile({p: values.get(p, "") for p in paths})
    return replace(
        user,
        name=changes.get("name", user.name),
        phone=changes.get("phone", user.phone),
        locale=changes.get("locale", user.locale),
        time_zone=changes.get("time_zone", user.time_zone),
    )
