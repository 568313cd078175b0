"""The seed's booking flow through the REST edge only, as the mobile app and Stripe drive it."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

import grpc
import pytest

from petpro.convert import ts
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc
from tests.e2e.conftest import CHECKUP, VACCINATION, Api

pytestmark = pytest.mark.e2e


async def test_register_book_pay_confirm(api: Api):
    owner = await api.user()
    pet = await api.pet(owner)
    slot = await api.unique_slot()

    r = await api.book(owner, pet, slot)
    assert r.status_code == 201, r.text
    held = r.json()
    assert held["status"] == "PENDING_PAYMENT"
    assert held["amount"] == {"amount_minor": "4500", "currency": "EUR"}
    assert held["payment_url"].startswith("http")
    # reading the hold returns its payment's checkout page (read from payment_svc, see test_bff_reads)
    for _ in range(2):
        read = (await api.c.get(f"/v1/reservations/{held['lock_id']}", headers=owner.auth)).json()
        assert (read["status"], read["payment_url"]) == ("PENDING_PAYMENT", held["payment_url"])

    paid = await api.pay(held["payment_url"])
    assert paid.status_code == 200, paid.text

    res = await api.wait_status(owner, held["lock_id"], "CONFIRMED")
    assert res["booking_id"]
    booking = (await api.c.get(f"/v1/bookings/{res['booking_id']}", headers=owner.auth)).json()["booking"]
    assert (booking["state"], booking["pet_id"], booking["slot_start_time"]) == (
        "BOOKING_STATE_CONFIRMED",
        pet,
        slot,
    )
    mine = (await api.c.get("/v1/bookings", headers=owner.auth)).json()["bookings"]
    assert [b["booking_id"] for b in mine] == [res["booking_id"]]

    day = slot[:10]
    slots = (await api.c.get(f"/v1/services/{CHECKUP}/availability", params={"date": day})).json()["slots"]
    assert next(s for s in slots if s["start_time"] == slot)["free"] is False


async def test_a_long_poll_through_the_rest_edge_answers_on_confirmation_and_at_its_timeout(api: Api):
    """GET /v1/reservations/{id}?wait_seconds=N: a held reservation's answer waits for its change (the
    payment's webhook confirms it: booking's trigger NOTIFYs, the replica waiting wakes) instead of
    being polled; with nothing happening it answers PENDING_PAYMENT, with its checkout page, when the
    wait is over.  Another owner's is 404 at once; more than 25 s is refused."""
    owner = await api.user()
    r = await api.book(owner, await api.pet(owner), await api.unique_slot())
    assert r.status_code == 201, r.text
    held = r.json()
    url = f"/v1/reservations/{held['lock_id']}"

    t = time.monotonic()
    timed_out = await api.c.get(url, params={"wait_seconds": 1}, headers=owner.auth)
    assert time.monotonic() - t >= 0.9  # it waited for the change that did not come
    assert timed_out.status_code == 200, timed_out.text
    assert (timed_out.json()["status"], timed_out.json()["payment_url"]) == (
        "PENDING_PAYMENT",
        held["payment_url"],
    )

    stranger = await api.user()
    t = time.monotonic()
    other = await api.c.get(url, params={"wait_seconds": 25}, headers=stranger.auth)
    assert other.status_code == 404 and time.monotonic() - t < 10  # not found, not after a wait
    too_long = await api.c.get(url, params={"wait_seconds": 26}, headers=owner.auth)
    assert too_long.status_code == 400, too_long.text

    t = time.monotonic()
    poll = asyncio.create_task(api.reservation(owner, held["lock_id"], wait=25))
    assert (await api.pay(held["payment_url"])).status_code == 200
    res = await poll
    assert (res["status"], res["payment_url"]) == ("CONFIRMED", "") and res["booking_id"]
    assert time.monotonic() - t < 20  # answered by the confirmation, not by the end of its wait


async def test_idempotency_key_replays_and_rejects_a_different_body(api: Api):
    owner = await api.user()
    pet = await api.pet(owner)
    slot, other = await api.unique_slot(), await api.unique_slot()
    first = await api.book(owner, pet, slot, key="key-1")
    again = await api.book(owner, pet, slot, key="key-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()  # same hold, same payment session

    changed = await api.book(owner, pet, other, key="key-1")
    assert changed.status_code == 409
    assert changed.headers["content-type"].startswith("application/problem+json")
    assert changed.json()["reason"] == "IDEMPOTENCY_KEY_REUSED"


async def test_a_held_slot_cannot_be_booked_by_someone_else(api: Api):
    a, b = await api.user(), await api.user()
    slot = await api.unique_slot()
    assert (await api.book(a, await api.pet(a), slot)).status_code == 201
    r = await api.book(b, await api.pet(b), slot)
    assert r.status_code == 409
    assert r.json()["reason"] == "SLOT_UNAVAILABLE"


async def test_capacity_two_takes_two_bookings_then_refuses(api: Api):
    slot = await api.unique_slot(VACCINATION)
    codes = []
    for _ in range(3):
        u = await api.user()
        codes.append((await api.book(u, await api.pet(u), slot, service_id=VACCINATION)).status_code)
    assert codes == [201, 201, 409]


async def test_200_concurrent_reservations_of_one_slot_have_exactly_one_winner(api: Api):
    owner = await api.user()
    pet = await api.pet(owner)
    slot = await api.unique_slot()
    start = ts(datetime.fromisoformat(slot.replace("Z", "+00:00")))

    async with grpc.aio.insecure_channel(api.stack.address("booking")) as channel:
        stub = booking_pb2_grpc.BookingServiceStub(channel)

        async def reserve() -> str:
            try:
                r = await stub.ReserveSlot(
                    booking_pb2.ReserveSlotRequest(
                        request_id=str(uuid.uuid4()),
                        service_id=CHECKUP,
                        pet_id=pet,
                        owner_user_id=owner.user_id,
                        slot_start_time=start,
                        owner_email=owner.email,
                    ),
                    timeout=30,
                )
                return r.reservation.lock_id
            except grpc.aio.AioRpcError as e:
                return e.code().name

        results = await asyncio.gather(*(reserve() for _ in range(200)))
        winners = [r for r in results if r not in ("ABORTED",)]
        assert len(winners) == 1 and results.count("ABORTED") == 199, set(results)

        # after the hold expires, exactly one new winner again (and it is a different hold)
        await api.expire_hold(winners[0])
        await api.wait_status(owner, winners[0], "EXPIRED")
        results = await asyncio.gather(*(reserve() for _ in range(200)))
        second = [r for r in results if r != "ABORTED"]
        assert len(second) == 1 and second[0] != winners[0], set(results)
