"""Staff operations through the REST edge (issue 20): front-desk staff book for an owner (found by
email, or invited to claim a new account), with the payment link mailed to the owner or to be paid at
the clinic, and move bookings to another time atomically; the owner is told as for a reschedule.
Plus who may do it (staff of the clinic only) and bad input (field violations, nothing written)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from .conftest import Api, User, eventually, mails_to
from .test_clinic_ops import (
    Clinic,
    _day,
    accept_invitation,
    add_service,
    bearer,
    free_slots,
    onboard,
    platform_token,
)
from .test_dashboard import browser as chromium  # noqa: F401  (the Chromium fixture, used by name)
from .test_dashboard import open_dashboard, sign_in
from .test_scheduling import add_provider, add_room, require

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def root(api: Api) -> str:
    return await platform_token(api)


@pytest.fixture(scope="module")
async def clinic(api: Api, root: str) -> Clinic:
    return await onboard(api, root, "Front Desk Vets")


@pytest.fixture(scope="module")
async def other(api: Api, root: str) -> Clinic:
    return await onboard(api, root, "Across The Street")


@pytest.fixture(scope="module")
async def service(api: Api, clinic: Clinic) -> dict[str, Any]:
    return await add_service(api, clinic, name="Front desk check-up", capacity=1)


_used: set[str] = set()


async def slot(api: Api, service_id: str, days: int = 3) -> str:
    """A free slot of the service no other test of this module took."""
    for d in range(days, days + 30):
        for s in await free_slots(api, service_id, _day(d)):
            if s not in _used:
                _used.add(s)
                return s
    raise AssertionError("no free slot left")


def _email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}@owner.example"


async def staff_book(api: Api, c: Clinic, token: str | None = None, **body: Any) -> httpx.Response:
    return await api.c.post(
        f"/v1/clinics/{c.clinic_id}/bookings", headers=bearer(token or c.staff), json=body
    )


async def staff_move(
    api: Api, c: Clinic, booking_id: str, token: str | None = None, **body: Any
) -> httpx.Response:
    return await api.c.post(
        f"/v1/clinics/{c.clinic_id}/bookings/{booking_id}:move", headers=bearer(token or c.staff), json=body
    )


def account_mail(api: Api, to: str, kind: str) -> list[Any]:
    return [m for m in mails_to(api.stack, to, account=True) if m.message["X-PetPro-Mail"] == kind]


async def users_with(api: Api, email: str) -> int:
    async with await psycopg.AsyncConnection.connect(api.stack.env()["DATABASE_URL"], autocommit=True) as db:
        row = await (
            await db.execute("SELECT count(*) FROM auth.users WHERE email = %s", (email,))
        ).fetchone()
        assert row is not None
        return int(row[0])


async def pay_at_clinic_booking(api: Api, c: Clinic, service_id: str, owner: User) -> dict[str, Any]:
    pet = await api.pet(owner)
    r = await staff_book(
        api,
        c,
        service_id=service_id,
        slot=await slot(api, service_id),
        owner_email=owner.email,
        pet_id=pet,
        payment="STAFF_PAYMENT_PAY_AT_CLINIC",
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["booking"])


async def test_staff_book_for_a_registered_owner_who_pays_the_mailed_link(
    api: Api, clinic: Clinic, service: dict[str, Any]
):
    owner = await api.user("Dora")
    pet = await api.pet(owner, "Bello")
    start = await slot(api, service["service_id"])
    r = await staff_book(
        api,
        clinic,
        service_id=service["service_id"],
        slot=start,
        owner_email=owner.email.upper(),  # found as the account's address
        pet_id=pet,
        payment="STAFF_PAYMENT_PAYMENT_LINK",
    )
    assert r.status_code == 201, r.text
    held = r.json()
    assert (held["status"], held["owner_user_id"], held["owner_invited"], held["pet_id"]) == (
        "PENDING_PAYMENT",
        owner.user_id,
        False,
        pet,
    )
    assert held["payment_url"] and "booking" not in held

    async def link() -> str | None:
        for m in account_mail(api, owner.email, "payment-link"):
            found = re.search(r"(https?://\S+)", m.body())
            if found:
                return found[1]
        return None

    url = await eventually(link)
    assert url == held["payment_url"]
    # the owner sees the hold as their own and pays it like one they made
    assert (await api.pay(url)).status_code == 200
    res = await api.wait_status(owner, held["lock_id"], "CONFIRMED")
    booking = await api.booking(owner, res["booking_id"])
    assert (booking["state"], booking["pay_at_clinic"], booking["slot_start_time"]) == (
        "BOOKING_STATE_CONFIRMED",
        False,
        start.replace("+00:00", "Z"),
    )
    assert booking["payment_id"]

    async def confirmed_mail() -> bool | None:
        return True if mails_to(api.stack, owner.email) else None

    await eventually(confirmed_mail)
    assert len(account_mail(api, owner.email, "payment-link")) == 1


async def test_staff_book_pay_at_clinic_for_a_new_owner_who_claims_the_account(
    api: Api, clinic: Clinic, service: dict[str, Any]
):
    email = _email("phone")
    body = {
        "service_id": service["service_id"],
        "slot": await slot(api, service["service_id"]),
        "owner_email": email,
        "owner_name": "Cleo Phone",
        "owner_phone": "+4930555012",
        "new_pet": {"name": "Mimi", "species": "SPECIES_CAT"},
        "payment": "STAFF_PAYMENT_PAY_AT_CLINIC",
    }
    key = {"Idempotency-Key": f"desk-{uuid.uuid4()}"}
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/bookings", headers={**bearer(clinic.staff), **key}, json=body
    )
    assert r.status_code == 201, r.text
    made = r.json()
    booking = made["booking"]
    assert (made["status"], made["owner_invited"], booking["state"], booking["pay_at_clinic"]) == (
        "CONFIRMED",
        True,
        "BOOKING_STATE_CONFIRMED",
        True,
    )
    assert booking["payment_id"] == "" and booking["refund_if_cancelled_now"]["amount_minor"] in ("0", 0)
    # a retry with the same key: the same booking, no second owner, pet or invitation
    again = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/bookings", headers={**bearer(clinic.staff), **key}, json=body
    )
    assert again.status_code == 201, again.text
    assert (again.json()["lock_id"], again.json()["pet_id"]) == (made["lock_id"], made["pet_id"])
    assert await users_with(api, email) == 1
    # staff see it in the schedule as unpaid
    day = dt.datetime.fromisoformat(body["slot"].replace("Z", "+00:00"))
    r = await api.c.get(
        f"/v1/clinics/{clinic.clinic_id}/bookings",
        headers=bearer(clinic.staff),
        params={
            "start_time": (day - dt.timedelta(hours=1)).isoformat(),
            "end_time": (day + dt.timedelta(hours=1)).isoformat(),
        },
    )
    assert r.status_code == 200, r.text
    [row] = [b for b in r.json()["bookings"] if b["booking"]["booking_id"] == booking["booking_id"]]
    assert (row["booking"]["pay_at_clinic"], row["owner_email"], row["pet_name"]) == (True, email, "Mimi")
    # no password opens the account until the owner claims it with the mailed token
    r = await api.c.post("/v1/auth/login", json={"email": email, "password": "anything-at-all"})
    assert r.status_code == 401

    async def invitation() -> str | None:
        for m in account_mail(api, email, "owner-invitation"):
            found = re.search(r'"token": "([A-Za-z0-9_-]+)"', m.body())
            if found:
                return found[1]
        return None

    token = await eventually(invitation)
    assert len(account_mail(api, email, "owner-invitation")) == 1
    claim = {"email": email, "token": token, "new_password": "mimis-owner-2026"}
    r = await api.c.post("/v1/auth/password-reset:confirm", json=claim)
    assert r.status_code == 200, r.text
    r = await api.c.post(
        "/v1/auth/password-reset:confirm", json={**claim, "new_password": "another-one-2026"}
    )
    assert (r.status_code, r.json()["reason"]) == (400, "LINK_TOKEN_USED")  # single use
    owner = User(email, await api.login(email, "mimis-owner-2026"), made["owner_user_id"])
    mine = await api.c.get("/v1/bookings", headers=owner.auth)
    assert [b["booking_id"] for b in mine.json()["bookings"]] == [booking["booking_id"]]
    me = await api.c.get("/v1/me", headers=owner.auth)
    assert (me.json()["user"]["name"], me.json()["user"]["email_verified"]) == ("Cleo Phone", True)


async def test_staff_move_notifies_the_owner_and_a_taken_slot_is_409_with_nothing_changed(
    api: Api, clinic: Clinic, service: dict[str, Any]
):
    owner, neighbour = await api.user("Eve"), await api.user("Finn")
    booking = await pay_at_clinic_booking(api, clinic, service["service_id"], owner)
    blocking = await pay_at_clinic_booking(api, clinic, service["service_id"], neighbour)
    target = await slot(api, service["service_id"], days=5)
    r = await staff_move(api, clinic, booking["booking_id"], slot=target)
    assert r.status_code == 200, r.text
    moved = r.json()["booking"]
    assert (moved["slot_start_time"], moved["reschedule_count"], moved["pay_at_clinic"]) == (
        target.replace("+00:00", "Z"),
        1,
        True,
    )

    async def moved_mail() -> bool | None:
        return (
            True
            if any(
                "booking-rescheduled" in str(m.message["Message-ID"])
                for m in mails_to(api.stack, owner.email)
            )
            else None
        )

    await eventually(moved_mail)
    # the owner's side shows the new time and who moved it
    assert (await api.booking(owner, booking["booking_id"]))["slot_start_time"] == moved["slot_start_time"]
    # onto the neighbour's slot (capacity 1): 409, and the booking stays where it is
    r = await staff_move(api, clinic, booking["booking_id"], slot=blocking["slot_start_time"])
    assert (r.status_code, r.json()["reason"]) == (409, "SLOT_UNAVAILABLE"), r.text
    after = await api.booking(owner, booking["booking_id"])
    assert (after["slot_start_time"], after["reschedule_count"]) == (moved["slot_start_time"], 1)
    assert (await api.booking(neighbour, blocking["booking_id"]))["slot_start_time"] == blocking[
        "slot_start_time"
    ]
    # the same place again: nothing to move
    r = await staff_move(api, clinic, booking["booking_id"], slot=moved["slot_start_time"])
    assert (r.status_code, r.json()["reason"]) == (400, "SLOT_SAME"), r.text


async def test_only_staff_of_the_bookings_clinic_book_and_move(
    api: Api, clinic: Clinic, other: Clinic, service: dict[str, Any]
):
    owner = await api.user("Gus")
    booking = await pay_at_clinic_booking(api, clinic, service["service_id"], owner)
    body = {
        "service_id": service["service_id"],
        "slot": await slot(api, service["service_id"]),
        "owner_email": owner.email,
        "new_pet": {"name": "Rex", "species": "SPECIES_DOG"},
        "payment": "STAFF_PAYMENT_PAY_AT_CLINIC",
    }
    later = await slot(api, service["service_id"], days=6)
    # staff of another clinic naming this clinic: 403; naming their own clinic: this booking is not found
    assert (await staff_book(api, clinic, other.staff, **body)).status_code == 403
    assert (await staff_move(api, clinic, booking["booking_id"], other.staff, slot=later)).status_code == 403
    assert (await staff_book(api, other, clinic.staff, **body)).status_code == 403  # other's path
    r = await staff_move(api, other, booking["booking_id"], other.staff, slot=later)
    assert (r.status_code, r.json()["reason"]) == (404, "BOOKING_NOT_FOUND"), r.text
    r = await staff_book(api, other, other.staff, **body)  # their clinic, this clinic's service
    assert (r.status_code, r.json()["reason"]) == (404, "SERVICE_NOT_FOUND"), r.text
    # an owner cannot use the staff endpoints, not even for their own booking
    assert (await staff_book(api, clinic, owner.token, **body)).status_code == 403
    r = await staff_move(api, clinic, booking["booking_id"], owner.token, slot=later)
    assert (r.status_code, r.json()["reason"]) == (403, "NOT_CLINIC_STAFF")
    assert (await api.booking(owner, booking["booking_id"]))["slot_start_time"] == booking["slot_start_time"]
    # without a token: 401
    r = await api.c.post(f"/v1/clinics/{clinic.clinic_id}/bookings", json=body)
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"owner_name": ""}, "name"),  # a new owner needs a name
        ({"slot": "2031-01-01T03:17:00Z"}, "slot"),  # not one of the service's slots
        ({"pet_id": str(uuid.uuid4()), "new_pet": None}, "pet_id"),  # not this owner's pet
        ({"payment": "STAFF_PAYMENT_UNSPECIFIED"}, "payment"),
        ({"new_pet": {"name": "", "species": "SPECIES_CAT"}}, "new_pet.name"),
        ({"owner_phone": "12"}, "owner_phone"),
    ],
)
async def test_bad_staff_booking_is_400_naming_the_field_and_writes_nothing(
    api: Api, clinic: Clinic, service: dict[str, Any], change: dict[str, Any], field: str
):
    email = _email("bad")
    body: dict[str, Any] = {
        "service_id": service["service_id"],
        "slot": await slot(api, service["service_id"], days=8),
        "owner_email": email,
        "owner_name": "Hal",
        "new_pet": {"name": "Tom", "species": "SPECIES_CAT"},
        "payment": "STAFF_PAYMENT_PAY_AT_CLINIC",
        **change,
    }
    body = {k: v for k, v in body.items() if v is not None}
    r = await staff_book(api, clinic, **body)
    assert r.status_code == 400, r.text
    assert field in [v["field"] for v in r.json()["violations"]], r.text
    assert await users_with(api, email) == 0
    assert not account_mail(api, email, "owner-invitation")


async def test_bad_move_is_400_naming_the_field(api: Api, clinic: Clinic, service: dict[str, Any]):
    owner = await api.user("Ida")
    booking = await pay_at_clinic_booking(api, clinic, service["service_id"], owner)
    r = await staff_move(api, clinic, booking["booking_id"], provider_id=str(uuid.uuid4()))
    assert r.status_code == 400, r.text
    assert [v["field"] for v in r.json()["violations"]] == ["provider_id"]  # a service without providers
    r = await staff_move(api, clinic, booking["booking_id"], slot="2020-01-01T09:00:00Z")
    assert r.status_code == 400, r.text
    assert (await api.booking(owner, booking["booking_id"]))["slot_start_time"] == booking["slot_start_time"]


# -- providers and rooms ---------------------------------------------------------------------------
async def schedule_by_providers(api: Api, c: Clinic, service: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Two vets and two dental rooms for the service (1 vet of both + 1 room), through the admin API.
    Returns (vets, rooms)."""
    vets = [(await add_provider(api, c, name))["provider_id"] for name in ("Dr Weber", "Dr Okafor")]
    rooms = [(await add_room(api, c, f"Dental {i}"))["resource_id"] for i in (1, 2)]
    await require(api, c, service, vets, [{"resource_type": "dental room", "quantity": 1}])
    return vets, rooms


