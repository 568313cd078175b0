"""``petpro demo``: the seed's booking flow against the running stack, step by step with timings —
register, add a pet, find a free slot, book, pay on the (sandbox) payment page, wait for the
webhook's confirmation, then show the email, the push in the owner's inbox and the clinic feed event;
then reschedule the booking and cancel it, and wait for its refund."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import grpc
import httpx

from petpro.settings import StackSettings
from petpro_api.notification.v1 import clinic_feed_pb2, clinic_feed_pb2_grpc
from petpro_dev.client import CHECKUP, HAPPY_PAWS, MeshClient, eventually
from petpro_dev.devstack.mail import list_messages

T = TypeVar("T")
STAFF = ("staff@happypaws.example", "happypaws-demo")


class Steps:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.n = 0

    async def run(self, title: str, work: Awaitable[T]) -> T:
        self.n += 1
        start = time.perf_counter()
        print(f"{self.n:>2}. {title:<52}", end="", flush=True)
        result = await work
        print(f"{(time.perf_counter() - start) * 1000:8.1f} ms")
        return result

    def total(self) -> float:
        return time.perf_counter() - self.t0


async def _feed_event(stack: StackSettings, token: str, booking_id: str) -> clinic_feed_pb2.ClinicEvent:
    async with grpc.aio.insecure_channel(stack.addr("notif")) as channel:
        call = clinic_feed_pb2_grpc.ClinicFeedServiceStub(channel).Subscribe(
            clinic_feed_pb2.SubscribeRequest(clinic_id=HAPPY_PAWS, after_cursor=0),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        async for resp in call:
            if resp.event.booking.booking_id == booking_id:
                call.cancel()
                return resp.event
    raise AssertionError("feed ended without the booking")


async def run(stack: StackSettings) -> None:
    base = f"http://{stack.host}:{stack.port('envoy')}"
    print(f"PetPro demo against {base}\n")
    steps = Steps()
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        api = MeshClient(http)
        clinics = await steps.run("list clinics (public)", http.get("/v1/clinics"))
        if not clinics.json().get("clinics"):
            raise SystemExit("no clinics: run `petpro seed` first")
        owner = await steps.run("register + log in a pet owner", api.user(name="Demo Owner"))
        pet = await steps.run("add a pet (Rex the dog)", api.pet(owner))
        slots = []
        for days in range(1, 60):
            slots = await api.free_slots(CHECKUP, days)
            if slots:
                break
        slot = slots[0]
        print(f"    free slot for 'General check-up': {slot}")
        held = await steps.run("POST /v1/bookings (hold + payment session)", api.book(owner, pet, slot))
        body = held.json()
        print(
            f"    → {held.status_code} {body['status']}, lock {body['lock_id']}\n    pay at {body['payment_url']}"
        )
        await steps.run("pay on the hosted payment page", api.pay(body["payment_url"]))
        res = await steps.run(
            "wait for webhook → ConfirmBooking", api.wait_status(owner, body["lock_id"], "CONFIRMED")
        )
        booking_id = res["booking_id"]
        print(f"    booking {booking_id} confirmed")

        async def mail():  # type: ignore[no-untyped-def]
            return [  # the booking's mail, not the account's verification mail
                m
                for m in list_messages(stack.home_abs / "mail")
                if owner.email in m.to and m.message["X-PetPro-Booking-Id"] == booking_id
            ]

        mails = await steps.run("wait for the confirmation email", eventually(mail))
        print(f"    email: {mails[0].subject!r} → {mails[0].to}")

        async def push():  # type: ignore[no-untyped-def]
            r = await http.get("/v1/me/notifications", headers=owner.auth)
            return r.json()["notifications"]

        inbox = await steps.run("wait for the push in the owner's inbox", eventually(push))
        print(f"    push: {inbox[0]['title']!r}: {inbox[0]['body']!r}")
        staff = await api.login(*STAFF)
        event = await steps.run(
            "clinic feed (gRPC stream) shows the booking",
            asyncio.wait_for(_feed_event(stack, staff, booking_id), 20),
        )
        print(f"    clinic event #{event.cursor}: {event.booking.service_name} for {event.booking.pet_name}")

        # the lifecycle after confirmation: what the owner may do, a move, a cancellation with its refund
        view = await api.booking(owner, booking_id)
        print(
            f"    can cancel: {view['can_cancel']}, refund if cancelled now: "
            f"{view['refund_if_cancelled_now']['amount_minor']} {view['refund_if_cancelled_now']['currency']}, "
            f"reschedule until {view.get('reschedule_deadline', '-')}"
        )
        later = next((s for s in slots[1:]), None)
        if later is not None:
            moved = await steps.run(
                "POST /v1/bookings/{id}:reschedule", api.reschedule(owner, booking_id, later)
            )
            print(f"    → {moved.status_code}, now at {moved.json()['booking']['slot_start_time']}")
        cancelled = await steps.run("POST /v1/bookings/{id}:cancel", api.cancel(owner, booking_id, "demo"))
        refund = cancelled.json()["booking"]["refund"]
        print(
            f"    → {cancelled.status_code} {cancelled.json()['booking']['state']}, refund "
            f"{refund['amount']['amount_minor']} {refund['amount']['currency']}"
        )
        done = await steps.run(
            "wait for the refund (Stripe refund + webhook)", api.wait_refund(owner, booking_id)
        )
        print(f"    refund {done['refund']['provider_refund_id']}: {done['refund']['state']}")
    print(
        f"\nthe whole flow took {steps.total():.2f} s; clinic dashboard: {base}/clinic/dashboard "
        f"({STAFF[0]} / {STAFF[1]})"
    )
