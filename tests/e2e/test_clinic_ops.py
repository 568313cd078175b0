"""Clinic operations through the REST edge, on the mesh, with no seed data used: a platform admin
creates a clinic, its admin is invited by email, staff and services are added, hours and closures set,
an owner books, staff see the schedule.  Plus the role matrix, bad input, etags, service accounts."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from petpro_dev.admin import create_platform_admin

from .conftest import Api, User, eventually, mails_to
from .test_dashboard import browser as chromium  # noqa: F401  (the Chromium fixture, used by name)
from .test_dashboard import open_dashboard, sign_in

pytestmark = pytest.mark.e2e

BERLIN = ZoneInfo("Europe/Berlin")
EVERY_DAY = [
    {"weekday": f"WEEKDAY_{d}", "open_time": "08:00", "close_time": "18:00"}
    for d in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
]


def _email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}@clinic.example"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Clinic:
    clinic_id: str
    admin: str  # access tokens
    staff: str
    staff_user_id: str


async def platform_token(api: Api) -> str:
    email, password = _email("root"), "platform-secret-1"
    create_platform_admin(email, password, {**os.environ, **api.stack.env()})
    return await api.login(email, password)


async def accept_invitation(api: Api, email: str, password: str = "clinic-pass-1") -> dict[str, Any]:
    async def invited() -> str | None:
        for m in mails_to(api.stack, email):
            found = re.search(r'"token": "([A-Za-z0-9_-]+)"', m.body())
            if found:
                return found[1]
        return None

    token = await eventually(invited)
    r = await api.c.post("/v1/invitations:accept", json={"token": token, "password": password, "name": "Vet"})
    assert r.status_code == 200, r.text
    again = await api.c.post(
        "/v1/invitations:accept", json={"token": token, "password": password, "name": "Vet"}
    )
    assert (again.status_code, again.json()["reason"]) == (400, "INVITATION_INVALID")  # single use
    return dict(r.json()["user"])


async def onboard(api: Api, root: str, name: str = "Paws & Claws") -> Clinic:
    r = await api.c.post(
        "/v1/clinics",
        headers=bearer(root),
        json={
            "name": name,
            "time_zone": "Europe/Berlin",
            "address": "Hauptstr. 1, Berlin",
            "phone": "+49 30 555 0100",
            "email": "desk@paws.example",
            "opening_hours": EVERY_DAY,
        },
    )
    assert r.status_code == 201, r.text
    clinic_id = r.json()["clinic"]["clinic_id"]
    admin_email, staff_email = _email("admin"), _email("staff")
    r = await api.c.post(
        f"/v1/clinics/{clinic_id}/invitations",
        headers=bearer(root),
        json={"email": admin_email, "role": "CLINIC_ROLE_ADMIN"},
    )
    assert r.status_code == 201, r.text
    await accept_invitation(api, admin_email)
    admin = await api.login(admin_email, "clinic-pass-1")
    r = await api.c.post(
        f"/v1/clinics/{clinic_id}/invitations",
        headers=bearer(admin),
        json={"email": staff_email, "role": "CLINIC_ROLE_STAFF"},
    )
    assert r.status_code == 201, r.text
    staff_user = await accept_invitation(api, staff_email)
    return Clinic(clinic_id, admin, await api.login(staff_email, "clinic-pass-1"), staff_user["user_id"])


async def add_service(api: Api, clinic: Clinic, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "Cat check-up",
        "duration_minutes": 30,
        "price": {"amount_minor": 4000, "currency": "EUR"},
        "capacity": 1,
        **fields,
    }
    r = await api.c.post(f"/v1/clinics/{clinic.clinic_id}/services", headers=bearer(clinic.admin), json=body)
    assert r.status_code == 201, r.text
    return dict(r.json()["service"])


def _day(days_ahead: int) -> dt.date:
    return dt.date.today() + dt.timedelta(days=days_ahead)


async def free_slots(api: Api, service_id: str, day: dt.date) -> list[str]:
    r = await api.c.get(f"/v1/services/{service_id}/availability", params={"date": day.isoformat()})
    assert r.status_code == 200, r.text
    return [s["start_time"] for s in r.json()["slots"] if s["free"]]


async def book_and_pay(api: Api, owner: User, pet: str, service_id: str, slot: str) -> str:
    r = await api.book(owner, pet, slot, service_id=service_id)
    assert r.status_code == 201, r.text
    assert (await api.pay(r.json()["payment_url"])).status_code == 200
    return str((await api.wait_status(owner, r.json()["lock_id"], "CONFIRMED"))["booking_id"])


@pytest.fixture(scope="module")
async def root(api: Api) -> str:
    return await platform_token(api)


@pytest.fixture(scope="module")
async def clinic(api: Api, root: str) -> Clinic:
    return await onboard(api, root)


@pytest.fixture(scope="module")
async def other(api: Api, root: str) -> Clinic:
    return await onboard(api, root, "Other Vets")


async def test_new_clinic_is_staffed_given_services_and_booked_through_the_api(api: Api, clinic: Clinic):
    r = await api.c.get(f"/v1/clinics/{clinic.clinic_id}/staff", headers=bearer(clinic.staff))
    assert r.status_code == 200, r.text
    assert sorted(m["role"] for m in r.json()["members"]) == ["CLINIC_ROLE_ADMIN", "CLINIC_ROLE_STAFF"]
    svc = await add_service(api, clinic, species_allowed=["SPECIES_CAT"], min_notice_minutes=60)
    assert svc["active"] and svc["etag"]
    key = str(uuid.uuid4())  # a create retried with its request_id (AIP-155) answers the first service
    body = {
        "name": "Retry-safe",
        "duration_minutes": 20,
        "price": {"amount_minor": 900, "currency": "EUR"},
        "capacity": 1,
    }
    first, again = [
        await api.c.post(
            f"/v1/clinics/{clinic.clinic_id}/services",
            params={"request_id": key},
            headers=bearer(clinic.admin),
            json=body,
        )
        for _ in range(2)
    ]
    assert first.json()["service"]["service_id"] == again.json()["service"]["service_id"], (
        first.text,
        again.text,
    )
    r = await api.c.post(
        f"/v1/services/{first.json()['service']['service_id']}:archive", headers=bearer(clinic.admin), json={}
    )
    assert r.status_code == 200, r.text
    listed = (await api.c.get(f"/v1/clinics/{clinic.clinic_id}/services")).json()["services"]
    assert [s["service_id"] for s in listed] == [svc["service_id"]]  # public catalog

    owner = await api.user()
    cat = await api.pet(owner, "Tom", "SPECIES_CAT")
    day = _day(3)
    slots = await free_slots(api, svc["service_id"], day)
    assert len(slots) == 20  # 08:00-18:00 in 30-minute slots
    booking_id = await book_and_pay(api, owner, cat, svc["service_id"], slots[4])

    start = dt.datetime.combine(day, dt.time(0), BERLIN)
    r = await api.c.get(
        f"/v1/clinics/{clinic.clinic_id}/bookings",
        headers=bearer(clinic.staff),
        params={"start_time": start.isoformat(), "end_time": (start + dt.timedelta(days=1)).isoformat()},
    )
    assert r.status_code == 200, r.text
    [row] = r.json()["bookings"]
    assert row["booking"]["booking_id"] == booking_id
    assert (row["pet_name"], row["pet_species"], row["owner_email"], row["service_name"]) == (
        "Tom",
        "SPECIES_CAT",
        owner.email,
        "Cat check-up",
    )
    assert slots[4] not in await free_slots(api, svc["service_id"], day)


async def test_a_dog_cannot_be_booked_into_a_cats_only_service(api: Api, clinic: Clinic):
    svc = await add_service(api, clinic, name="Cats only", species_allowed=["SPECIES_CAT"])
    owner = await api.user()
    dog = await api.pet(owner, "Rex", "SPECIES_DOG")
    slot = (await free_slots(api, svc["service_id"], _day(4)))[0]
    r = await api.book(owner, dog, slot, service_id=svc["service_id"])
    assert (r.status_code, r.json()["reason"]) == (400, "SPECIES_NOT_ALLOWED"), r.text
    assert "cat" in r.json()["detail"]


async def test_closing_a_day_with_bookings_lists_them_and_removes_its_slots_at_once(api: Api, clinic: Clinic):
    svc = await add_service(api, clinic, name="Vaccination")
    day = _day(5)
    slots = await free_slots(api, svc["service_id"], day)  # read (and cached) before the change
    owner = await api.user()
    booking_id = await book_and_pay(api, owner, await api.pet(owner), svc["service_id"], slots[0])
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/closures",
        headers=bearer(clinic.admin),
        json={"start_date": day.isoformat(), "end_date": day.isoformat(), "reason": "Training"},
    )
    assert r.status_code == 201, r.text
    assert [b["booking_id"] for b in r.json()["affected_bookings"]] == [booking_id]
    assert await free_slots(api, svc["service_id"], day) == []  # no TTL to wait for
    r = await api.book(owner, await api.pet(owner), slots[1], service_id=svc["service_id"])
    assert (r.status_code, r.json()["violations"][0]["reason"]) == (400, "SLOT_OUTSIDE_HOURS"), r.text
    # the booking itself is untouched: staff decide (cancel or move it)
    r = await api.c.get(f"/v1/bookings/{booking_id}", headers=owner.auth)
    assert r.json()["booking"]["state"] == "BOOKING_STATE_CONFIRMED"
    closure_id = (
        await api.c.get(f"/v1/clinics/{clinic.clinic_id}/closures", headers=bearer(clinic.staff))
    ).json()["closures"][0]["closure_id"]
    r = await api.c.delete(
        f"/v1/clinics/{clinic.clinic_id}/closures/{closure_id}", headers=bearer(clinic.admin)
    )
    assert r.status_code == 200, r.text
    assert slots[1] in await free_slots(api, svc["service_id"], day)


async def test_day_override_and_weekly_hours_change_availability_at_once(api: Api, clinic: Clinic):
    svc = await add_service(api, clinic, name="Grooming", duration_minutes=60)
    day = _day(6)
    assert len(await free_slots(api, svc["service_id"], day)) == 10
    r = await api.c.put(
        f"/v1/clinics/{clinic.clinic_id}/day-overrides/{day.isoformat()}",
        headers=bearer(clinic.admin),
        json={"intervals": [{"open_time": "10:00", "close_time": "12:00"}]},
    )
    assert r.status_code == 200, r.text
    local = [
        dt.datetime.fromisoformat(s).astimezone(BERLIN).strftime("%H:%M")
        for s in await free_slots(api, svc["service_id"], day)
    ]
    assert local == ["10:00", "11:00"]
    r = await api.c.delete(
        f"/v1/clinics/{clinic.clinic_id}/day-overrides/{day.isoformat()}", headers=bearer(clinic.admin)
    )
    assert r.status_code == 200 and len(await free_slots(api, svc["service_id"], day)) == 10


async def test_a_raised_capacity_takes_the_next_booking_of_a_full_slot_at_once(api: Api, clinic: Clinic):
    """ReserveSlot compares the catalog's version inside its one statement (no read of its own): with
    the service in booking_svc's memo and its one unit held, a capacity raise is seen by the very next
    ReserveSlot, which holds the second unit instead of refusing on the memo's capacity."""
    svc = await add_service(api, clinic, name="Puppy class")
    slot = (await free_slots(api, svc["service_id"], _day(7)))[0]
    owner = await api.user()
    first = await api.book(owner, await api.pet(owner), slot, service_id=svc["service_id"])
    assert first.status_code == 201, first.text
    full = await api.book(owner, await api.pet(owner), slot, service_id=svc["service_id"])
    assert (full.status_code, full.json()["reason"]) == (409, "SLOT_UNAVAILABLE"), full.text
    r = await api.c.patch(
        f"/v1/services/{svc['service_id']}",
        headers=bearer(clinic.admin),
        params={"update_mask": "capacity"},
        json={"capacity": 2, "etag": svc["etag"]},
    )
    assert r.status_code == 200, r.text
    second = await api.book(owner, await api.pet(owner), slot, service_id=svc["service_id"])
    assert second.status_code == 201, second.text
    third = await api.book(owner, await api.pet(owner), slot, service_id=svc["service_id"])
    assert (third.status_code, third.json()["reason"]) == (409, "SLOT_UNAVAILABLE"), third.text


