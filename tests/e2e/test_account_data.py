"""The owner's data through the REST edge: pets after creation (get, update with mask and etag, the
species rule, archive refused while bookings are to come), and that another owner's pet is a 404; the
data export with a part from each of the four services; account deletion with a booking to come, paid:
refunded by its policy, the clinic told through its feed, personal data gone from every service's
tables, the login refused, the email free again, and a worker stopped during the deletion erasing when
it is back."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import Api, User, confirmed_booking, eventually

PASSWORD = "correct-horse"
SCHEMAS = ("auth", "booking", "payment", "notif")

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


async def _owner_with_paid_booking(api: Api) -> tuple[User, str, str, str, str]:
    """A fresh owner (unique name) with a unique pet, booked and paid at least 3 days ahead: (owner,
    owner name, pet name, lock id, booking id), once the confirmation reached the owner's inbox."""
    tag = uuid.uuid4().hex[:8]
    name, pet_name = f"Zelda{tag}", f"Zorro{tag}"
    owner = await api.user(name)
    r = await api.book(owner, await api.pet(owner, pet_name), await api.unique_slot(min_days=3))
    assert r.status_code == 201, r.text
    held = r.json()
    assert (await api.pay(held["payment_url"])).status_code == 200
    res = await api.wait_status(owner, held["lock_id"], "CONFIRMED")
    await eventually(lambda: _inbox_has(api, owner, res["booking_id"]))
    return owner, name, pet_name, held["lock_id"], res["booking_id"]


async def _inbox_has(api: Api, owner: User, booking_id: str) -> bool:
    return any(n.get("booking_id") == booking_id or booking_id in str(n) for n in await api.inbox(owner))


async def _db(api: Api) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(api.stack.env()["DATABASE_URL"], autocommit=True)


async def _found(api: Api, needles: list[str], schemas: tuple[str, ...] = SCHEMAS) -> list[str]:
    """Every table row of the schemas that holds one of the needles, as text or in a bytea column
    (protobuf payloads: searched as hex), as "schema.table: needle"."""
    out: list[str] = []
    async with await _db(api) as db:
        tables = await (
            await db.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema = ANY(%s) AND table_type = 'BASE TABLE' AND table_name <> 'alembic_version'",
                (list(schemas),),
            )
        ).fetchall()
        for schema, table in tables:
            for needle in needles:
                row = await (
                    await db.execute(
                        f'SELECT count(*) FROM "{schema}"."{table}" t'
                        " WHERE row_to_json(t)::text ILIKE %s OR row_to_json(t)::text ILIKE %s",
                        (f"%{needle}%", f"%{needle.encode().hex()}%"),
                    )
                ).fetchone()
                if row and row[0]:
                    out.append(f"{schema}.{table}: {needle}")
    return out


async def test_export_has_a_part_from_each_of_the_four_services(api: Api) -> None:
    owner, name, pet_name, lock_id, booking_id = await _owner_with_paid_booking(api)
    r = await api.c.post("/v1/me:export", json={}, headers=owner.auth)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["account"]["user"]["email"], doc["account"]["user"]["name"]) == (owner.email, name)
    assert doc["account"]["sessions"] and "password_hash" not in str(doc["account"])
    assert [p["name"] for p in doc["booking"]["pets"]] == [pet_name]
    assert [b["id"] for b in doc["booking"]["bookings"]] == [booking_id]
    assert [x["lock_id"] for x in doc["booking"]["reservations"]] == [lock_id]
    [payment] = doc["payment"]["payments"]
    assert (payment["order_ref"], payment["status"], payment["customer_email"]) == (
        lock_id,
        "SUCCEEDED",
        owner.email,
    )
    assert any(booking_id in str(n) for n in doc["notifications"]["inbox"])
    assert any(
        d["channel"] == "email" and d["recipient"] == owner.email for d in doc["notifications"]["deliveries"]
    )
    assert "export_time" in doc
    # another owner's export holds none of it
    other = (await api.c.post("/v1/me:export", json={}, headers=(await api.user()).auth)).json()
    assert owner.email not in str(other) and booking_id not in str(other)
    assert (await api.c.post("/v1/me:export", json={})).status_code == 401


