"""Authentication and authorisation at the edge, and bad input on every route: always a 4xx
problem+json naming the field, never a 5xx."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from zoneinfo import ZoneInfo

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from petpro import keys
from tests.e2e.conftest import CHECKUP, HAPPY_PAWS, Api

pytestmark = pytest.mark.e2e


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _status(api: Api, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}".strip()} if token is not None else {}
    r = await api.c.get("/v1/pets", headers=headers)
    assert r.headers["content-type"].startswith("application/problem+json") or r.status_code == 200
    return r.status_code, r.json().get("reason", "")


async def test_missing_malformed_forged_none_and_expired_tokens_are_401(api: Api):
    user = await api.user()
    assert (await _status(api, user.token))[0] == 200
    claims = _claims(user.token)
    signing = keys.key_files(api.stack.ctx.home / "keys" / "auth-signing")[-1]  # the newest key signs
    mesh_key = serialization.load_pem_private_key(signing.read_bytes(), password=None)
    expired = jwt.encode(
        {**claims, "iat": int(time.time()) - 3600, "exp": int(time.time()) - 60},
        mesh_key,
        algorithm="EdDSA",
        headers={"kid": jwt.get_unverified_header(user.token)["kid"]},
    )
    cases = {
        None: "TOKEN_MISSING",
        "   ": "TOKEN_MISSING",
        "not.a.jwt": "TOKEN_INVALID",
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.": "TOKEN_INVALID",
        jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA"): "TOKEN_INVALID",
        expired: "TOKEN_EXPIRED",
    }
    for token, reason in cases.items():
        assert await _status(api, token) == (401, reason), token


def _forged_and_expired(api: Api, token: str) -> dict[str, str]:
    """Well-formed tokens the edge must refuse: signed by a stranger's key under the mesh key's kid,
    signed by the mesh key but expired, and one with alg none."""
    claims, kid = _claims(token), jwt.get_unverified_header(token)["kid"]
    signing = keys.key_files(api.stack.ctx.home / "keys" / "auth-signing")[-1]
    mesh_key = serialization.load_pem_private_key(signing.read_bytes(), password=None)
    now = int(time.time())
    return {
        jwt.encode(
            claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
        ): "TOKEN_INVALID",
        jwt.encode(
            {**claims, "iat": now - 3600, "exp": now - 120}, mesh_key, algorithm="EdDSA", headers={"kid": kid}
        ): "TOKEN_EXPIRED",
        jwt.encode(
            {**claims, "aud": "someone-else"}, mesh_key, algorithm="EdDSA", headers={"kid": kid}
        ): "TOKEN_INVALID",
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.": "TOKEN_INVALID",
    }


async def test_a_forged_or_expired_token_is_401_before_the_body_is_read(api: Api):
    """Envoy verifies the token itself (jwt_authn, before the transcoder): a forged or expired token
    with a body that is not even JSON is a 401, not the transcoder's 400 (nothing about the schema)."""
    user = await api.user()
    bad_body = b'{"name": 12, "species": ['
    for token, reason in _forged_and_expired(api, user.token).items():
        for method, path in (
            ("POST", "/v1/pets"),
            ("POST", "/v1/bookings"),
            ("PATCH", "/v1/me/notification-preferences"),
        ):
            r = await api.c.request(
                method,
                path,
                content=bad_body,
                headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
            )
            assert r.status_code == 401, (reason, path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["reason"] == reason, (path, r.text)
            assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
            assert "Jwt" not in r.text and "realm" not in r.text  # Envoy's own words are not shown
    # a valid token still reaches the transcoder (400 naming the problem), and public routes ignore tokens
    r = await api.c.post(
        "/v1/pets", content=bad_body, headers={**user.auth, "content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    r = await api.c.get(
        "/v1/pets", headers={"Authorization": f"bearer  {user.token}"}
    )  # the scheme's case is free
    assert r.status_code == 200, r.text
    forged = next(iter(_forged_and_expired(api, user.token)))
    r = await api.c.get("/v1/clinics", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 200, r.text


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_session(api: Api):
    email = f"r-{uuid.uuid4().hex[:8]}@example.com"
    await api.c.post("/v1/auth/register", json={"email": email, "password": "correct-horse", "name": "R"})
    login = (await api.c.post("/v1/auth/login", json={"email": email, "password": "correct-horse"})).json()
    assert (login["token_type"], login["expires_in"]) == ("Bearer", 900)
    fresh = await api.c.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert fresh.status_code == 200
    reuse = await api.c.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert reuse.status_code == 401
    # theft detected: the session is revoked, so even the newest access token stops working
    # (the edge may cache a validation for a few seconds; a fresh token was never validated before)
    assert (await _status(api, fresh.json()["access_token"]))[0] == 401


async def test_wrong_password_and_duplicate_email(api: Api):
    user = await api.user()
    r = await api.c.post("/v1/auth/login", json={"email": user.email, "password": "wrong-horse"})
    assert (r.status_code, r.json()["reason"]) == (401, "INVALID_CREDENTIALS")
    r = await api.c.post(
        "/v1/auth/register", json={"email": user.email.upper(), "password": "correct-horse", "name": "Dup"}
    )
    assert (r.status_code, r.json()["reason"]) == (409, "EMAIL_TAKEN")


async def test_other_users_pets_bookings_and_reservations_are_out_of_reach(api: Api):
    a, b = await api.user(), await api.user()
    pet_a = await api.pet(a)
    held = await api.book(a, pet_a, await api.unique_slot())
    assert held.status_code == 201
    lock = held.json()["lock_id"]

    r = await api.book(b, pet_a, await api.unique_slot())  # b books with a's pet
    assert (r.status_code, r.json()["reason"]) == (403, "PET_NOT_OWNED")
    assert (await api.c.get(f"/v1/reservations/{lock}", headers=b.auth)).status_code == 404
    await api.pay(held.json()["payment_url"])
    booking_id = (await api.wait_status(a, lock, "CONFIRMED"))["booking_id"]
    assert (await api.c.get(f"/v1/bookings/{booking_id}", headers=b.auth)).status_code == 404
    assert (await api.c.get("/v1/pets", headers=b.auth)).json()["pets"] == []
    assert (await api.c.get("/v1/bookings", headers=b.auth)).json()["bookings"] == []


BAD_REQUESTS = [
    # (method, path, json body or query, expected status, a field the problem must name or None)
    ("POST", "/v1/auth/register", {"email": "nope", "password": "short", "name": ""}, 400, "email"),
    ("POST", "/v1/auth/register", {"email": "a@b.co", "password": "x" * 200, "name": "A"}, 400, "password"),
    ("POST", "/v1/auth/login", {"email": "", "password": ""}, 400, "email"),
    ("POST", "/v1/auth/refresh", {"refresh_token": ""}, 400, "refresh_token"),
    ("POST", "/v1/auth/refresh", {"refresh_token": "garbage"}, 401, None),
    ("GET", "/v1/clinics", {"page_size": "500"}, 400, "page_size"),
    ("GET", "/v1/clinics", {"page_token": "not-a-token"}, 400, "page_token"),
    ("GET", "/v1/clinics", {"colour": "blue"}, 400, None),
    ("GET", "/v1/clinics/not-a-uuid/services", None, 400, "clinic_id"),
    ("GET", f"/v1/clinics/{uuid.uuid4()}/services", None, 404, None),
    ("GET", f"/v1/services/{CHECKUP}/availability", {"date": "2030-02-30"}, 400, "date"),
    ("GET", f"/v1/services/{CHECKUP}/availability", {"date": "tomorrow"}, 400, "date"),
    ("GET", f"/v1/services/{uuid.uuid4()}/availability", {"date": "2030-01-07"}, 404, None),
    ("POST", "/v1/pets", {"name": "", "species": "SPECIES_DOG"}, 400, "name"),
    ("POST", "/v1/pets", {"name": "Rex", "species": "SPECIES_DRAGON"}, 400, "species"),
    (
        "POST",
        "/v1/pets",
        {"name": "Rex", "species": "SPECIES_CAT", "birth_date": "2999-01-01"},
        400,
        "birth_date",
    ),
    ("GET", "/v1/pets", {"page_size": "-1"}, 400, "page_size"),
    (
        "POST",
        "/v1/bookings",
        {"service_id": "x", "pet_id": "y", "slot": "2030-01-07T08:00:00Z", "payment_method": "card"},
        400,
        "service_id",
    ),
    (
        "POST",
        "/v1/bookings",
        {"service_id": CHECKUP, "pet_id": str(uuid.uuid4()), "slot": "yesterday", "payment_method": "card"},
        400,
        "slot",
    ),
    (
        "POST",
        "/v1/bookings",
        {
            "service_id": CHECKUP,
            "pet_id": str(uuid.uuid4()),
            "slot": "2030-01-07T08:00:00Z",
            "payment_method": "cash",
        },
        400,
        "payment_method",
    ),
    (
        "POST",
        "/v1/bookings",
        {  # a service that does not exist: 404 before any rule of the slot (an unknown pet is found
            # missing by the hold itself, after the slot's rules: tests/unit/test_booking_handlers.py)
            "service_id": str(uuid.uuid4()),
            "pet_id": str(uuid.uuid4()),
            "slot": "2030-01-07T08:00:00Z",
            "payment_method": "card",
        },
        404,
        None,
    ),
    ("GET", "/v1/reservations/not-a-uuid", None, 400, "lock_id"),
    ("GET", f"/v1/reservations/{uuid.uuid4()}", None, 404, None),
    ("GET", "/v1/bookings/not-a-uuid", None, 400, "booking_id"),
    ("GET", f"/v1/bookings/{uuid.uuid4()}", None, 404, None),
    ("GET", "/v1/bookings", {"page_size": "1000"}, 400, "page_size"),
    ("GET", "/v1/me/notifications", {"page_size": "1000"}, 400, "page_size"),
    ("POST", "/v1/me/devices", {"platform": "DEVICE_PLATFORM_UNSPECIFIED", "token": ""}, 400, "platform"),
    ("GET", "/v1/nothing-here", None, 404, None),
]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "field"),
    BAD_REQUESTS,
    ids=[f"{m} {p} {i}" for i, (m, p, *_) in enumerate(BAD_REQUESTS)],
)
async def test_bad_input_is_a_clear_4xx(api: Api, method, path, payload, status, field):
    user = await _shared_user(api)
    if method == "GET":
        r = await api.c.get(path, params=payload, headers=user.auth)
    else:
        r = await api.c.post(path, json=payload, headers=user.auth)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == status and problem["reason"] and problem["request_id"]
    if field:
        assert field in {v["field"] for v in problem["violations"]}, problem


def _berlin(weekday: int, hour: int, minute: int) -> str:
    """The next such local time at Happy Paws (Europe/Berlin), 8 to 14 days ahead, as RFC 3339 UTC."""
    day = dt.date.today() + dt.timedelta(days=8)
    while day.weekday() != weekday:
        day += dt.timedelta(days=1)
    local = dt.datetime.combine(day, dt.time(hour, minute), ZoneInfo("Europe/Berlin"))
    return local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_slots_off_the_grid_outside_hours_past_or_too_far_name_the_slot(api: Api):
    user = await _shared_user(api)
    pet = await api.pet(user)
    for slot, reason in (
        (_berlin(0, 9, 10), "SLOT_OFF_GRID"),  # Monday 09:10: the grid is 09:00, 09:30
        (_berlin(6, 10, 0), "SLOT_OUTSIDE_HOURS"),  # Sunday: closed
        (_berlin(0, 12, 30), "SLOT_OUTSIDE_HOURS"),  # Monday lunch break
        ("2020-01-06T08:00:00Z", "SLOT_IN_PAST"),
        ("2099-01-05T08:00:00Z", "SLOT_TOO_FAR"),
    ):
        r = await api.book(user, pet, slot)
        assert r.status_code == 400, r.text
        assert {(v["field"], v["reason"]) for v in r.json()["violations"]} == {("slot_start_time", reason)}


async def test_malformed_json_and_oversized_bodies(api: Api):
    user = await _shared_user(api)
    r = await api.c.post(
        "/v1/pets", content=b"{not json", headers={**user.auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    r = await api.c.post("/v1/pets", content=b'{"name": "' + b"x" * 200_000 + b'"}', headers=user.auth)
    assert r.status_code == 413


async def test_public_catalog_routes_need_no_token(api: Api):
    clinics = (await api.c.get("/v1/clinics")).json()["clinics"]
    assert HAPPY_PAWS in {c["clinic_id"] for c in clinics}
    services = (await api.c.get(f"/v1/clinics/{HAPPY_PAWS}/services")).json()["services"]
    assert {s["service_id"]: s["duration_minutes"] for s in services}[CHECKUP] == 30
    assert (await api.c.get("/openapi.json")).json()["openapi"].startswith("3.")


_user_cache: dict[str, object] = {}


async def _shared_user(api: Api):  # type: ignore[no-untyped-def]
    if "u" not in _user_cache:
        _user_cache["u"] = await api.user()
    return _user_cache["u"]