async def test_concurrent_updates_with_one_etag_lose_with_409(api: Api, clinic: Clinic):
    svc = await add_service(api, clinic, name="Dental")
    path, etag = f"/v1/services/{svc['service_id']}", svc["etag"]
    first = await api.c.patch(
        path,
        headers=bearer(clinic.admin),
        params={"update_mask": "capacity"},
        json={"capacity": 2, "etag": etag},
    )
    assert first.status_code == 200 and first.json()["service"]["capacity"] == 2, first.text
    second = await api.c.patch(
        path,
        headers=bearer(clinic.admin),
        params={"update_mask": "name"},
        json={"name": "Dental cleaning", "etag": etag},
    )
    assert (second.status_code, second.json()["reason"]) == (409, "ETAG_MISMATCH"), second.text
    current = (await api.c.get(f"/v1/clinics/{clinic.clinic_id}/services")).json()["services"]
    mine = next(s for s in current if s["service_id"] == svc["service_id"])
    assert (mine["name"], mine["capacity"]) == ("Dental", 2)  # the winner's change, not lost
    r = await api.c.post(f"{path}:archive", headers=bearer(clinic.admin), json={"etag": mine["etag"]})
    assert r.status_code == 200 and r.json()["service"]["archived"], r.text
    current = (await api.c.get(f"/v1/clinics/{clinic.clinic_id}/services")).json()["services"]
    assert svc["service_id"] not in {s["service_id"] for s in current}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/opening-hours",
            {
                "opening_hours": [
                    {"weekday": "WEEKDAY_MONDAY", "open_time": "08:00", "close_time": "12:00"},
                    {"weekday": "WEEKDAY_MONDAY", "open_time": "11:00", "close_time": "14:00"},
                ]
            },
            "opening_hours[1]",
        ),
        (
            "/opening-hours",
            {"opening_hours": [{"weekday": "WEEKDAY_MONDAY", "open_time": "12:00", "close_time": "08:00"}]},
            "opening_hours[0].close_time",
        ),
        (
            "/opening-hours",
            {"opening_hours": [{"weekday": "WEEKDAY_MONDAY", "open_time": "8am", "close_time": "12:00"}]},
            "opening_hours[0].open_time",
        ),
        (
            "/services",
            {
                "name": "X",
                "duration_minutes": 30,
                "price": {"amount_minor": -5, "currency": "EUR"},
                "capacity": 1,
            },
            "service.price.amount_minor",
        ),
        (
            "/services",
            {
                "name": "X",
                "duration_minutes": 30,
                "price": {"amount_minor": 500, "currency": "EUR"},
                "capacity": 0,
            },
            "service.capacity",
        ),
        ("/closures", {"start_date": "2031-05-02", "end_date": "2031-05-01"}, "closure.end_date"),
    ],
)
async def test_bad_input_is_400_naming_the_field(api: Api, clinic: Clinic, path, body, field):
    method = api.c.put if path == "/opening-hours" else api.c.post
    r = await method(f"/v1/clinics/{clinic.clinic_id}{path}", headers=bearer(clinic.admin), json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in {v["field"] for v in r.json()["violations"]}, r.json()


async def test_unknown_time_zone_is_400_naming_the_field(api: Api, clinic: Clinic):
    r = await api.c.patch(
        f"/v1/clinics/{clinic.clinic_id}",
        headers=bearer(clinic.admin),
        params={"update_mask": "time_zone"},
        json={"time_zone": "Mars/Olympus_Mons"},
    )
    assert r.status_code == 400, r.text
    assert {(v["field"], v["reason"]) for v in r.json()["violations"]} == {
        ("clinic.time_zone", "TIME_ZONE_UNKNOWN")
    }


def _clinic_routes(c: Clinic, service_id: str) -> list[tuple[str, str, dict[str, Any] | None, bool]]:
    """(method, path, body, admin only) of every clinic-scoped route."""
    day = _day(40).isoformat()
    start = dt.datetime.combine(_day(40), dt.time(0), BERLIN)
    return [
        ("PATCH", f"/v1/clinics/{c.clinic_id}?update_mask=name", {"name": "Taken over"}, True),
        ("PUT", f"/v1/clinics/{c.clinic_id}/opening-hours", {"opening_hours": EVERY_DAY}, True),
        ("POST", f"/v1/clinics/{c.clinic_id}/closures", {"start_date": day, "end_date": day}, True),
        ("GET", f"/v1/clinics/{c.clinic_id}/closures", None, False),
        ("DELETE", f"/v1/clinics/{c.clinic_id}/closures/{uuid.uuid4()}", None, True),
        ("PUT", f"/v1/clinics/{c.clinic_id}/day-overrides/{day}", {"intervals": []}, True),
        ("DELETE", f"/v1/clinics/{c.clinic_id}/day-overrides/{day}", None, True),
        (
            "POST",
            f"/v1/clinics/{c.clinic_id}/services",
            {
                "name": "X",
                "duration_minutes": 30,
                "price": {"amount_minor": 500, "currency": "EUR"},
                "capacity": 1,
            },
            True,
        ),
        ("PATCH", f"/v1/services/{service_id}?update_mask=capacity", {"capacity": 3}, True),
        ("POST", f"/v1/services/{service_id}:archive", {}, True),
        (
            "GET",
            f"/v1/clinics/{c.clinic_id}/bookings?start_time={start.isoformat().replace('+', '%2B')}"
            f"&end_time={(start + dt.timedelta(days=1)).isoformat().replace('+', '%2B')}",
            None,
            False,
        ),
        (
            "POST",
            f"/v1/clinics/{c.clinic_id}/invitations",
            {"email": _email("x"), "role": "CLINIC_ROLE_STAFF"},
            True,
        ),
        ("GET", f"/v1/clinics/{c.clinic_id}/staff", None, False),
        ("DELETE", f"/v1/clinics/{c.clinic_id}/staff/{c.staff_user_id}", None, True),
        (
            "POST",
            f"/v1/clinics/{c.clinic_id}/service-accounts",
            {"name": "PMS", "role": "CLINIC_ROLE_ADMIN"},
            True,
        ),
        ("POST", f"/v1/clinics/{c.clinic_id}/service-accounts/{uuid.uuid4()}:rotate-secret", {}, True),
    ]


async def _call(
    c: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None, token: str | None
) -> httpx.Response:
    headers = bearer(token) if token else {}
    return await c.request(method, path, json=body, headers=headers)


async def test_role_matrix_nobody_reaches_another_clinic(api: Api, clinic: Clinic, other: Clinic):
    target = await add_service(api, other, name="Theirs")
    owner = await api.user()
    for method, path, body, _ in _clinic_routes(other, target["service_id"]):
        for who, token in (
            ("admin of A", clinic.admin),
            ("staff of A", clinic.staff),
            ("owner", owner.token),
        ):
            r = await _call(api.c, method, path, body, token)
            assert r.status_code == 404, (who, method, path, r.status_code, r.text)
            assert r.json()["reason"] in ("CLINIC_NOT_FOUND", "SERVICE_NOT_FOUND"), (who, path, r.text)
        r = await _call(api.c, method, path, body, None)
        assert r.status_code == 401, (method, path, r.text)
    # their own clinic: staff read but may not change
    mine = await add_service(api, clinic, name="Ours")
    for method, path, body, admin_only in _clinic_routes(clinic, mine["service_id"]):
        r = await _call(api.c, method, path, body, clinic.staff)
        if admin_only:
            assert (r.status_code, r.json()["reason"]) == (403, "CLINIC_ADMIN_REQUIRED"), (
                method,
                path,
                r.text,
            )
        else:
            assert r.status_code == 200, (method, path, r.text)
    # creating clinics is for platform admins only
    r = await api.c.post("/v1/clinics", headers=bearer(clinic.admin), json={"name": "X", "time_zone": "UTC"})
    assert (r.status_code, r.json()["reason"]) == (403, "PLATFORM_ADMIN_REQUIRED")


async def test_service_account_token_is_scoped_to_its_clinic_and_rotatable(
    api: Api, clinic: Clinic, other: Clinic
):
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/service-accounts",
        headers=bearer(clinic.admin),
        json={"name": "Front-desk PMS", "role": "CLINIC_ROLE_STAFF"},
    )
    assert r.status_code == 201, r.text
    client_id, secret = r.json()["account"]["client_id"], r.json()["client_secret"]
    r = await api.c.post("/v1/auth/service-token", json={"client_id": client_id, "client_secret": secret})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    start = dt.datetime.now(dt.UTC)
    window = {"start_time": start.isoformat(), "end_time": (start + dt.timedelta(days=7)).isoformat()}
    assert (
        await api.c.get(f"/v1/clinics/{clinic.clinic_id}/bookings", params=window, headers=bearer(token))
    ).status_code == 200
    assert (
        await api.c.get(f"/v1/clinics/{other.clinic_id}/bookings", params=window, headers=bearer(token))
    ).status_code == 404
    members = (
        await api.c.get(
            f"/v1/clinics/{clinic.clinic_id}/staff", headers=bearer(clinic.admin), params={"page_size": 100}
        )
    ).json()["members"]
    assert {m["user_id"]: m["service_account"] for m in members}[client_id] is True
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/service-accounts/{client_id}:rotate-secret",
        headers=bearer(clinic.admin),
        json={},
    )
    assert r.status_code == 200, r.text
    new_secret = r.json()["client_secret"]
    old = await api.c.post("/v1/auth/service-token", json={"client_id": client_id, "client_secret": secret})
    assert (old.status_code, old.json()["reason"]) == (401, "INVALID_CREDENTIALS")

    async def old_token_refused() -> bool | None:
        # tokens of the old secret end; services cache a validation for a few seconds (petpro.authn)
        r = await api.c.get(f"/v1/clinics/{clinic.clinic_id}/bookings", params=window, headers=bearer(token))
        return True if r.status_code == 401 else None

    assert await eventually(old_token_refused)
    r = await api.c.post("/v1/auth/service-token", json={"client_id": client_id, "client_secret": new_secret})
    assert r.status_code == 200, r.text