async def test_deletion_refunds_tells_the_clinic_erases_everywhere_even_with_notif_down(api: Api) -> None:
    owner, name, pet_name, lock_id, booking_id = await _owner_with_paid_booking(api)
    needles = [owner.email, name, pet_name]
    assert len(await _found(api, needles)) >= 4  # before: every service holds some of it

    wrong = await api.c.post("/v1/me:delete", json={"password": "not-it-at-all"}, headers=owner.auth)
    assert (wrong.status_code, wrong.json()["reason"]) == (400, "WRONG_PASSWORD"), wrong.text
    bob = await api.user()
    r = await api.c.post(
        "/v1/me:delete", json={"password": PASSWORD}, headers=bob.auth
    )  # bob's own, not Ann's
    assert r.status_code == 200, r.text
    assert (
        await api.c.post("/v1/auth/login", json={"email": owner.email, "password": PASSWORD})
    ).status_code == 200

    notif = api.stack.pid("notif")
    assert notif
    os.kill(notif, signal.SIGTERM)  # notif is down during the deletion
    try:
        from petpro_dev.devstack.process import is_alive

        await eventually(lambda: _async(not is_alive(notif)))
        r = await api.c.post("/v1/me:delete", json={"password": PASSWORD}, headers=owner.auth)
        assert (r.status_code, r.json()) == (200, {}), r.text
        again = await api.c.post("/v1/me:delete", json={"password": PASSWORD}, headers=owner.auth)
        assert again.status_code in (200, 401), again.text  # idempotent (or the token is already dead)

        # the booking to come: cancelled as the owner's, refunded by its policy (more than 24 h ahead: all)
        async def refunded() -> tuple[Any, ...] | None:
            async with await _db(api) as db:
                row = await (
                    await db.execute(
                        "SELECT state, cancelled_by, refund_minor, amount_minor, refund_state, payment_id"
                        " FROM booking.bookings WHERE id = %s",
                        (booking_id,),
                    )
                ).fetchone()
            return row if row and row[4] == "SUCCEEDED" else None

        state, by, refund, amount, _, payment_id = await eventually(refunded, timeout=60)
        assert (state, by, refund) == ("CANCELLED", "OWNER", amount)
        assert [x["amount"] for x in await api.sandbox_refunds(str(payment_id))] == [amount]
        # auth, booking and payment erased while notif is down; notif still holds its part
        left = await eventually(lambda: _only_in(api, needles, "notif"), timeout=60)
        assert left
    finally:
        await asyncio.to_thread(api.stack.up, ["notif"])

    # back up, notif erases too: nothing of the account is left anywhere
    try:
        await eventually(lambda: _nothing_left(api, needles), timeout=90)
    except AssertionError:
        log = api.stack.ctx.log_path("notif").read_text()[-6000:]
        raise AssertionError(f"left: {await _found(api, needles)}\nnotif log tail:\n{log}") from None

    # the clinic's feed got the cancellation (without the owner's or the pet's name)
    async def feed_types() -> list[str] | None:
        async with await _db(api) as db:
            rows = await (
                await db.execute(
                    "SELECT type FROM notif.clinic_events WHERE position(convert_to(%s, 'UTF8') in payload) > 0"
                    " ORDER BY cursor",
                    (booking_id,),
                )
            ).fetchall()
        types = [t for (t,) in rows]
        return types if "booking.cancelled" in types else None

    assert await eventually(feed_types, timeout=60) == ["booking.created", "booking.cancelled"]
    assert await _found(api, needles) == []  # applied after the erasure: still nothing of the account
    async with await _db(api) as db:
        paid = await (
            await db.execute(
                "SELECT status, amount_minor FROM payment.payments WHERE order_ref = %s", (lock_id,)
            )
        ).fetchone()
    assert paid is not None and paid[1] == amount  # the payment stays for the accounting, nameless

    r = await api.c.post("/v1/auth/login", json={"email": owner.email, "password": PASSWORD})
    assert r.status_code == 401, r.text
    assert (await api.c.get("/v1/me", headers=owner.auth)).status_code == 401
    r = await api.c.post(
        "/v1/auth/register", json={"email": owner.email, "password": PASSWORD, "name": "New"}
    )
    assert r.status_code == 201, r.text  # the address can register anew: a new account


async def _async(value: bool) -> bool:
    return value


async def _only_in(api: Api, needles: list[str], schema: str) -> bool | None:
    found = await _found(api, needles)
    return (bool(found) and all(f.startswith(f"{schema}.") for f in found)) or None


async def _nothing_left(api: Api, needles: list[str]) -> bool | None:
    return (await _found(api, needles)) == [] or None
