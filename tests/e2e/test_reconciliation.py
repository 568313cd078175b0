"""Never a payment without a booking, even when the provider's webhooks never arrive; and a booking
whose webhook did arrive is confirmed once.

The sandbox's webhooks are switched off for one Checkout Session (its events are recorded, never
delivered), the owner pays, and PetPro finds the payment by asking the provider (PaymentService,
through the stripe SDK) and fulfils it itself (the edge's sweep for lost webhooks): the booking — or,
when the slot is gone, the refund — happens exactly once.  A payment whose webhook came is settled by
the webhook path (within a second: the edge settles its webhooks' payments in batches,
``EDGE_SETTLE_BATCH_SECONDS``), so the sweep never sees it: one ConfirmBooking per paid booking (booking's RED
metric), and no "confirmed without a webhook" warning in the edge's log.  The grace periods are
production-length in the test mesh; a test makes only its own payment old (as ``expire_hold`` does
for holds), so nothing depends on the machine's speed.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import Api, eventually
from tests.e2e.test_metrics import scrape, value

pytestmark = pytest.mark.e2e


CONFIRM = "/petpro.booking.v1.BookingService/ConfirmBooking"
CONFIRMED_WITHOUT_WEBHOOK = "reconcile: booking confirmed without a webhook"


async def confirm_calls(api: Api) -> float:
    """ConfirmBooking calls booking_svc answered, whatever their code (its RED metric)."""
    samples = await scrape(api, "booking")
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "grpc_server_handled_total" and ("grpc_method", CONFIRM) in labels
    )


async def sweep_passes(api: Api) -> float:
    return value(await scrape(api, "edge"), "petpro_edge_fulfilment_sweeps_total") or 0.0


async def a_whole_sweep_ran(api: Api) -> None:
    """Wait until a pass of the edge's sweep started and ended after now (two passes completed)."""
    start = await sweep_passes(api)

    async def passed() -> bool:
        return await sweep_passes(api) >= start + 2

    await eventually(passed, timeout=60)


def edge_warnings(api: Api, msg: str, payment_id: str) -> list[dict[str, Any]]:
    """The edge's log lines (JSON, in the stack's home) with this message about this payment."""
    found = []
    for line in api.stack.log_path("edge").read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("msg") == msg and record.get("payment_id") == payment_id:
            found.append(record)
    return found


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
    confirms = await confirm_calls(api)
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
    # the sweep confirmed it, once, and says so: this webhook really was lost
    await a_whole_sweep_ran(api)
    assert await confirm_calls(api) - confirms == 1
    payment_id = (await payment_row(api, session_of(held)))[0]
    [warning] = edge_warnings(api, CONFIRMED_WITHOUT_WEBHOOK, payment_id)
    assert (warning["level"], warning["booking_id"]) == ("WARNING", res["booking_id"])


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
    payment_id = (await payment_row(api, session_of(held)))[0]
    assert len(edge_warnings(api, "reconcile: payment refunded without a webhook", payment_id)) == 1


async def test_a_booking_confirmed_by_its_webhook_is_settled_by_it_and_never_confirmed_again(api: Api):
    """The webhook confirms, and its payment is settled by the edge's next batch (SettlePayments):
    however old the payment grows then, the sweep finds nothing to do, so each paid booking is one
    ConfirmBooking and the edge logs no warning."""
    confirms = await confirm_calls(api)
    paid = []
    for _ in range(2):
        owner = await api.user()
        r = await api.book(owner, await api.pet(owner), await api.unique_slot())
        assert r.status_code == 201, r.text
        held = r.json()
        assert (await api.pay(held["payment_url"])).status_code == 200
        res = await api.wait_status(owner, held["lock_id"], "CONFIRMED")
        paid.append((held, res["booking_id"]))

    for held, booking_id in paid:

        async def settled(held: dict = held) -> tuple | None:
            row = await payment_row(api, session_of(held))
            return row if row[2] else None

        # settled by the webhook path's batch, within a second (no grace period has run out)
        assert (await eventually(settled, timeout=30))[2] == booking_id
        await age_payment(api, session_of(held))  # hours old: unsettled, the sweep would take it now
    await a_whole_sweep_ran(api)

    assert await confirm_calls(api) - confirms == len(paid)
    for held, booking_id in paid:
        payment_id = (await payment_row(api, session_of(held)))[0]
        assert edge_warnings(api, CONFIRMED_WITHOUT_WEBHOOK, payment_id) == []
        bookings = await db(api, "SELECT id::text FROM booking.bookings WHERE lock_id = %s", held["lock_id"])
        assert bookings == [(booking_id,)]