async def test_removed_staff_lose_access_at_once_and_the_last_admin_stays(api: Api, root: str):
    c = await onboard(api, root, "Short-lived Vets")
    assert (await api.c.get(f"/v1/clinics/{c.clinic_id}/staff", headers=bearer(c.staff))).status_code == 200
    r = await api.c.delete(f"/v1/clinics/{c.clinic_id}/staff/{c.staff_user_id}", headers=bearer(c.admin))
    assert r.status_code == 200, r.text
    r = await api.c.get(f"/v1/clinics/{c.clinic_id}/staff", headers=bearer(c.staff))
    assert r.status_code == 401, r.text  # the session is revoked with the membership
    [admin] = (await api.c.get(f"/v1/clinics/{c.clinic_id}/staff", headers=bearer(c.admin))).json()["members"]
    r = await api.c.delete(f"/v1/clinics/{c.clinic_id}/staff/{admin['user_id']}", headers=bearer(c.admin))
    assert (r.status_code, r.json()["reason"]) == (400, "LAST_CLINIC_ADMIN"), r.text


async def test_dashboard_schedule_shows_the_chosen_day_and_updates_live(
    api: Api,
    chromium: Any,  # noqa: F811
    clinic: Clinic,
):
    """In Chromium: staff pick a day; its bookings are listed with time, pet, owner contact and state, and
    a booking confirmed meanwhile appears without a reload (the feed triggers the reload)."""
    from playwright.async_api import expect

    svc = await add_service(api, clinic, name="Schedule check")
    day = _day(9)
    slots = await free_slots(api, svc["service_id"], day)
    first_owner = await api.user(name="Ada Early")
    first = await book_and_pay(
        api, first_owner, await api.pet(first_owner, "Pip", "SPECIES_RABBIT"), svc["service_id"], slots[2]
    )
    staff_email = _email("desk")
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/invitations",
        headers=bearer(clinic.admin),
        json={"email": staff_email, "role": "CLINIC_ROLE_STAFF"},
    )
    assert r.status_code == 201, r.text
    await accept_invitation(api, staff_email, "desk-pass-12")

    ctx, page, problems = await open_dashboard(api, chromium, viewport={"width": 1280, "height": 900})
    try:
        await sign_in(page, staff_email, "desk-pass-12")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Paws & Claws")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await page.get_by_label("Schedule day").fill(day.isoformat())
        row = page.locator(f'#schedule-rows tr[data-booking-id="{first}"]')
        await expect(row).to_be_visible()
        local = dt.datetime.fromisoformat(slots[2].replace("Z", "+00:00")).astimezone(BERLIN)
        for text in (
            local.strftime("%H:%M"),
            "Pip (Rabbit)",
            "Ada Early",
            first_owner.email,
            "Schedule check",
            "Confirmed",
        ):
            await expect(row).to_contain_text(text)
        await page.evaluate("window.__sameDocument = true")

        late_owner = await api.user(name="Bo Late")
        late = await book_and_pay(
            api, late_owner, await api.pet(late_owner, "Mia", "SPECIES_CAT"), svc["service_id"], slots[5]
        )
        late_row = page.locator(f'#schedule-rows tr[data-booking-id="{late}"]')
        await expect(late_row).to_be_visible(timeout=30_000)
        await expect(late_row).to_contain_text("Mia (Cat)")
        await expect(page.locator("#schedule-rows tr")).to_have_count(2)
        await expect(page.locator("#schedule-status")).to_contain_text("2 bookings")
        assert await page.evaluate("window.__sameDocument") is True
        await page.get_by_label("Schedule day").fill(_day(10).isoformat())
        await expect(page.locator("#schedule-status")).to_contain_text("No bookings")
        assert problems == [], problems
    finally:
        await ctx.close()


