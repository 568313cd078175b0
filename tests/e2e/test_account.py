"""The owner's account through the REST edge, with the dev stack's SMTP sink: forgot password → mail →
reset → the old sessions are dead → log in with the new password; email verification and its resend;
email and password changes; logout and log out everywhere, with the bound on how long an access token
already issued keeps working; the profile; and that another owner can do none of it."""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import Api, User, eventually, mails_to

pytestmark = pytest.mark.e2e

PASSWORD, NEW_PASSWORD = "correct-horse", "a much better secret"
# an access token already issued stops working within the edge's token cache (EDGE_TOKEN_CACHE_SECONDS,
# 5 s), the bound docs/api.md states; one second of slack for a loaded machine
REVOCATION_BOUND = 5.0 + 1.0


async def _mail_token(api: Api, address: str, kind: str, count: int = 1) -> str:
    """The code of the ``count``-th mail of ``kind`` to ``address`` (waits for it)."""

    async def found() -> str | None:
        mails = [m for m in mails_to(api.stack, address, account=True) if m.message["X-PetPro-Mail"] == kind]
        if len(mails) < count:
            return None
        match = re.search(r'"token": "([A-Za-z0-9_-]+)"', mails[count - 1].message.get_content())
        assert match, mails[count - 1].message.get_content()
        return match.group(1)

    return await eventually(found)