async def test_staff_move_to_another_vet_and_room_shows_live_in_the_dashboards_provider_columns(
    api: Api,
    chromium: Any,  # noqa: F811
    clinic: Clinic,
):
    """In Chromium: the day by provider (one column each) and by room; a staff booking for Dr Weber in
    Dental 1, paid at the clinic, is in Weber's column and Dental 1's cell; moved by staff to Dr Okafor
    and Dental 2 it shows there without a reload (the feed's rescheduled event); a move onto a vet who
    is taken then is 409 PROVIDER_TAKEN and changes nothing."""
    from playwright.async_api import expect

    svc = await add_service(api, clinic, name="Dental cleaning", capacity=1)
    (weber, okafor), (room1, room2) = await schedule_by_providers(api, clinic, svc)
    owner, other_owner = await api.user("Jo Molar"), await api.user("Kai Canine")
    day = _day(11)
    starts = await free_slots(api, svc["service_id"], day)
    r = await staff_book(
        api,
        clinic,
        service_id=svc["service_id"],
        slot=starts[4],
        owner_email=owner.email,
        pet_id=await api.pet(owner, "Fang"),
        provider_id=weber,
        payment="STAFF_PAYMENT_PAY_AT_CLINIC",
    )
    assert r.status_code == 201, r.text
    booking = r.json()["booking"]
    assert (booking["provider"]["provider_id"], [x["resource_id"] for x in booking["resources"]]) == (
        weber,
        [room1],
    )
    # Dr Okafor is busy at another time of that day
    r = await staff_book(
        api,
        clinic,
        service_id=svc["service_id"],
        slot=starts[8],
        owner_email=other_owner.email,
        pet_id=await api.pet(other_owner, "Rocky"),
        provider_id=okafor,
        payment="STAFF_PAYMENT_PAY_AT_CLINIC",
    )
    assert r.status_code == 201, r.text
    busy = r.json()["booking"]

    desk = f"desk-{uuid.uuid4().hex[:8]}@clinic.example"
    r = await api.c.post(
        f"/v1/clinics/{clinic.clinic_id}/invitations",
        headers=bearer(clinic.admin),
        json={"email": desk, "role": "CLINIC_ROLE_STAFF"},
    )
    assert r.status_code == 201, r.text
    await accept_invitation(api, desk, "desk-pass-12")
    ctx, page, problems = await open_dashboard(api, chromium, viewport={"width": 1280, "height": 900})
    try:
        await sign_in(page, desk, "desk-pass-12")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await page.get_by_label("Schedule day").fill(day.isoformat())
        weber_col = page.locator(f'#provider-columns section[data-provider-id="{weber}"]')
        okafor_col = page.locator(f'#provider-columns section[data-provider-id="{okafor}"]')
        card = f'article[data-booking-id="{booking["booking_id"]}"]'
        await expect(weber_col.locator(card)).to_be_visible()
        await expect(weber_col).to_contain_text("Dr Weber")
        await expect(weber_col.locator(card)).to_contain_text("Pay at clinic")
        await expect(okafor_col).to_contain_text("Dr Okafor")
        await expect(
            page.locator(f'#resource-row section[data-resource-id="{room1}"] {card}')
        ).to_be_visible()
        await expect(
            page.locator(f'#schedule-rows tr[data-booking-id="{booking["booking_id"]}"]')
        ).to_contain_text("Pay at clinic")
        await page.evaluate("window.__sameDocument = true")

        r = await staff_move(api, clinic, booking["booking_id"], provider_id=okafor, resource_ids=[room2])
        assert r.status_code == 200, r.text
        moved = r.json()["booking"]
        assert (moved["provider"]["provider_id"], moved["resources"][0]["resource_id"]) == (okafor, room2)
        await expect(okafor_col.locator(card)).to_be_visible(timeout=30_000)
        await expect(weber_col.locator(card)).to_have_count(0)
        await expect(
            page.locator(f'#resource-row section[data-resource-id="{room2}"] {card}')
        ).to_be_visible()
        assert await page.evaluate("window.__sameDocument") is True

        # onto Dr Okafor's other booking's time: taken, and nothing changes
        r = await staff_move(api, clinic, booking["booking_id"], slot=busy["slot_start_time"])
        assert (r.status_code, r.json()["reason"]) == (409, "PROVIDER_TAKEN"), r.text
        after = await api.booking(owner, booking["booking_id"])
        assert (after["slot_start_time"], after["provider"]["provider_id"]) == (
            moved["slot_start_time"],
            okafor,
        )
        # a vet from another clinic (or none at all) is a field violation
        r = await staff_move(api, clinic, booking["booking_id"], provider_id=str(uuid.uuid4()))
        assert (r.status_code, [v["field"] for v in r.json()["violations"]]) == (400, ["provider_id"])
        r = await staff_move(api, clinic, booking["booking_id"], resource_ids=[room1, room2])
        assert (r.status_code, [v["field"] for v in r.json()["violations"]]) == (400, ["resource_ids"])
        assert problems == [], problems
    finally:
        await ctx.close()