async def test_a_clinic_systems_service_account_follows_its_clinics_grpc_feed(
    api: Api, clinic: Clinic, other: Clinic
):
    import grpc

    from .test_notifications import feed

    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/service-accounts",
        headers=bearer(clinic.admin),
        json={"name": "Reception screen", "role": "CLINIC_ROLE_STAFF"},
    )
    assert r.status_code == 201, r.text
    creds = r.json()
    r = await api.c.post(
        "/v1/auth/service-token",
        json={"client_id": creds["account"]["client_id"], "client_secret": creds["client_secret"]},
    )
    token = r.json()["access_token"]
    svc = await add_service(api, clinic, name="Feed check")
    owner = await api.user()
    booking_id = await book_and_pay(
        api,
        owner,
        await api.pet(owner),
        svc["service_id"],
        (await free_slots(api, svc["service_id"], _day(11)))[0],
    )

    async def delivered() -> bool | None:
        events = await feed(api, token, clinic.clinic_id, 0, 50, timeout=3)
        return True if booking_id in {e.booking.booking_id for e in events} else None

    assert await eventually(delivered, timeout=120)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await feed(api, token, other.clinic_id, 0, 1, timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND  # another clinic is not revealed (require_clinic)


def next_dst_change(zone: ZoneInfo) -> tuple[dt.date, bool]:
    """The next local day (at least a week ahead) whose UTC offset changes, and whether clocks go forward."""
    day = _day(7)
    for _ in range(400):
        before = dt.datetime.combine(day, dt.time(0), zone).utcoffset()
        after = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), zone).utcoffset()
        if before != after:
            assert before is not None and after is not None
            return day, after > before
        day += dt.timedelta(days=1)
    raise AssertionError("no DST change within a year")


