"""The owner's data through the REST edge: pets after creation (get, update with mask and etag, the
species rule, archive refused while bookings are to come), and that another owner's pet is a 404."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Api, confirmed_booking

pytestmark = pytest.mark.e2e


def _problem(r: Any, status: int, reason: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert body["reason"] == reason, body
    return body


async def test_pet_get_update_archive_and_another_owners_pet_is_404(api: Api) -> None:
    owner, lock_id, booking_id = await confirmed_booking(api)
    del lock_id
    booked = (await api.booking(owner, booking_id))["pet_id"]
    idle = await api.pet(owner, "Mia", "SPECIES_CAT")

    r = await api.c.get(f"/v1/pets/{idle}", headers=owner.auth)
    assert r.status_code == 200, r.text
    pet = r.json()["pet"]
    assert (pet["name"], pet["species"], pet["etag"], pet["archived"]) == ("Mia", "SPECIES_CAT", "p1", False)

    # AIP-134 mask in the query, AIP-154 etag in the body; only the masked fields change
    body = {"name": "Mimi", "breed": "Maine Coon", "weight_kg": 5.25, "notes": "bites", "etag": "p1"}
    r = await api.c.patch(
        f"/v1/pets/{idle}",
        params={"update_mask": "name,breed,weight_kg,notes"},
        json=body,
        headers=owner.auth,
    )
    assert r.status_code == 200, r.text
    pet = r.json()["pet"]
    assert (pet["name"], pet["breed"], pet["weight_kg"], pet["notes"], pet["etag"]) == (
        "Mimi",
        "Maine Coon",
        5.25,
        "bites",
        "p2",
    )
    stale = await api.c.patch(
        f"/v1/pets/{idle}",
        params={"update_mask": "name"},
        json={"name": "X", "etag": "p1"},
        headers=owner.auth,
    )
    _problem(stale, 409, "ETAG_MISMATCH")
    bad = await api.c.patch(
        f"/v1/pets/{idle}",
        params={"update_mask": "name,owner_user_id"},
        json={"name": "X"},
        headers=owner.auth,
    )
    assert _problem(bad, 400, "INVALID_ARGUMENT")["violations"][0]["field"] == "update_mask"
    # the species changes while the pet has no booking, never after
    r = await api.c.patch(f"/v1/pets/{idle}", json={"species": "SPECIES_RABBIT"}, headers=owner.auth)
    assert (r.status_code, r.json()["pet"]["species"]) == (200, "SPECIES_RABBIT"), r.text
    r = await api.c.patch(f"/v1/pets/{booked}", json={"species": "SPECIES_CAT"}, headers=owner.auth)
    _problem(r, 400, "PET_HAS_BOOKINGS")

    # archive: refused while a booking is to come (its id named), then done once it is cancelled
    r = await api.c.post(f"/v1/pets/{booked}:archive", json={}, headers=owner.auth)
    assert booking_id in _problem(r, 400, "PET_HAS_FUTURE_BOOKINGS")["detail"]
    assert (await api.cancel(owner, booking_id)).status_code == 200
    r = await api.c.post(f"/v1/pets/{booked}:archive", json={}, headers=owner.auth)
    assert (r.status_code, r.json()["pet"]["archived"]) == (200, True), r.text
    again = await api.c.post(f"/v1/pets/{booked}:archive", json={}, headers=owner.auth)
    assert (again.status_code, again.json()) == (200, r.json())  # idempotent
    listed = await api.c.get("/v1/pets", headers=owner.auth)
    assert [p["pet_id"] for p in listed.json()["pets"]] == [idle]
    assert (await api.c.get(f"/v1/pets/{booked}", headers=owner.auth)).json()["pet"]["archived"] is True
    _problem(await api.book(owner, booked, await api.unique_slot()), 404, "PET_NOT_FOUND")  # not bookable

    # another owner: every pet call is 404, nothing changes
    bob = await api.user("Bob")
    for r in (
        await api.c.get(f"/v1/pets/{idle}", headers=bob.auth),
        await api.c.patch(f"/v1/pets/{idle}", json={"name": "Mine"}, headers=bob.auth),
        await api.c.post(f"/v1/pets/{idle}:archive", json={}, headers=bob.auth),
    ):
        _problem(r, 404, "PET_NOT_FOUND")
    assert (await api.c.get(f"/v1/pets/{idle}", headers=owner.auth)).json()["pet"]["name"] == "Mimi"
    # no token: 401 before anything
    assert (await api.c.get(f"/v1/pets/{idle}")).status_code == 401
