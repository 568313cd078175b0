"""Scheduling by providers, rooms and pets (issue 20) through the REST edge, on the mesh: a new clinic
(no seed data) with vets and a room set up through ClinicAdminService's REST routes, then owners racing
for the same vet, the same room, the same pet, and "any available" under concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from .conftest import Api, User
from .test_clinic_ops import Clinic, add_service, bearer, onboard, platform_token

pytestmark = pytest.mark.e2e

BERLIN = ZoneInfo("Europe/Berlin")
WEEK = [
    {"weekday": f"WEEKDAY_{d}", "open_time": "08:00", "close_time": "18:00"}
    for d in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
]


@pytest.fixture(scope="module")
async def clinic(api: Api) -> Clinic:
    return await onboard(api, await platform_token(api), "Scheduled Paws")


async def add_provider(api: Api, clinic: Clinic, name: str) -> dict[str, Any]:
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/providers",
        headers=bearer(clinic.admin),
        json={"display_name": name, "weekly_hours": WEEK},
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["provider"])


async def add_room(api: Api, clinic: Clinic, name: str, kind: str = "dental room") -> dict[str, Any]:
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/resources",
        headers=bearer(clinic.admin),
        json={"display_name": name, "resource_type": kind},
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["resource"])


async def require(
    api: Api,
    clinic: Clinic,
    svc: dict[str, Any],
    providers: list[str],
    needs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    r = await api.c.patch(
        f"/v1/services/{svc['service_id']}",
        headers=bearer(clinic.admin),
        params={"update_mask": "provider_ids,needs"},
        json={"provider_ids": providers, "needs": needs or []},
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["service"])


def slot_at(days_ahead: int, hour: int, minute: int = 0) -> str:
    day = dt.date.today() + dt.timedelta(days=days_ahead)
    local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BERLIN)
    return local.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


async def owners(api: Api, n: int) -> list[tuple[User, str]]:
    """``n`` owners, each with a pet, registered two at a time (argon2 on a shared 2-core machine); a
    registration that timed out at the edge is tried again (or, if it got through, logged in)."""

    async def one() -> tuple[User, str]:
        email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "password": "correct-horse", "name": "Ann"}
        for _ in range(5):
            r = await api.c.post("/v1/auth/register", json=body)
            if r.status_code in (201, 409):
                break
            assert r.status_code in (503, 504), r.text
        for _ in range(5):
            login = await api.c.post("/v1/auth/login", json={"email": email, "password": "correct-horse"})
            if login.status_code == 200:
                break
            assert login.status_code in (503, 504), login.text
        token = login.json()["access_token"]
        me = await api.c.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        u = User(email, token, me.json()["user"]["user_id"])
        return u, await api.pet(u)

    out: list[tuple[User, str]] = []
    for i in range(0, n, 2):
        out += await asyncio.gather(*(one() for _ in range(min(2, n - i))))
    return out


async def race(api: Api, attempts: list[tuple[User, str, str, str, str]]) -> list[httpx.Response]:
    """Every (owner, pet, service, slot, provider) booking at once."""

    async def book(owner: User, pet: str, service_id: str, slot: str, provider: str) -> httpx.Response:
        body = {"service_id": service_id, "pet_id": pet, "slot": slot, "payment_method": "card"}
        if provider:
            body["provider_id"] = provider
        return await api.c.post(
            "/v1/bookings", json=body, headers={**owner.auth, "Idempotency-Key": slot + pet}
        )

    return list(await asyncio.gather(*(book(*a) for a in attempts)))


def held(responses: list[httpx.Response]) -> list[dict[str, Any]]:
    for r in responses:
        assert r.status_code in (201, 409), r.text  # a clear conflict, never a 5xx
    return [r.json() for r in responses if r.status_code == 201]


@pytest.mark.timeout(900)  # 200 registrations (argon2) on a shared 2-core machine come first
async def test_200_owners_racing_for_one_vet_across_two_services_get_one_hold(api: Api, clinic: Clinic):
    weber = await add_provider(api, clinic, "Dr Weber")
    checkup = await require(
        api, clinic, await add_service(api, clinic, name="Check-up"), [weber["provider_id"]]
    )
    long = await add_service(api, clinic, name="Long consult", duration_minutes=60)
    long = await require(api, clinic, long, [weber["provider_id"]])
    people = await owners(api, 200)
    slot = slot_at(3, 10)
    attempts = [
        (u, pet, (checkup if i % 2 else long)["service_id"], slot, weber["provider_id"] if i % 3 else "")
        for i, (u, pet) in enumerate(people)
    ]
    responses = await race(api, attempts)
    won = held(responses)
    assert len(won) == 1
    assert won[0]["provider"] == {"provider_id": weber["provider_id"], "display_name": "Dr Weber"}
    reasons = {r.json()["reason"] for r in responses if r.status_code == 409}
    assert reasons <= {"PROVIDER_TAKEN", "SLOT_UNAVAILABLE"}, reasons
    r = await api.c.get(f"/v1/services/{checkup['service_id']}/availability", params={"date": slot[:10]})
    at_slot = [s for s in r.json()["slots"] if s["start_time"] == slot]
    assert at_slot and not at_slot[0].get("free"), at_slot  # the day view agrees: Weber is taken


async def test_one_room_shared_by_two_services_is_held_once(api: Api, clinic: Clinic):
    vets = [(await add_provider(api, clinic, f"Dr R{i}"))["provider_id"] for i in range(2)]
    await add_room(api, clinic, "Surgery room", "surgery room")
    need = [{"resource_type": "surgery room", "quantity": 1}]
    dental = await require(
        api, clinic, await add_service(api, clinic, name="Dental cleaning"), vets[:1], need
    )
    surgery = await require(
        api, clinic, await add_service(api, clinic, name="Surgery", duration_minutes=60), vets[1:], need
    )
    people = await owners(api, 40)
    slot = slot_at(4, 11)
    attempts = [
        (u, pet, (dental if i % 2 else surgery)["service_id"], slot, "") for i, (u, pet) in enumerate(people)
    ]
    responses = await race(api, attempts)
    won = held(responses)
    assert len(won) == 1 and [x["resource_type"] for x in won[0]["resources"]] == ["surgery room"]
    assert {r.json()["reason"] for r in responses if r.status_code == 409} <= {
        "RESOURCE_TAKEN",
        "PROVIDER_TAKEN",
        "SLOT_UNAVAILABLE",
    }


async def test_the_same_pet_from_two_sessions_into_overlapping_slots_is_held_once(api: Api, clinic: Clinic):
    vets = [(await add_provider(api, clinic, f"Dr P{i}"))["provider_id"] for i in range(2)]
    a = await require(api, clinic, await add_service(api, clinic, name="Grooming"), vets[:1])
    b = await require(api, clinic, await add_service(api, clinic, name="Bath", duration_minutes=60), vets[1:])
    [(owner, pet)] = await owners(api, 1)
    second = User(owner.email, await api.login(owner.email, "correct-horse"), owner.user_id)  # a 2nd phone
    attempts = [
        (session, pet, svc["service_id"], slot_at(5, hh, mm), "")
        for _ in range(10)
        for session, svc, (hh, mm) in ((owner, a, (9, 30)), (second, b, (9, 0)))
    ]
    responses = await race(api, attempts)
    won = held(responses)
    assert len({w["lock_id"] for w in won}) == 1  # retries of the winner's key replay its hold
    assert "PET_BUSY" in {r.json()["reason"] for r in responses if r.status_code == 409}


async def test_any_vet_under_100_concurrent_requests_holds_each_of_3_vets_once(api: Api, clinic: Clinic):
    vets = [await add_provider(api, clinic, f"Dr A{i}") for i in range(3)]
    svc = await require(
        api, clinic, await add_service(api, clinic, name="Vaccination"), [v["provider_id"] for v in vets]
    )
    slot = slot_at(6, 14)
    r = await api.c.get(f"/v1/services/{svc['service_id']}/availability", params={"date": slot[:10]})
    [offered] = [s for s in r.json()["slots"] if s["start_time"] == slot]
    assert len(offered["free_providers"]) == 3
    people = await owners(api, 100)
    responses = await race(api, [(u, pet, svc["service_id"], slot, "") for u, pet in people])
    won = held(responses)
    assert len(won) == 3
    assert {w["provider"]["provider_id"] for w in won} == {v["provider_id"] for v in vets}
    assert {w["assignment"] for w in won} == {"ASSIGNMENT_RULE_ANY_FEWEST_THAT_DAY"}
    r = await api.c.get(f"/v1/services/{svc['service_id']}/availableDays", params={"month": slot[:7]})
    assert r.status_code == 200, r.text
    assert any(d["has_free_slot"] for d in r.json()["days"])


async def test_admin_bad_input_and_archiving_a_booked_vet(api: Api, clinic: Clinic):
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/providers",
        headers=bearer(clinic.admin),
        json={
            "display_name": "Dr Overlap",
            "weekly_hours": [
                {"weekday": "WEEKDAY_MONDAY", "open_time": "08:00", "close_time": "12:00"},
                {"weekday": "WEEKDAY_MONDAY", "open_time": "11:00", "close_time": "13:00"},
            ],
        },
    )
    assert (r.status_code, r.json()["reason"]) == (400, "INVALID_ARGUMENT"), r.text
    svc = await add_service(api, clinic, name="X-ray")
    r = await api.c.patch(
        f"/v1/services/{svc['service_id']}",
        headers=bearer(clinic.admin),
        params={"update_mask": "needs"},
        json={"needs": [{"resource_type": "x-ray machine", "quantity": 1}]},
    )
    assert r.status_code == 400, r.text
    vet = await add_provider(api, clinic, "Dr Busy")
    svc = await require(api, clinic, svc, [vet["provider_id"]])
    [(owner, pet)] = await owners(api, 1)
    b = await api.book(owner, pet, slot_at(7, 9), service_id=svc["service_id"])
    assert b.status_code == 201, b.text
    assert (await api.pay(b.json()["payment_url"])).status_code == 200
    await api.wait_status(owner, b.json()["lock_id"], "CONFIRMED")
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/providers/{vet['provider_id']}:archive",
        headers=bearer(clinic.admin),
        json={},
    )
    assert (r.status_code, r.json()["reason"]) == (400, "HAS_UPCOMING_BOOKINGS"), r.text
    day = slot_at(7, 9)[:10]  # the booking's UTC date
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/providers/{vet['provider_id']}/timeOff",
        headers=bearer(clinic.admin),
        json={"start_time": f"{day}T00:00:00Z", "end_time": f"{day}T23:00:00Z", "reason": "Conference"},
    )
    assert r.status_code == 201, r.text
    assert len(r.json()["affected_bookings"]) == 1