async def test_availability_on_the_next_dst_day_has_no_missing_or_doubled_slot(api: Api, root: str):
    """Through the REST edge: a clinic open 01:00-05:00 on the next day Berlin changes its clocks."""
    day, forward = next_dst_change(BERLIN)
    weekday = day.strftime("%A").upper()
    r = await api.c.post(
        "/v1/clinics",
        headers=bearer(root),
        json={
            "name": "Night Owl Vets",
            "time_zone": "Europe/Berlin",
            "opening_hours": [{"weekday": f"WEEKDAY_{weekday}", "open_time": "01:00", "close_time": "05:00"}],
        },
    )
    assert r.status_code == 201, r.text
    c = Clinic(r.json()["clinic"]["clinic_id"], root, root, "")
    svc = await add_service(api, c, name="Hourly", duration_minutes=60, max_horizon_days=365)
    r = await api.c.get(f"/v1/services/{svc['service_id']}/availability", params={"date": day.isoformat()})
    assert r.status_code == 200, r.text
    starts = [dt.datetime.fromisoformat(s["start_time"].replace("Z", "+00:00")) for s in r.json()["slots"]]
    local = [s.astimezone(BERLIN).strftime("%H:%M%z") for s in starts]
    if forward:  # 02:00 does not exist that night: three real hours
        assert local == ["01:00+0100", "03:00+0200", "04:00+0200"]
    else:  # 02:00-03:00 happens twice: five real hours, each slot once
        assert local == ["01:00+0200", "02:00+0200", "02:00+0100", "03:00+0100", "04:00+0100"]
    assert len(set(starts)) == len(starts)
    assert all(b - a == dt.timedelta(hours=1) for a, b in itertools.pairwise(starts))


