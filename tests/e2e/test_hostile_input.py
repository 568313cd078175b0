"""Found from outside, through the real mesh: hostile input is a 4xx naming what is wrong, never a
5xx, and a protected route answers 401 before it looks at the body."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import CHECKUP, Api

pytestmark = pytest.mark.e2e

# a body that violates every rule it can: wrong types, too long, control characters
HOSTILE_BODY = {
    "name": "\u0000" * 70,
    "species": 12345,
    "slot": "not a time",
    "service_id": "x",
    "token": "",
    "platform": "nope",
}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path)


async def test_every_protected_route_is_401_without_a_token_whatever_the_body(api: Api):
    doc = (await api.c.get("/openapi.json")).json()
    checked = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if not op.get("security"):
                continue
            for body in (None, HOSTILE_BODY, {"page_size": -1}):
                r = await api.c.request(
                    method.upper(),
                    _concrete(path),
                    json=body,
                    params={"page_size": "-5"} if method == "get" else None,
                )
                assert r.status_code == 401, (method, path, body, r.text)
                assert r.json()["violations"] == []  # nothing about the schema leaks
            checked.append(f"{method} {path}")
    assert {"post /v1/pets", "post /v1/bookings", "get /v1/bookings/{booking_id}"} <= set(checked)


async def test_nul_and_control_characters_are_400_naming_the_field_not_an_outage(api: Api):
    owner = await api.user()
    for name in ("Rex\u0000", "Rex\u001b[2J", "Rex\nDrop"):
        r = await api.c.post("/v1/pets", headers=owner.auth, json={"name": name, "species": "SPECIES_DOG"})
        assert r.status_code == 400, r.text
        assert [v["field"] for v in r.json()["violations"]] == ["name"]
    r = await api.c.post(
        "/v1/pets", headers=owner.auth, json={"name": "Rex", "breed": "x\u0000", "species": "SPECIES_DOG"}
    )
    assert (r.status_code, [v["field"] for v in r.json()["violations"]]) == (400, ["breed"])
    # public routes too (query parameters reach the booking service directly)
    r = await api.c.get(f"/v1/services/{CHECKUP}/availability", params={"date": "2026-12-10\u0000"})
    assert r.status_code == 400, r.text
    # the same name without the control character works
    r = await api.c.post("/v1/pets", headers=owner.auth, json={"name": "Rex", "species": "SPECIES_DOG"})
    assert r.status_code == 201, r.text


async def test_invalid_utf8_and_over_long_values_are_400(api: Api):
    owner = await api.user()
    r = await api.c.post(
        "/v1/pets",
        headers={**owner.auth, "content-type": "application/json"},
        content=b'{"name":"R\xffx","species":"SPECIES_DOG"}',
    )
    assert r.status_code == 400, r.text
    r = await api.c.post("/v1/pets", headers=owner.auth, json={"name": "R" * 61, "species": "SPECIES_DOG"})
    assert (r.status_code, [v["field"] for v in r.json()["violations"]]) == (400, ["name"])


async def test_illegal_header_names_never_reach_grpc(api: Api):
    owner = await api.user()
    r = await api.c.get("/v1/pets", headers={**owner.auth, "|": "x", "x-Thing-bin": "AAA"})
    assert r.status_code == 200, r.text
