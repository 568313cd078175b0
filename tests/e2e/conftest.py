"""e2e helpers: a REST client of the mesh (through Envoy, as the mobile app), users, pets, slots."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from petpro.devstack import Stack

CHECKUP = "5d6f8a10-3c2b-4f7e-8d91-0a1b2c3d4e01"  # Happy Paws, 30 min, capacity 1 (seed_data/demo.yaml)
VACCINATION = "5d6f8a10-3c2b-4f7e-8d91-0a1b2c3d4e02"  # capacity 2
HAPPY_PAWS = "7b0c1f0e-2a57-4e0c-9a55-1c1f3b0d5e01"
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns a truthy value (an awaited condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


@dataclass
class User:
    email: str
    token: str
    user_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    def __init__(self, client: httpx.AsyncClient, stack: Stack) -> None:
        self.c = client
        self.stack = stack

    async def user(self) -> User:
        email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
        r = await self.c.post("/v1/auth/register", json={"email": email, "password": "correct-horse", "name": "Ann"})
        assert r.status_code == 201, r.text
        user_id = r.json()["user"]["user_id"]
        r = await self.c.post("/v1/auth/login", json={"email": email, "password": "correct-horse"})
        assert r.status_code == 200, r.text
        return User(email, r.json()["access_token"], user_id)

    async def pet(self, user: User, name: str = "Rex") -> str:
        r = await self.c.post("/v1/pets", json={"name": name, "species": "SPECIES_DOG"}, headers=user.auth)
        assert r.status_code == 201, r.text
        return r.json()["pet"]["pet_id"]

    async def free_slots(self, service_id: str = CHECKUP, days_ahead: int = 2) -> list[str]:
        """Free slots on an opening day ``days_ahead`` or later (Mon to Thu: full hours)."""
        day = dt.date.today() + dt.timedelta(days=days_ahead)
        while day.weekday() > 3:
            day += dt.timedelta(days=1)
        r = await self.c.get(f"/v1/services/{service_id}/availability", params={"date": day.isoformat()})
        assert r.status_code == 200, r.text
        return [s["start_time"] for s in r.json()["slots"] if s["free"]]

    async def unique_slot(self, service_id: str = CHECKUP) -> str:
        """A free slot nobody else in this test session will pick (tests run concurrently with others)."""
        for days in range(2, 150):
            slots = await self.free_slots(service_id, days)
            for slot in slots:
                if slot not in _taken:
                    _taken.add(slot)
                    return slot
        raise AssertionError("no free slot left")

    async def book(self, user: User, pet: str, slot: str, key: str | None = None,
                   service_id: str = CHECKUP) -> httpx.Response:
        headers = {**user.auth, "Idempotency-Key": key or uuid.uuid4().hex}
        body = {"service_id": service_id, "pet_id": pet, "slot": slot, "payment_method": "card"}
        return await self.c.post("/v1/bookings", json=body, headers=headers)

    async def pay(self, payment_url: str, card: str = "4242424242424242") -> httpx.Response:
        """Pay on the hosted page exactly as its form does."""
        async with httpx.AsyncClient(timeout=10) as c:
            return await c.post(payment_url, data={"card_number": card}, headers={"Accept": "application/json"})

    async def reservation(self, user: User, lock_id: str) -> dict[str, Any]:
        r = await self.c.get(f"/v1/reservations/{lock_id}", headers=user.auth)
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_status(self, user: User, lock_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            res = await self.reservation(user, lock_id)
            return res if res["status"] == status else None

        return await eventually(probe, timeout)

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
    from petpro.devstack.mail import list_messages

    return [m for m in list_messages(stack.ctx.mail_dir) if address in m.to]