def _petpro(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "petpro_dev", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_petpro_admin_create_clinic_onboards_through_the_api(api: Api):
    """The CLI a fresh install starts with: platform admin (entry point), clinic and admin invitation (REST)."""
    import asyncio

    settings = api.stack.ctx.settings
    env = {
        **os.environ,
        **api.stack.env(),
        "PETPRO_HOME": str(settings.home),
        "PETPRO_PORT_BASE": str(settings.port_base),
        "PETPRO_ADMIN_PASSWORD": "cli-platform-1",
    }
    admin_email = _email("cli-admin")
    result = await asyncio.to_thread(
        _petpro,
        [
            "admin",
            "create-clinic",
            "--email",
            _email("cli-root"),
            "--name",
            "CLI Vets",
            "--time-zone",
            "Europe/Vienna",
            "--admin-email",
            admin_email,
            "--hours",
            "mon-fri=08:00-12:00,13:00-17:00",
            "--hours",
            "sat=09:00-12:00",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    clinic_id = re.search(r"clinic_id ([0-9a-f-]{36})", result.stdout)[1]
    r = await api.c.get("/v1/clinics", params={"page_size": 100})
    clinics = {c["clinic_id"]: c for c in r.json()["clinics"]}
    while clinic_id not in clinics and r.json()["next_page_token"]:
        r = await api.c.get(
            "/v1/clinics", params={"page_size": 100, "page_token": r.json()["next_page_token"]}
        )
        clinics.update({c["clinic_id"]: c for c in r.json()["clinics"]})
    clinic = clinics[clinic_id]
    assert (clinic["name"], clinic["time_zone"]) == ("CLI Vets", "Europe/Vienna")
    assert len(clinic["opening_hours"]) == 11  # two intervals on five weekdays, one on Saturday
    user = await accept_invitation(api, admin_email)
    assert user["memberships"] == [{"clinic_id": clinic_id, "role": "CLINIC_ROLE_ADMIN"}]
    bad = await asyncio.to_thread(
        _petpro,
        ["admin", "create-clinic", "--name", "X", "--time-zone", "Mars/Base", "--admin-email", _email("x")],
        env,
    )
    assert bad.returncode != 0 and "TIME_ZONE_UNKNOWN" in bad.stderr