async def _session(api: Api, email: str, password: str = PASSWORD) -> dict[str, Any]:
    r = await api.c.post("/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


async def _refused_within_bound(api: Api, session: dict[str, Any], since: float) -> None:
    """The session's access token is refused (401 TOKEN_REVOKED) within the bound; so is its refresh."""

    async def refused() -> bool | None:
        r = await api.c.get("/v1/me", headers=_bearer(session))
        if r.status_code == 200:
            return None
        assert (r.status_code, r.json()["reason"]) == (401, "TOKEN_REVOKED"), r.text
        return True

    await eventually(refused, timeout=REVOCATION_BOUND + 5)
    assert time.monotonic() - since <= REVOCATION_BOUND
    r = await api.c.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert r.status_code == 401, r.text


def _problem(r: Any, status: int, reason: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert body["reason"] == reason, body
    return body


async def test_forgot_password_mail_reset_old_sessions_dead_new_login(api: Api) -> None:
    owner, bob = await api.user(), await api.user()
    phone, laptop = await _session(api, owner.email), await _session(api, owner.email)
    nobody = f"nobody-{owner.user_id[:8]}@example.com"
    known = await api.c.post("/v1/auth/password-reset", json={"email": owner.email})
    unknown = await api.c.post("/v1/auth/password-reset", json={"email": nobody})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json()) == (200, {})
    token = await _mail_token(api, owner.email, "password-reset")
    assert mails_to(api.stack, nobody, account=True) == []

    confirm = "/v1/auth/password-reset:confirm"
    weak = await api.c.post(confirm, json={"email": owner.email, "token": token, "new_password": "iloveyou1"})
    body = _problem(weak, 400, "WEAK_PASSWORD")
    assert body["violations"][0]["field"] == "new_password"
    other = await api.c.post(confirm, json={"email": bob.email, "token": token, "new_password": NEW_PASSWORD})
    _problem(other, 400, "LINK_TOKEN_OTHER_ACCOUNT")

    since = time.monotonic()
    r = await api.c.post(confirm, json={"email": owner.email, "token": token, "new_password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    for session in (phone, laptop):
        await _refused_within_bound(api, session, since)
    r = await api.c.post("/v1/auth/login", json={"email": owner.email, "password": PASSWORD})
    assert r.status_code == 401
    fresh = await _session(api, owner.email, NEW_PASSWORD)
    me = await api.c.get("/v1/me", headers=_bearer(fresh))
    assert me.json()["user"]["email_verified"] is True  # the reset mail reached the address

    again = await api.c.post(
        confirm, json={"email": owner.email, "token": token, "new_password": "third secret!"}
    )
    _problem(again, 400, "LINK_TOKEN_USED")
    # an old code: one past its 30 minutes
    await api.c.post("/v1/auth/password-reset", json={"email": owner.email})
    late = await _mail_token(api, owner.email, "password-reset", count=2)
    async with await psycopg.AsyncConnection.connect(api.stack.env()["DATABASE_URL"], autocommit=True) as db:
        await db.execute(
            "UPDATE auth.link_tokens SET expires_at = now() - interval '1 second'"
            " WHERE user_id = %s AND used_at IS NULL",
            (owner.user_id,),
        )
    r = await api.c.post(confirm, json={"email": owner.email, "token": late, "new_password": "third secret!"})
    _problem(r, 400, "LINK_TOKEN_EXPIRED")
    # the codes exist in the mails alone: no log of the mesh (services, Envoy's access log) has one
    for log in api.stack.ctx.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert token not in text and late not in text, log


async def test_reset_requests_are_throttled_per_email_known_or_not(api: Api) -> None:
    owner = await api.user()
    for email in (owner.email, f"ghost-{owner.user_id[:8]}@example.com"):
        for _ in range(3):
            assert (await api.c.post("/v1/auth/password-reset", json={"email": email})).status_code == 200
        r = await api.c.post("/v1/auth/password-reset", json={"email": email})
        _problem(r, 429, "THROTTLED")
        assert int(r.headers["retry-after"]) > 0


async def test_verification_resend_and_an_unverified_account_works(api: Api) -> None:
    owner = await api.user()
    first = await _mail_token(api, owner.email, "verify-email")
    me = await api.c.get("/v1/me", headers=owner.auth)
    assert me.status_code == 200 and me.json()["user"]["email_verified"] is False
    await api.pet(owner)  # unverified owners book as anyone else
    r = await api.c.post("/v1/me/email:sendVerification", json={}, headers=owner.auth)
    assert r.status_code == 200, r.text
    second = await _mail_token(api, owner.email, "verify-email", count=2)
    _problem(await api.c.post("/v1/auth/email:verify", json={"token": first}), 400, "LINK_TOKEN_UNKNOWN")
    r = await api.c.post("/v1/auth/email:verify", json={"token": second})
    assert r.status_code == 200 and r.json()["user"]["email_verified"] is True, r.text
    assert (await api.c.get("/v1/me", headers=owner.auth)).json()["user"]["email_verified"] is True
    r = await api.c.post("/v1/me/email:sendVerification", json={}, headers=owner.auth)
    _problem(r, 400, "EMAIL_ALREADY_VERIFIED")


async def test_verification_resends_are_throttled(api: Api) -> None:
    owner = await api.user()
    for _ in range(3):
        r = await api.c.post("/v1/me/email:sendVerification", json={}, headers=owner.auth)
        assert r.status_code == 200, r.text
    _problem(await api.c.post("/v1/me/email:sendVerification", json={}, headers=owner.auth), 429, "THROTTLED")


async def test_change_email_needs_the_password_verifies_again_and_tells_the_old_address(api: Api) -> None:
    owner, bob = await api.user(), await api.user()
    await api.c.post(
        "/v1/auth/email:verify", json={"token": await _mail_token(api, owner.email, "verify-email")}
    )
    new = f"moved-{owner.user_id[:8]}@example.com"
    change = "/v1/me/email:change"
    wrong = await api.c.post(
        change, json={"password": "not-my-password", "new_email": new}, headers=owner.auth
    )
    _problem(wrong, 400, "WRONG_PASSWORD")
    taken = await api.c.post(change, json={"password": PASSWORD, "new_email": bob.email}, headers=owner.auth)
    _problem(taken, 409, "EMAIL_TAKEN")
    r = await api.c.post(change, json={"password": PASSWORD, "new_email": new}, headers=owner.auth)
    assert r.status_code == 200, r.text
    assert (r.json()["user"]["email"], r.json()["user"]["email_verified"]) == (new, False)

    async def notice() -> bool | None:
        return (
            any(
                m.message["X-PetPro-Mail"] == "email-changed"
                for m in mails_to(api.stack, owner.email, account=True)
            )
            or None
        )

    await eventually(notice)
    token = await _mail_token(api, new, "verify-email")
    assert (await api.c.post("/v1/auth/email:verify", json={"token": token})).json()["user"]["email_verified"]
    await _session(api, new)


async def test_logout_one_session_then_everywhere_within_the_bound(api: Api) -> None:
    owner = await api.user()
    phone, laptop = await _session(api, owner.email), await _session(api, owner.email)
    since = time.monotonic()
    r = await api.c.post(
        "/v1/auth/logout", json={"refresh_token": phone["refresh_token"]}, headers=_bearer(phone)
    )
    assert r.status_code == 200, r.text
    await _refused_within_bound(api, phone, since)
    assert (await api.c.get("/v1/me", headers=_bearer(laptop))).status_code == 200  # the other device
    since = time.monotonic()
    r = await api.c.post("/v1/me/sessions:revokeAll", json={}, headers=_bearer(laptop))
    assert r.status_code == 200, r.text
    await _refused_within_bound(api, laptop, since)
    await _refused_within_bound(api, {"access_token": owner.token, "refresh_token": "x.y"}, since)


async def test_change_password_ends_the_other_sessions(api: Api) -> None:
    owner = await api.user()
    here, there = await _session(api, owner.email), await _session(api, owner.email)
    change = "/v1/me/password:change"
    wrong = await api.c.post(
        change, json={"current_password": "guess-guess", "new_password": NEW_PASSWORD}, headers=_bearer(here)
    )
    _problem(wrong, 400, "WRONG_PASSWORD")
    weak = await api.c.post(
        change, json={"current_password": PASSWORD, "new_password": "password123"}, headers=_bearer(here)
    )
    assert _problem(weak, 400, "WEAK_PASSWORD")["violations"][0]["reason"] == "PASSWORD_TOO_COMMON"
    since = time.monotonic()
    r = await api.c.post(
        change, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=_bearer(here)
    )
    assert r.status_code == 200, r.text
    await _refused_within_bound(api, there, since)
    assert (await api.c.get("/v1/me", headers=_bearer(here))).status_code == 200  # this session stays
    await _session(api, owner.email, NEW_PASSWORD)


async def test_profile_get_patch_mask_and_violations(api: Api) -> None:
    email = f"fr-{time.time_ns()}@example.com"
    r = await api.c.post(
        "/v1/auth/register",
        json={"email": email, "password": PASSWORD, "name": "Fleur"},
        headers={"Accept-Language": "fr-ch, fr;q=0.9, en;q=0.5"},
    )
    assert r.status_code == 201 and r.json()["user"]["locale"] == "fr-CH", r.text
    owner = User(email, await api.login(email, PASSWORD), r.json()["user"]["user_id"])
    r = await api.c.patch(
        "/v1/me",
        params={"update_mask": "phone,time_zone"},
        json={"phone": "+41441234567", "time_zone": "Europe/Zurich", "name": "ignored: not in the mask"},
        headers=owner.auth,
    )
    assert r.status_code == 200, r.text
    user = r.json()["user"]
    assert (user["phone"], user["time_zone"], user["name"], user["locale"]) == (
        "+41441234567",
        "Europe/Zurich",
        "Fleur",
        "fr-CH",
    )
    bad = await api.c.patch("/v1/me", json={"phone": "0041 44", "locale": "fr_CH"}, headers=owner.auth)
    body = _problem(bad, 400, "INVALID_ARGUMENT")
    assert {v["field"] for v in body["violations"]} == {"user.phone", "user.locale"}
    mask = await api.c.patch("/v1/me", params={"update_mask": "email"}, json={}, headers=owner.auth)
    assert _problem(mask, 400, "INVALID_ARGUMENT")["violations"][0]["field"] == "update_mask"
    me = (await api.c.get("/v1/me", headers=owner.auth)).json()["user"]
    assert (me["email"], me["phone"]) == (email, "+41441234567")


async def test_another_owner_can_do_none_of_it(api: Api) -> None:
    ana, bob = await api.user(), await api.user()
    anas = await _session(api, ana.email)
    r = await api.c.post("/v1/auth/logout", json={"refresh_token": anas["refresh_token"]}, headers=bob.auth)
    _problem(r, 404, "SESSION_NOT_FOUND")
    r = await api.c.patch("/v1/me", json={"name": "Bob, not Ana"}, headers=bob.auth)
    assert r.status_code == 200 and r.json()["user"]["user_id"] == bob.user_id
    # a user_id in the body is output only: it names nobody
    r = await api.c.patch("/v1/me", json={"user_id": ana.user_id, "name": "Mallory"}, headers=bob.auth)
    assert r.status_code == 200 and r.json()["user"]["user_id"] == bob.user_id
    assert (await api.c.post("/v1/me/sessions:revokeAll", json={}, headers=bob.auth)).status_code == 200
    me = await api.c.get("/v1/me", headers=_bearer(anas))
    assert me.status_code == 200 and me.json()["user"]["name"] == "Ann"  # untouched, still logged in
    for method, path, body in (
        ("GET", "/v1/me", None),
        ("PATCH", "/v1/me", {"name": "x"}),
        ("POST", "/v1/auth/logout", {"refresh_token": anas["refresh_token"]}),
        ("POST", "/v1/me/sessions:revokeAll", {}),
        ("POST", "/v1/me/password:change", {"current_password": "x", "new_password": "y" * 8}),
        ("POST", "/v1/me/email:change", {"password": "x", "new_email": "z@example.com"}),
        ("POST", "/v1/me/email:sendVerification", {}),
    ):
        r = await api.c.request(method, path, json=body)
        assert r.status_code == 401, (method, path, r.text)
