"""The booking lifecycle after confirmation, through the REST edge (and gRPC where an operator or a
clinic system would call), against the real mesh: cancel with policy refunds through the Stripe
sandbox, reschedule under the exclusion constraint, clinic outcomes; races and provider failures."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc
from tests.e2e.conftest import CHECKUP, HAPPY_PAWS, Api, User, confirmed_booking, eventually

pytestmark = pytest.mark.e2e

STAFF = ("staff@happypaws.example", "happypaws-demo")
FLUFFY = "7b0c1f0e-2a57-4e0c-9a55-1c1f3b0d5e02"
FLUFFY_STAFF = ("staff@fluffycuts.example", "fluffycuts-demo")
PRICE = 4500  # the check-up; its policy: full refund ≥ 24 h before, 50 % inside, reschedule until 2 h before


def at(slot: str) -> datetime:
    return datetime.fromisoformat(slot.replace("Z", "+00:00"))


async def free(api: Api, slot: str, service: str = CHECKUP) -> bool:
    r = await api.c.get(f"/v1/services/{service}/availability", params={"date": slot[:10]})
    return next(s for s in r.json()["slots"] if s["start_time"] == slot)["free"]


async def staff_token(api: Api, who: tuple[str, str] = STAFF) -> dict[str, str]:
    return {"Authorization": f"Bearer {await api.login(*who)}"}


async def booked(api: Api, min_days: int = 2) -> tuple[User, str, dict]:
    owner, _, booking_id = await confirmed_booking(api, min_days=min_days)
    return owner, booking_id, await api.booking(owner, booking_id)


async def test_confirmed_booking_carries_its_policy_and_what_the_owner_may_do(api: Api):
    _, _, b = await booked(api)
    assert b["cancellation_policy"] == {
        "full_refund_hours": 24,
        "late_refund_percent": 50,
        "reschedule_cutoff_hours": 2,
    }
    assert b["can_cancel"] is True
    assert b["refund_if_cancelled_now"] == {"amount_minor": str(PRICE), "currency": "EUR"}
    assert at(b["reschedule_deadline"]) == at(b["slot_start_time"]) - timedelta(hours=2)


async def test_owner_cancel_refunds_in_full_frees_the_slot_and_a_retry_answers_the_same(api: Api):
    owner, booking_id, b = await booked(api)
    slot = b["slot_start_time"]
    assert not await free(api, slot)

    r = await api.cancel(owner, booking_id, "changed plans", key="cancel-1")
    assert r.status_code == 200, r.text
    cancelled = r.json()["booking"]
    assert cancelled["state"] == "BOOKING_STATE_CANCELLED"
    assert cancelled["cancelled_by"] == "BOOKING_ACTOR_OWNER"
    assert cancelled["refund"]["amount"] == {"amount_minor": str(PRICE), "currency": "EUR"}
    assert cancelled["can_cancel"] is False and "reschedule_deadline" not in cancelled
    assert await free(api, slot)

    again = await api.cancel(owner, booking_id, "changed plans", key="cancel-1")
    assert again.status_code == 200 and again.json()["booking"]["booking_id"] == booking_id
    other = await api.cancel(owner, booking_id, "again", key="cancel-2")
    assert other.status_code == 400 and other.json()["reason"] == "BOOKING_NOT_CONFIRMED"

    done = await api.wait_refund(owner, booking_id)
    assert done["refund"]["provider_refund_id"].startswith("re_")
    refunds = await api.sandbox_refunds(b["payment_id"])
    assert [(x["amount"], x["status"]) for x in refunds] == [(PRICE, "succeeded")]


async def test_cancel_inside_the_window_refunds_the_policy_share(api: Api):
    owner, booking_id, b = await booked(api)
    await api.move_booking(booking_id, datetime.now(UTC) + timedelta(hours=10))
    view = await api.booking(owner, booking_id)
    assert view["refund_if_cancelled_now"]["amount_minor"] == str(PRICE // 2)
    r = await api.cancel(owner, booking_id)
    assert r.status_code == 200, r.text
    assert r.json()["booking"]["refund"]["amount"]["amount_minor"] == str(PRICE // 2)
    await api.wait_refund(owner, booking_id)
    assert [x["amount"] for x in await api.sandbox_refunds(b["payment_id"])] == [PRICE // 2]


async def test_owner_cannot_cancel_after_the_start_and_nothing_changes(api: Api):
    owner, booking_id, b = await booked(api)
    await api.move_booking(booking_id, datetime.now(UTC) - timedelta(minutes=5))
    r = await api.cancel(owner, booking_id)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["reason"] == "BOOKING_STARTED"
    after = await api.booking(owner, booking_id)
    assert (after["state"], after["can_cancel"]) == ("BOOKING_STATE_CONFIRMED", False)
    assert await api.sandbox_refunds(b["payment_id"]) == []


async def test_unknown_or_foreign_booking_is_404(api: Api):
    owner, booking_id, _ = await booked(api)
    stranger = await api.user()
    for who, bid in ((stranger, booking_id), (owner, str(uuid.uuid4()))):
        for r in (await api.cancel(who, bid), await api.reschedule(who, bid, "2030-01-07T09:00:00Z")):
            assert r.status_code == 404, r.text
            assert r.json()["reason"] == "BOOKING_NOT_FOUND"
    assert (await api.booking(owner, booking_id))["state"] == "BOOKING_STATE_CONFIRMED"


async def test_cancel_twice_at_once_has_one_outcome_and_one_refund(api: Api):
    owner, booking_id, b = await booked(api)
    results = await asyncio.gather(*(api.cancel(owner, booking_id) for _ in range(8)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [400] * 7, [r.text for r in results]
    await api.wait_refund(owner, booking_id)
    assert len(await api.sandbox_refunds(b["payment_id"])) == 1


async def test_cancel_racing_replayed_payment_webhooks_refunds_once(api: Api):
    """The confirming webhook delivered again while the owner cancels: ConfirmBooking answers with the
    same (cancelled) booking, so the edge never refunds the payment a second time."""
    owner = await api.user()
    r = await api.book(owner, await api.pet(owner), await api.unique_slot())
    held = r.json()
    assert (await api.pay(held["payment_url"])).status_code == 200
    res = await api.wait_status(owner, held["lock_id"], "CONFIRMED")
    session = held["payment_url"].rsplit("/", 1)[1]
    completed = [e for e in await api.sandbox_events(session) if e["type"] == "checkout.session.completed"]
    replays = [api.sandbox("POST", f"/_sandbox/events/{completed[0]['id']}/resend") for _ in range(3)]
    out = await asyncio.gather(api.cancel(owner, res["booking_id"]), *replays)
    assert out[0].status_code == 200, out[0].text

    async def delivered() -> bool:
        events = await api.sandbox_events(session)
        attempts = [a for e in events if e["type"] == "checkout.session.completed" for a in e["attempts"]]
        return len(attempts) >= 4 and all(a["status_code"] == 200 for a in attempts)

    await eventually(delivered)
    await api.wait_refund(owner, res["booking_id"])
    b = await api.booking(owner, res["booking_id"])
    assert len(await api.sandbox_refunds(b["payment_id"])) == 1


async def test_refund_failing_at_the_provider_is_retried_until_it_succeeds(api: Api):
    owner, booking_id, b = await booked(api)
    # each attempt of the SDK (1 + 2 retries) meets a failure: the first dispatch fails, then one more
    assert (await api.sandbox("POST", "/_sandbox/refunds/failures", json={"count": 4})).status_code == 200
    try:
        r = await api.cancel(owner, booking_id)
        assert r.status_code == 200, r.text
        assert r.json()["booking"]["state"] == "BOOKING_STATE_CANCELLED"

        async with grpc.aio.insecure_channel(api.stack.address("booking")) as ch:
            stub = booking_pb2_grpc.BookingServiceStub(ch)

            async def listed() -> bool:
                pending = await stub.ListPendingRefunds(booking_pb2.ListPendingRefundsRequest(page_size=100))
                return any(x.booking_id == booking_id for x in pending.bookings)

            await eventually(listed)  # until its refund succeeds, operators see it as pending
            await api.wait_refund(owner, booking_id, timeout=60)
            assert not await listed()
    finally:
        await api.sandbox("POST", "/_sandbox/refunds/failures", json={"count": 0})
    assert len(await api.sandbox_refunds(b["payment_id"])) == 1


async def test_a_refund_stripe_accepted_then_failed_is_made_again_until_one_succeeds(api: Api):
    """Stripe takes the refund (``pending``), then the card's issuer fails it (``refund.updated`` with
    status ``failed``, ``refund.failed``): the booking stays cancelled, operators see the refund as
    pending, and a new refund (a new key per round) is made until one succeeds — exactly one."""
    owner, booking_id, b = await booked(api)
    doom = await api.sandbox(
        "POST",
        "/_sandbox/refunds/async-failures",
        json={"count": 2, "after_seconds": 0.5, "failure_reason": "expired_or_canceled_card"},
    )
    assert doom.status_code == 200, doom.text
    try:
        r = await api.cancel(owner, booking_id)
        assert r.status_code == 200, r.text
        assert r.json()["booking"]["state"] == "BOOKING_STATE_CANCELLED"

        async with grpc.aio.insecure_channel(api.stack.address("booking")) as ch:
            stub = booking_pb2_grpc.BookingServiceStub(ch)

            async def listed() -> bool:
                pending = await stub.ListPendingRefunds(booking_pb2.ListPendingRefundsRequest(page_size=100))
                return any(x.booking_id == booking_id for x in pending.bookings)

            await eventually(listed)

            async def two_failed() -> list | None:  # type: ignore[type-arg]
                got = await api.sandbox_refunds(b["payment_id"])
                return got if [x["status"] for x in got].count("failed") == 2 else None

            await eventually(two_failed, timeout=60)
            done = await api.wait_refund(owner, booking_id, timeout=60)
            assert not await listed()
    finally:
        await api.sandbox("POST", "/_sandbox/refunds/async-failures", json={"count": 0})
    assert done["state"] == "BOOKING_STATE_CANCELLED"
    refunds = await api.sandbox_refunds(b["payment_id"])
    assert sorted((x["status"], x["amount"]) for x in refunds) == [
        ("failed", PRICE),
        ("failed", PRICE),
        ("succeeded", PRICE),
    ]
    assert {x["failure_reason"] for x in refunds if x["status"] == "failed"} == {"expired_or_canceled_card"}
    succeeded = next(x for x in refunds if x["status"] == "succeeded")
    assert done["refund"]["provider_refund_id"] == succeeded["id"]

    async with grpc.aio.insecure_channel(api.stack.address("payment")) as ch:  # the money went back once

        async def refunded() -> bool:
            got = await payment_pb2_grpc.PaymentServiceStub(ch).GetPayment(
                payment_pb2.GetPaymentRequest(payment_id=b["payment_id"]), timeout=10
            )
            return got.payment.status == payment_pb2.PAYMENT_STATUS_REFUNDED

        await eventually(refunded)


async def test_refund_state_follows_the_refund_updated_webhook(api: Api):
    owner, booking_id, _ = await booked(api)
    assert (
        await api.sandbox("POST", "/_sandbox/refunds/mode", json={"status": "pending"})
    ).status_code == 200
    try:
        assert (await api.cancel(owner, booking_id)).status_code == 200
        processing = await api.wait_refund(owner, booking_id, "REFUND_STATE_PROCESSING")
    finally:
        await api.sandbox("POST", "/_sandbox/refunds/mode", json={"status": "succeeded"})
    refund_id = processing["refund"]["provider_refund_id"]
    settled = await api.sandbox("POST", f"/_sandbox/refunds/{refund_id}/settle", json={"status": "succeeded"})
    assert settled.status_code == 200, settled.text
    await api.wait_refund(owner, booking_id)


async def test_reschedule_moves_the_booking_and_both_slots_follow(api: Api):
    owner, booking_id, b = await booked(api)
    old, new = b["slot_start_time"], await api.unique_slot()
    r = await api.reschedule(owner, booking_id, new, key="move-1")
    assert r.status_code == 200, r.text
    moved = r.json()["booking"]
    assert (moved["booking_id"], moved["state"], moved["slot_start_time"]) == (
        booking_id,
        "BOOKING_STATE_CONFIRMED",
        new,
    )
    assert moved["payment_id"] == b["payment_id"] and moved["reschedule_count"] == 1
    assert await free(api, old) and not await free(api, new)
    again = await api.reschedule(owner, booking_id, new, key="move-1")
    assert again.status_code == 200 and again.json()["booking"]["reschedule_count"] == 1
    assert (await api.reschedule(owner, booking_id, new)).json()["reason"] == "SLOT_SAME"


async def test_reschedule_to_a_taken_past_or_closed_slot_changes_nothing(api: Api):
    owner, booking_id, b = await booked(api)
    _, _, other = await booked(api)
    cases = {
        other["slot_start_time"]: (409, "SLOT_UNAVAILABLE"),
        (datetime.now(UTC) - timedelta(days=1))
        .replace(minute=0, second=0, microsecond=0)
        .isoformat()
        .replace("+00:00", "Z"): (400, "SLOT_IN_PAST"),
        b["slot_start_time"][:11] + "03:00:00Z": (400, "SLOT_OUTSIDE_HOURS"),
        b["slot_start_time"][:14] + "07:00Z": (400, "SLOT_OFF_GRID"),
    }
    for slot, (code, reason) in cases.items():
        r = await api.reschedule(owner, booking_id, slot)
        body = r.json()
        named = [v["reason"] for v in body.get("violations", []) if v["field"] == "slot_start_time"] or [
            body["reason"]
        ]
        assert (r.status_code, named[0]) == (code, reason), (slot, r.text)
    assert (await api.booking(owner, booking_id))["slot_start_time"] == b["slot_start_time"]
    assert not await free(api, b["slot_start_time"])


async def test_reschedule_after_the_cutoff_is_refused(api: Api):
    owner, booking_id, _ = await booked(api)
    await api.move_booking(booking_id, datetime.now(UTC) + timedelta(minutes=90))  # cut-off is 2 h before
    view = await api.booking(owner, booking_id)
    assert "reschedule_deadline" not in view
    r = await api.reschedule(owner, booking_id, await api.unique_slot())
    assert r.status_code == 400 and r.json()["reason"] == "RESCHEDULE_CUTOFF_PASSED", r.text


async def test_reschedule_racing_another_owner_for_the_target_slot_has_one_winner(api: Api):
    owner, booking_id, _ = await booked(api)
    rival = await api.user()
    rival_pet = await api.pet(rival)
    for _ in range(5):
        target = await api.unique_slot()
        moved, held = await asyncio.gather(
            api.reschedule(owner, booking_id, target), api.book(rival, rival_pet, target)
        )
        assert sorted((moved.status_code, held.status_code)) in ([200, 409], [201, 409]), (
            moved.text,
            held.text,
        )
        assert not await free(api, target)
        now = await api.booking(owner, booking_id)
        assert (now["slot_start_time"] == target) == (moved.status_code == 200)
        assert not await free(api, now["slot_start_time"])


async def test_two_reschedules_of_one_booking_at_once_leave_one_slot_held(api: Api):
    owner, booking_id, b = await booked(api)
    x, y = await api.unique_slot(), await api.unique_slot()
    rx, ry = await asyncio.gather(api.reschedule(owner, booking_id, x), api.reschedule(owner, booking_id, y))
    assert {rx.status_code, ry.status_code} <= {200}, (rx.text, ry.text)  # serialized on the booking row
    final = await api.booking(owner, booking_id)
    assert final["slot_start_time"] in (x, y) and final["reschedule_count"] == 2
    other = y if final["slot_start_time"] == x else x
    assert await free(api, other) and await free(api, b["slot_start_time"])
    assert not await free(api, final["slot_start_time"])


async def test_clinic_staff_cancel_in_full_with_a_reason_only_for_their_clinic(api: Api):
    owner, booking_id, b = await booked(api)
    await api.move_booking(booking_id, datetime.now(UTC) + timedelta(hours=3))  # inside the owner's window
    url = f"/v1/clinics/{HAPPY_PAWS}/bookings/{booking_id}:cancel"
    assert (await api.c.post(url, json={"reason": "x"}, headers=owner.auth)).status_code == 403
    fluffy = await staff_token(api, FLUFFY_STAFF)
    assert (await api.c.post(url, json={"reason": "x"}, headers=fluffy)).status_code == 403
    foreign = await api.c.post(
        f"/v1/clinics/{FLUFFY}/bookings/{booking_id}:cancel", json={"reason": "x"}, headers=fluffy
    )
    assert foreign.status_code == 404, foreign.text
    staff = await staff_token(api)
    missing = await api.c.post(url, json={}, headers=staff)
    assert missing.status_code == 400, missing.text
    r = await api.c.post(url, json={"reason": "the vet is ill"}, headers=staff)
    assert r.status_code == 200, r.text
    got = r.json()["booking"]
    assert (got["cancelled_by"], got["cancel_reason"]) == ("BOOKING_ACTOR_CLINIC", "the vet is ill")
    assert got["refund"]["amount"]["amount_minor"] == str(PRICE)
    await api.wait_refund(owner, booking_id)
    assert [x["amount"] for x in await api.sandbox_refunds(b["payment_id"])] == [PRICE]


@pytest.mark.parametrize(
    ("action", "state"), [("complete", "BOOKING_STATE_COMPLETED"), ("markNoShow", "BOOKING_STATE_NO_SHOW")]
)
async def test_clinic_records_the_outcome_after_the_start_and_keeps_the_payment(
    api: Api, action: str, state: str
):
    owner, booking_id, b = await booked(api)
    staff = await staff_token(api)
    url = f"/v1/clinics/{HAPPY_PAWS}/bookings/{booking_id}:{action}"
    early = await api.c.post(url, json={}, headers=staff)
    assert early.status_code == 400 and early.json()["reason"] == "BOOKING_NOT_STARTED", early.text
    assert (await api.c.post(url, json={}, headers=owner.auth)).status_code == 403
    await api.move_booking(booking_id, datetime.now(UTC) - timedelta(minutes=1))
    r = await api.c.post(url, json={}, headers=staff)
    assert r.status_code == 200, r.text
    assert r.json()["booking"]["state"] == state
    assert (await api.cancel(owner, booking_id)).json()["reason"] == "BOOKING_NOT_CONFIRMED"
    assert await api.sandbox_refunds(b["payment_id"]) == []


async def test_changes_reach_the_owner_and_the_clinic_feed_in_order_once_each(api: Api):
    from tests.e2e.conftest import mails_to
    from tests.e2e.test_notifications import feed

    token = (await staff_token(api))["Authorization"].split()[1]
    owner, booking_id, _b = await booked(api)
    new = await api.unique_slot()
    assert (await api.reschedule(owner, booking_id, new)).status_code == 200
    assert (await api.cancel(owner, booking_id, "moving away")).status_code == 200

    async def three_mails():  # type: ignore[no-untyped-def]
        mails = mails_to(api.stack, owner.email)
        return mails if len(mails) >= 3 else None

    mails = sorted(await eventually(three_mails), key=lambda m: m.message["Date"])
    subjects = sorted(m.subject for m in mails)
    assert [s.split(":")[0] for s in subjects] == ["Booking cancelled", "Booking confirmed", "Booking moved"]
    cancelled = next(m for m in mails if m.subject.startswith("Booking cancelled"))
    assert "We refund €45.00" in cancelled.body() and "moving away" in cancelled.body()

    async def pushes():  # type: ignore[no-untyped-def]
        inbox = (await api.c.get("/v1/me/notifications", headers=owner.auth)).json()["notifications"]
        return inbox if len(inbox) >= 3 else None

    kinds = sorted(n["data"]["type"] for n in await eventually(pushes))
    assert kinds == ["booking.cancelled", "booking.created", "booking.rescheduled"]

    seen: list = []

    async def all_three():  # type: ignore[no-untyped-def]
        after = seen[-1].cursor if seen else 0
        seen.extend(await feed(api, token, HAPPY_PAWS, after, 200, timeout=1))
        return sum(e.booking.booking_id == booking_id for e in seen) >= 3

    await eventually(all_three, timeout=120)
    ours = [e for e in seen if e.booking.booking_id == booking_id]
    assert [e.booking.version for e in ours] == [1, 2, 3]  # created, rescheduled, cancelled: in order, once
    assert ours[1].booking.slot_start_time.ToDatetime(tzinfo=UTC) == at(new)
    assert ours[2].booking.refund_amount.amount_minor == PRICE and ours[2].booking.reason == "moving away"


async def test_reminders_follow_the_booking_and_are_sent_once_across_a_worker_kill(api: Api):
    import os
    import signal

    from tests.e2e.conftest import mails_to

    owners, bookings = [], []
    for _ in range(4):  # 4+ days ahead: both reminders (48 h, 2 h before) lie ahead whatever the time of day
        owner, booking_id, b = await booked(api, min_days=4)
        owners.append(owner)
        bookings.append((booking_id, b))

    async def scheduled(booking_id: str):  # type: ignore[no-untyped-def]
        rows = await api.reminders(booking_id)
        return rows if len(rows) == 2 else None

    first_id, first = bookings[0]
    rows = await eventually(lambda: scheduled(first_id))
    start = at(first["slot_start_time"])
    assert [(o, due, s) for o, due, s in rows] == [
        (2880, start - timedelta(hours=48), "PENDING"),
        (120, start - timedelta(hours=2), "PENDING"),
    ]
    new = await api.unique_slot(min_days=4)  # moved: the reminders follow the new start
    assert (await api.reschedule(owners[0], first_id, new)).status_code == 200

    async def moved():  # type: ignore[no-untyped-def]
        got = await api.reminders(first_id)
        return got if got and got[1][1] == at(new) - timedelta(hours=2) else None

    await eventually(moved)
    cancelled_id, _ = bookings[1]
    await eventually(lambda: scheduled(cancelled_id))
    assert (await api.cancel(owners[1], cancelled_id)).status_code == 200

    async def dropped():  # type: ignore[no-untyped-def]
        return all(s == "DROPPED" for _, _, s in await api.reminders(cancelled_id))

    await eventually(dropped)
    for booking_id, _ in bookings:
        await eventually(lambda bid=booking_id: scheduled(bid))
    # every reminder falls due at once; the worker is killed while sending them and restarted
    for booking_id, _ in bookings:
        await api.make_reminders_due(booking_id)
    notif_pid = api.stack.pid("notif")
    assert notif_pid

    def reminder_mails(owner: User) -> list:  # type: ignore[type-arg]
        return [m for m in mails_to(api.stack, owner.email) if m.subject.startswith("Reminder:")]

    await eventually(lambda: asyncio.sleep(0, any(reminder_mails(o) for o in owners)), interval=0.01)
    os.kill(notif_pid, signal.SIGKILL)
    await asyncio.to_thread(api.stack.up, ["notif"])

    async def all_sent():  # type: ignore[no-untyped-def]
        states = [s for bid, _ in bookings if bid != cancelled_id for _, _, s in await api.reminders(bid)]
        return states and all(s == "SENT" for s in states)

    await eventually(all_sent, timeout=120)
    for i, owner in enumerate(owners):
        # none lost, none doubled: a send accepted in the instant before the kill may repeat, with the
        # same Message-ID (one message to the owner's mail client), as in test_notifications
        ids = {m.message["Message-ID"] for m in reminder_mails(owner)}
        assert len(ids) == (0 if i == 1 else 2), (i, ids)
        inbox = await api.inbox(owner)
        assert sum(n["data"]["type"] == "booking.reminder" for n in inbox) == (0 if i == 1 else 2)


async def test_notification_preferences_switch_off_change_mails_but_not_cancellations(api: Api):
    from tests.e2e.conftest import mails_to

    owner, booking_id, _ = await booked(api)
    url = "/v1/me/notification-preferences"
    got = await api.c.get(url, headers=owner.auth)
    assert got.status_code == 200, got.text
    assert got.json()["preferences"] == {
        "reminders_email": True,
        "reminders_push": True,
        "changes_email": True,
        "changes_push": True,
        "reminders_sms": True,
        "changes_sms": True,
    }
    changed = await api.c.patch(url, json={"changes_email": False}, headers=owner.auth)
    assert changed.status_code == 200, changed.text
    assert changed.json()["preferences"]["changes_email"] is False
    assert changed.json()["preferences"]["reminders_email"] is True  # untouched
    bad = await api.c.patch(url, json={"changes_email": [1]}, headers=owner.auth)
    assert bad.status_code == 400, bad.text
    assert (await api.c.get(url, headers=owner.auth)).json()["preferences"]["changes_email"] is False
    assert (await api.c.get(url)).status_code == 401

    assert (await api.reschedule(owner, booking_id, await api.unique_slot())).status_code == 200
    assert (await api.cancel(owner, booking_id)).status_code == 200

    async def pushes():  # type: ignore[no-untyped-def]
        inbox = (await api.c.get("/v1/me/notifications", headers=owner.auth)).json()["notifications"]
        return inbox if len(inbox) >= 3 else None

    assert sorted(n["data"]["type"] for n in await eventually(pushes)) == [
        "booking.cancelled",
        "booking.created",
        "booking.rescheduled",
    ]  # pushes still on

    async def cancel_mail():  # type: ignore[no-untyped-def]
        return [m for m in mails_to(api.stack, owner.email) if m.subject.startswith("Booking cancelled")]

    await eventually(cancel_mail)  # transactional: always sent
    assert not [m for m in mails_to(api.stack, owner.email) if m.subject.startswith("Booking moved")]


async def test_reminders_across_a_broker_restart_none_lost_none_doubled(api: Api):
    import os
    import signal

    from tests.e2e.conftest import mails_to

    a_owner, a_id, _ = await booked(api, min_days=4)  # both reminders ahead whatever the time of day

    async def scheduled(booking_id: str, start: str):  # type: ignore[no-untyped-def]
        rows = await api.reminders(booking_id)
        return len(rows) == 2 and all(due == at(start) - timedelta(minutes=o) for o, due, _ in rows)

    a_start = (await api.booking(a_owner, a_id))["slot_start_time"]
    await eventually(lambda: scheduled(a_id, a_start))  # A's reminders exist before the outage
    kafka_pid = api.stack.pid("kafka")
    assert kafka_pid
    os.kill(kafka_pid, signal.SIGKILL)  # memory storage: messages and offsets are gone with it
    b_owner, _, b_id = await confirmed_booking(api, min_days=4)  # its booking.created waits in the outbox
    new = await api.unique_slot(min_days=4)
    assert (await api.reschedule(a_owner, a_id, new)).status_code == 200  # so does A's booking.rescheduled
    await asyncio.to_thread(api.stack.up, ["kafka"])

    b_start = (await api.booking(b_owner, b_id))["slot_start_time"]
    await eventually(lambda: scheduled(b_id, b_start), timeout=90)
    await eventually(lambda: scheduled(a_id, new), timeout=90)
    for booking_id in (a_id, b_id):
        assert await api.make_reminders_due(booking_id) == 2

    async def all_sent():  # type: ignore[no-untyped-def]
        states = [s for bid in (a_id, b_id) for _, _, s in await api.reminders(bid)]
        return states == ["SENT"] * 4

    await eventually(all_sent, timeout=120)
    for owner in (a_owner, b_owner):
        ids = [
            m.message["Message-ID"]
            for m in mails_to(api.stack, owner.email)
            if m.subject.startswith("Reminder:")
        ]
        assert len(ids) == len(set(ids)) == 2, ids
