"""The owner's account rules without I/O: the password policy (length, the common-passwords list, the
email), profile fields (E.164, BCP 47, IANA), the AIP-134 update mask, the locale from an
Accept-Language header, and when a mailed link is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from auth_svc.adapters.common_passwords import load_common_passwords
from auth_svc.domain import (
    PASSWORD_RESET,
    LinkToken,
    LinkTokenInvalid,
    PasswordPolicy,
    User,
    canonical_locale,
    check_profile,
    locale_from_accept_language,
    updated_profile,
)
from petpro.errors import InvalidArgument

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)


def test_the_shipped_list_holds_the_10000_most_common_passwords() -> None:
    common = load_common_passwords()
    assert len(common) == 10_000
    assert {"123456", "password", "qwerty", "iloveyou", "football"} <= common
    assert "#1bitch" in common  # a password may start with "#"; comments start with "# "
    assert all(p == p.lower().strip() and not p.startswith("# ") for p in common)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "PASSWORD_TOO_SHORT"),
        ("x" * 129, "PASSWORD_TOO_LONG"),
        ("password", "PASSWORD_TOO_COMMON"),
        ("Password1 ", "PASSWORD_TOO_COMMON"),  # compared lower-cased and stripped
        ("iloveyou", "PASSWORD_TOO_COMMON"),
        ("anabanana-secret", "PASSWORD_CONTAINS_EMAIL"),
        ("anabanana@example.test", "PASSWORD_CONTAINS_EMAIL"),
    ],
)
def test_weak_passwords_are_refused_with_their_reason(password: str, reason: str) -> None:
    policy = PasswordPolicy(load_common_passwords())
    with pytest.raises(InvalidArgument) as exc:
        policy.check(password, email="anabanana@example.test", field="new_password")
    assert exc.value.reason == "WEAK_PASSWORD"
    [violation] = exc.value.violations
    assert (violation.field, violation.reason) == ("new_password", reason)


def test_a_good_password_passes() -> None:
    PasswordPolicy(load_common_passwords()).check("correct horse battery", email="ana@example.test")


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("de-at", "de-AT"),
        ("EN", "en"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("sl-rozaj-biske", "sl-rozaj-biske"),
        ("en-US-x-twain", "en-US-x-twain"),
        ("de_AT", None),
        ("englishman", None),
        ("12", None),
        ("", None),
        ("en-", None),
    ],
)
def test_bcp47_tags(tag: str, canonical: str | None) -> None:
    assert canonical_locale(tag) == canonical


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("de-AT,de;q=0.9,en;q=0.8", "de-AT"),
        ("en;q=0.5, fr-ch", "fr-CH"),
        ("*, it;q=0.4", "it"),
        ("xx_bad;q=1, pt-br;q=0.3", "pt-BR"),
        ("es;q=0", ""),
        ("", ""),
        ("en;q=abc", ""),
    ],
)
def test_the_locale_is_the_most_preferred_well_formed_language(header: str, locale: str) -> None:
    assert locale_from_accept_language(header) == locale


def test_profile_fields_each_say_what_is_wrong() -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_profile({"name": " ", "phone": "0664 123", "locale": "de_AT", "time_zone": "Mars/Olympus"})
    assert [(v.field, v.reason) for v in exc.value.violations] == [
        ("user.name", "NAME_INVALID"),
        ("user.phone", "PHONE_INVALID"),
        ("user.locale", "LOCALE_INVALID"),
        ("user.time_zone", "TIME_ZONE_INVALID"),
    ]
    assert check_profile(
        {"name": " Ana ", "phone": "+43664123456", "locale": "de-at", "time_zone": "UTC"}
    ) == {
        "name": "Ana",
        "phone": "+43664123456",
        "locale": "de-AT",
        "time_zone": "UTC",
    }
    assert check_profile({"phone": "", "locale": "", "time_zone": ""}) == {
        "phone": "",
        "locale": "",
        "time_zone": "",
    }
    for phone in ("+0123456789", "+12345", "+1234567890123456", "43664123456"):
        with pytest.raises(InvalidArgument):
            check_profile({"phone": phone})


def ana() -> User:
    return User(
        uuid.uuid4(),
        "ana@example.test",
        "Ana",
        "hash",
        phone="+43664123456",
        locale="de-AT",
        time_zone="Europe/Vienna",
    )


def test_the_mask_names_the_fields_and_empty_values_clear() -> None:
    user = ana()
    changed = updated_profile(user, ["phone", "name"], {"name": "Ana B", "phone": "", "locale": "fr"})
    assert (changed.name, changed.phone, changed.locale, changed.time_zone) == (
        "Ana B",
        "",
        "de-AT",
        "Europe/Vienna",
    )


def test_without_a_mask_the_non_empty_fields_change() -> None:
    user = ana()
    changed = updated_profile(user, [], {"name": "", "phone": "", "locale": "fr-fr", "time_zone": ""})
    assert (changed.name, changed.phone, changed.locale, changed.time_zone) == (
        "Ana",
        "+43664123456",
        "fr-FR",
        "Europe/Vienna",
    )


def test_the_mask_refuses_fields_that_are_not_the_profiles() -> None:
    for path in ("email", "roles", "user_id", "password_hash", "nmae"):
        with pytest.raises(InvalidArgument) as exc:
            updated_profile(ana(), ["name", path], {"name": "Ana"})
        [violation] = exc.value.violations
        assert (violation.field, violation.reason) == ("update_mask", "FIELD_NOT_UPDATABLE")
    with pytest.raises(InvalidArgument) as exc:
        updated_profile(ana(), ["*"], {"name": ""})  # "*": every profile field, so the name too
    assert exc.value.violations[0].field == "user.name"


def test_a_link_is_refused_used_expired_or_for_another_account() -> None:
    owner = uuid.uuid4()
    link = LinkToken(
        uuid.uuid4(), owner, PASSWORD_RESET, "ana@example.test", "h", NOW + timedelta(minutes=30), NOW
    )
    link.check_usable(NOW, user_id=owner, email="ana@example.test")
    cases = [
        (NOW + timedelta(minutes=30), {}, "LINK_TOKEN_EXPIRED"),
        (NOW, {"user_id": uuid.uuid4()}, "LINK_TOKEN_OTHER_ACCOUNT"),
        (NOW, {"email": "bob@example.test"}, "LINK_TOKEN_OTHER_ACCOUNT"),
    ]
    for now, who, reason in cases:
        with pytest.raises(LinkTokenInvalid) as exc:
            link.check_usable(now, **who)  # type: ignore[arg-type]
        assert exc.value.reason == reason
    link.used_at = NOW
    with pytest.raises(LinkTokenInvalid) as exc:
        link.check_usable(NOW)
    assert exc.value.reason == "LINK_TOKEN_USED"
