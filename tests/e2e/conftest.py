"""e2e helpers: a REST client of the mesh (through Envoy, as the mobile app), users, pets, slots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from petpro_dev.client import CHECKUP, HAPPY_PAWS, VACCINATION, MeshClient, User, eventually
from petpro_dev.devstack import Stack

__all__ = ["CHECKUP", "HAPPY_PAWS", "VACCINATION", "Api", "User", "confirmed_booking", "eventually", "mails_to"]




class Api(MeshClient):
    """The mesh client plus what tests need: the stack, slots unique within the session."""

    def __init__(self, client: httpx.AsyncClient, stack: Stack) -> None:
        super().__init__(client)
        self.stack = stack

    async def unique_slot(self, service_id: str = CHECKUP) -> str:
        """A free slot nobody else in this test session will pick."""
        for days in range(2, 150):
            for slot in await self.free_slots(service_id, days):
                if slot not in _taken:
                    _taken.add(slot)
                    return slot
        raise AssertionError("no free slot left")

    async def expire_hold(self, lock_id: str) -> None:
        """Make one hold's time run out now, as if its TTL had passed (the mesh holds for 600 s, as in
        production, so that no other test depends on the machine's speed).  Only the clock of this hold
        moves; the booking service's own sweep then releases it, as it would at the real expiry."""
        async with await psycopg.AsyncConnection.connect(self.stack.env()["DATABASE_URL"], autocommit=True) as db:
            cur = await db.execute(
                "UPDATE booking.reservations SET expires_at = now() - interval '1 second'"
                " WHERE lock_id = %s AND state = 'HELD'", (lock_id,))
            assert cur.rowcount == 1, f"no held reservation {lock_id}"

    async def sandbox_events(self, session_id: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.stack.env()["STRIPE_API_BASE"], timeout=10) as c:
            r = await c.get("/_sandbox/events", params={"session": session_id})
            return r.json()["data"]


_taken: set[str] = set()


@pytest.fixture(scope="session")
async def api(mesh: Stack) -> AsyncIterator[Api]:
    base = f"http://{mesh.ctx.settings.host}:{mesh.ctx.port('envoy')}"
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        yield Api(client, mesh)


async def confirmed_booking(api: Api, owner: User | None = None) -> tuple[User, str, str]:
    """Book and pay a fresh slot; returns (owner, lock_id, booking_id) once confirmed."""
    owner = owner or await api.user()
    r = await api.book(owner, await api.pet(owner), await api.unique_slot())
    assert r.status_code == 201, r.text
    held = r.json()
    assert (await api.pay(held["payment_url"])).status_code == 200
    res = await api.wait_status(owner, held["lock_id"], "CONFIRMED")
    return owner, held["lock_id"], res["booking_id"]


def mails_to(stack: Stack, address: str) -> list[Any]:
    from petpro_dev.devstack.mail import list_messages

    return [m for m in list_messages(stack.ctx.mail_dir) if address in m.to]
