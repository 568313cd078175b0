"""Never a payment without a booking, even when the provider's webhooks never arrive.

The sandbox's webhooks are switched off for one Checkout Session (its events are recorded, never
delivered), the owner pays, and PetPro finds the payment by asking the provider (PaymentService,
through the stripe SDK) and settles it itself (the edge's reconciler): the booking — or, when the
slot is gone, the refund — happens exactly once.  The grace periods are production-length in the
test mesh; a test makes only its own payment old (as ``expire_hold`` does for holds), so nothing
depends on the machine's speed.
"""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import Api, eventually

pytestmark = pytest.mark.e2e


def session_of(held: dict) -> str:
    return held["payment_url"].rsplit("/", 1)[1]


async def webhooks(api: Api, session: str, enabled: bool) -> None:
    async with httpx.AsyncClient(base_url=api.stack.env()["STRIPE_API_BASE"], timeout=10) as c:
        r = await c.post(f"/_sandbox/sessions/{session}/webhooks", json={"enabled": enabled})
        assert r.status_code == 200, r.text


async def db(api: Api, sql: str, *args: Any) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(
        api.stack.env()["DATABASE_URL"], autocommit=True
    ) as conn:
        cur = await conn.execute(sql, args)
        return await cur.fetchall() if cur.description else []


async def age_payment(api: Api, session: str) -> None:
    """Make this payment's grace periods run out now: as if its webhook had been awaited for hours."""
    await db(
        api,
        "UPDATE payment.payments SET created_at = now() - interval '3 hours', checked_at = NULL,"
        " updated_at = now() - interval '3 hours' WHERE session_id = %s",
        session,
    )


async def payment_row(api: Api, session: str) -> tuple:
    rows = await db(
        api, "SELECT id::text, status, settled_order_id FROM payment.payments WHERE session_id = %s", session
    )
    assert len(rows) == 1
    return rows[0]


async def paid_without_webhook(api: Api, held: dict) -> None:
    session = session_of(held)
    await webhooks(api, session, enabled=False)
    assert (await api.pay(held["payment_url"])).status_code == 200
    events = await api.sandbox_events(session)
    assert events and all(e["delivery"] == "muted" and e["attempts"] == [] for e in events)
    # PetPro has heard nothing
    assert (await payment_row(api, session))[1] == "PENDING"
    await age_payment(api, session)

    async def found() -> bool:  # PaymentService asked the provider about the old open session
        return (await payment_row(api, session))[1] != "PENDING"

    await eventually(found, timeout=60)
    assert (await payment_row(api, session))[1] in ("SUCCEEDED", "REFUNDED")
    await age_payment(api, session)  # and the edge's grace period for settling it ran out too


async def test_a_paid_session_whose_webhook_never_came_is_booked_exactly_once(api: Api):
    owner = await api.user()
    r = await api.book(owner, await api.pet(owner), await api.unique_slot())
    assert r.status_code == 201, r.text
    held = r.json()
    await paid_without_webhook(api, held)

    res = await api.wait_status(owner, held["lock_id"], "CONFIRMED", timeout=60)

    async def settled() -> tuple | None:
        row = await payment_row(api, session_of(held))
        return row if row[2] else None

    _, status, order_id = await eventually(settled, timeout=60)
    assert (status, order_id) == ("SUCCEEDED", res["booking_id"])
    bookings = await db(api, "SELECT id::text FROM booking.bookings WHERE lock_id = %s", held["lock_id"])
    assert bookings == [(res["booking_id"],)]
    assert not [
        e for e in await api.sandbox_events(session_of(held)) if e["type"].startswith("charge.refund")
    ]


async def test_a_paid_session_whose_slot_is_gone_is_refunded_exactly_once(api: Api):
    owner = await api.user()
    r = await api.book(owner, await api.pet(owner), await api.unique_slot())
    assert r.status_code == 201, r.text
    held = r.json()
    await api.expire_hold(held["lock_id"])
    await api.wait_status(owner, held["lock_id"], "EXPIRED")
    rival = await api.user()
    slot = (await api.reservation(owner, held["lock_id"]))["slot_start_time"]
    assert (await api.book(rival, await api.pet(rival), slot)).status_code == 201

    await paid_without_webhook(api, held)

    async def refunded() -> bool:
        return (await payment_row(api, session_of(held)))[1] == "REFUNDED"

    await eventually(refunded, timeout=60)
    res = await api.reservation(owner, held["lock_id"])
    assert res["status"] == "FAILED" and res["booking_id"] == ""
    assert await db(api, "SELECT 1 FROM booking.bookings WHERE lock_id = %s", held["lock_id"]) == []
    refunds = [e for e in await api.sandbox_events(session_of(held)) if e["type"] == "charge.refunded"]
    assert len(refunds) == 1


async def test_a_booking_confirmed_by_its_webhook_is_settled_without_a_second_booking(api: Api):
    owner = await api.user()
    r = await api.book(owner, await api.pet(owner), await api.unique_slot())
    held = r.json()
    assert (await api.pay(held["payment_url"])).status_code == 200
    res = await api.wait_status(owner, held["lock_id"], "CONFIRMED")
    await age_payment(api, session_of(held))  # the reconciler now sees it as unsettled

    async def settled() -> tuple | None:
        row = await payment_row(api, session_of(held))
        return row if row[2] else None

    assert (await eventually(settled, timeout=60))[2] == res["booking_id"]
    bookings = await db(api, "SELECT id::text FROM booking.bookings WHERE lock_id = %s", held["lock_id"])
    assert bookings == [(res["booking_id"],)]
