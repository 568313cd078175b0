"""e2e helpers: a REST client of the mesh (through Envoy, as the mobile app), users, pets, slots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc
import httpx
import psycopg
import pytest

from petpro_dev.client import CHECKUP, HAPPY_PAWS, VACCINATION, MeshClient, User, eventually
from petpro_dev.devstack import Stack

__all__ = [
    "CHECKUP",
    "HAPPY_PAWS",
    "VACCINATION",
    "Api",
    "User",
    "confirmed_booking",
    "eventually",
    "mails_to",
]


class Api(MeshClient):
    """The mesh client plus what tests need: the stack, slots unique within the session."""

    def __init__(self, client: httpx.AsyncClient, stack: Stack) -> None:
        super().__init__(client)
        self.stack = stack

    async def unique_slot(self, service_id: str = CHECKUP, min_days: int = 2) -> str:
        """A free slot nobody else in this test session will pick, at least ``min_days`` days ahead."""
        for days in range(min_days, 150):
            for slot in await self.free_slots(service_id, days):
                if slot not in _taken:
                    _taken.add(slot)
                    return slot
        raise AssertionError("no free slot left")

    async def expire_hold(self, lock_id: str) -> None:
        """Make one hold's time run out now, as if its TTL had passed (the mesh holds for 600 s, as in
        production, so that no other test depends on the machine's speed).  Only the clock of this hold
        moves; the booking service's own sweep then releases it, as it would at the real expiry."""
        async with await psycopg.AsyncConnection.connect(
            self.stack.env()["DATABASE_URL"], autocommit=True
        ) as db:
            cur = await db.execute(
                "UPDATE booking.reservations SET expires_at = now() - interval '1 second'"
                " WHERE lock_id = %s AND state = 'HELD'",
                (lock_id,),
            )
            assert cur.rowcount == 1, f"no held reservation {lock_id}"

    async def sandbox_events(self, session_id: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.stack.env()["STRIPE_API_BASE"], timeout=10) as c:
            r = await c.get("/_sandbox/events", params={"session": session_id})
            return r.json()["data"]

    async def move_booking(self, booking_id: str, start: datetime) -> None:
        """Let a booking's appointment time be ``start`` (keeping its length), as if the clock had run on
        to it: the tests of "after the start" and "inside the refund window" say so explicitly instead
        of waiting days (the demo catalog books two days ahead at the earliest)."""
        async with await psycopg.AsyncConnection.connect(self.stack.env()["DATABASE_URL"]) as db:
            cur = await db.execute(
                "UPDATE booking.bookings SET start_time = %s, end_time = %s + (end_time - start_time)"
                " WHERE id = %s RETURNING lock_id, end_time",
                (start, start, booking_id),
            )
            row = await cur.fetchone()
            assert row is not None, f"no booking {booking_id}"
            # a unit of its own, so two tests moving bookings to the same moment never collide
            await db.execute(
                "UPDATE booking.reservations SET during = tstzrange(%s, %s),"
                " unit = 1000 + (SELECT count(*) FROM booking.reservations WHERE unit >= 1000)"
                " WHERE lock_id = %s",
                (start, row[1], row[0]),
            )
            await db.commit()

    async def reminders(self, booking_id: str) -> list[tuple[int, datetime, str]]:
        """(offset minutes, due time, state) of a booking's reminders, as the notification worker holds them."""
        async with await psycopg.AsyncConnection.connect(
            self.stack.env()["DATABASE_URL"], autocommit=True
        ) as db:
            cur = await db.execute(
                "SELECT offset_minutes, due_at, state FROM notif.reminders WHERE booking_id = %s"
                " ORDER BY offset_minutes DESC",
                (booking_id,),
            )
            return [(r[0], r[1], r[2]) for r in await cur.fetchall()]

    async def make_reminders_due(self, booking_id: str) -> int:
        """Let a booking's pending reminders fall due now, as if the clock had reached them (the demo
        catalog books two days ahead; the reminders' own offsets are tested from their due times)."""
        async with await psycopg.AsyncConnection.connect(
            self.stack.env()["DATABASE_URL"], autocommit=True
        ) as db:
            cur = await db.execute(
                "UPDATE notif.reminders SET due_at = now() - interval '1 second'"
                " WHERE booking_id = %s AND state = 'PENDING'",
                (booking_id,),
            )
            return cur.rowcount

    async def inbox(self, owner: User, page_size: int = 100) -> list[dict[str, Any]]:
        """The owner's notifications; a 503 (a worker just restarted: "retry later") is retried."""

        async def read() -> tuple[list[dict[str, Any]]] | None:  # (a tuple: an empty inbox is an answer)
            r = await self.c.get("/v1/me/notifications", params={"page_size": page_size}, headers=owner.auth)
            if r.status_code == 503:
                return None
            assert r.status_code == 200, r.text
            return (list(r.json()["notifications"]),)

        return (await eventually(read))[0]

    async def sandbox(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(
            base_url=self.stack.env()["STRIPE_API_BASE"],
            timeout=10,
            headers={"Authorization": "Bearer sk_test_petpro"},
        ) as c:
            return await c.request(method, path, **kwargs)

    async def provider_payment(self, payment_id: str) -> str:
        from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc

        async with grpc.aio.insecure_channel(self.stack.address("payment")) as ch:
            r = await payment_pb2_grpc.PaymentServiceStub(ch).GetPayment(
                payment_pb2.GetPaymentRequest(payment_id=payment_id), timeout=10
            )
            return str(r.payment.provider_payment_id)

    async def sandbox_refunds(self, payment_id: str) -> list[dict[str, Any]]:
        """The refunds Stripe (the sandbox) holds for one of our payments: what was really paid back."""
        pi = await self.provider_payment(payment_id)
        r = await self.sandbox("GET", "/v1/refunds", params={"payment_intent": pi, "limit": 100})
        assert r.status_code == 200, r.text
        return list(r.json()["data"])


_taken: set[str] = set()


@pytest.fixture(scope="session")
async def api(mesh: Stack) -> AsyncIterator[Api]:
    base = f"http://{mesh.ctx.settings.host}:{mesh.ctx.port('envoy')}"
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        yield Api(client, mesh)


async def confirmed_booking(api: Api, owner: User | None = None, min_days: int = 2) -> tuple[User, str, str]:
    """Book and pay a fresh slot; returns (owner, lock_id, booking_id) once confirmed."""
    owner = owner or await api.user()
    r = await api.book(owner, await api.pet(owner), await api.unique_slot(min_days=min_days))
    assert r.status_code == 201, r.text
    held = r.json()
    assert (await api.pay(held["payment_url"])).status_code == 200
    res = await api.wait_status(owner, held["lock_id"], "CONFIRMED")
    return owner, held["lock_id"], res["booking_id"]


def mails_to(stack: Stack, address: str, *, account: bool = False) -> list[Any]:
    """The mail the SMTP sink caught for ``address``: what bookings send (confirmations, changes,
    reminders, invitations), and with ``account=True`` also auth's account mail (verification, reset,
    email change: the ones with an ``X-PetPro-Mail`` header), which every registration now sends."""
    from petpro_dev.devstack.mail import list_messages

    return [
        m
        for m in list_messages(stack.ctx.mail_dir)
        if address in m.to and (account or m.message["X-PetPro-Mail"] is None)
    ]
