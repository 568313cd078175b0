"""A small async client of the mesh's public REST API (what the mobile app does), used by
``petpro demo``, the benchmarks and the end-to-end tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

# the demo catalog (petpro_dev/seed_data/demo.yaml)
HAPPY_PAWS = "7b0c1f0e-2a57-4e0c-9a55-1c1f3b0d5e01"
CHECKUP = "5d6f8a10-3c2b-4f7e-8d91-0a1b2c3d4e01"  # 30 min, capacity 1
VACCINATION = "5d6f8a10-3c2b-4f7e-8d91-0a1b2c3d4e02"  # 15 min, capacity 2


MAX_WAIT_SECONDS = 25  # GetReservation's longest long-poll (wait_seconds)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 60.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns a truthy value; AssertionError after ``timeout`` seconds."""
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


class MeshClient:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.c = client

    async def user(self, name: str = "Ann", password: str = "correct-horse", language: str = "en") -> User:
        """A new owner whose client asks for ``language`` (Accept-Language; "" sends none, so the owner's
        locale stays empty and notifications use the clinic's locale, e.g. German at Happy Paws)."""
        email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
        r = await self.c.post(
            "/v1/auth/register",
            json={"email": email, "password": password, "name": name},
            headers={"Accept-Language": language} if language else {},
        )
        assert r.status_code == 201, r.text
        user_id = r.json()["user"]["user_id"]
        return User(email, await self.login(email, password), user_id)

    async def login(self, email: str, password: str) -> str:
        r = await self.c.post("/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    async def pet(self, user: User, name: str = "Rex", species: str = "SPECIES_DOG") -> str:
        r = await self.c.post("/v1/pets", json={"name": name, "species": species}, headers=user.auth)
        assert r.status_code == 201, r.text
        return str(r.json()["pet"]["pet_id"])

    async def free_slots(self, service_id: str = CHECKUP, days_ahead: int = 2) -> list[str]:
        """Free slots of the first Monday-to-Thursday at least ``days_ahead`` days from today."""
        day = dt.date.today() + dt.timedelta(days=days_ahead)
        while day.weekday() > 3:
            day += dt.timedelta(days=1)
        r = await self.c.get(f"/v1/services/{service_id}/availability", params={"date": day.isoformat()})
        assert r.status_code == 200, r.text
        return [s["start_time"] for s in r.json()["slots"] if s["free"]]

    async def book(
        self, user: User, pet: str, slot: str, key: str | None = None, service_id: str = CHECKUP
    ) -> httpx.Response:
        headers = {**user.auth, "Idempotency-Key": key or uuid.uuid4().hex}
        body = {"service_id": service_id, "pet_id": pet, "slot": slot, "payment_method": "card"}
        return await self.c.post("/v1/bookings", json=body, headers=headers)

    async def pay(self, payment_url: str, card: str = "4242424242424242") -> httpx.Response:
        """Pay on the hosted page exactly as its form does.  The page is on another origin (Stripe or the
        sandbox): the same client pools a connection to it too (a client per payment cost ~50 ms of
        CPU for its SSL context, a third of a load generator's budget)."""
        return await self.c.post(
            payment_url, data={"card_number": card}, headers={"Accept": "application/json"}
        )

    async def reservation(self, user: User, lock_id: str, wait: int = 0) -> dict[str, Any]:
        """The reservation; with ``wait`` (seconds, at most 25) a long-poll: while it is
        PENDING_PAYMENT the answer comes when its status changes, or after ``wait`` as it is."""
        if wait > 0:
            r = await self.c.get(
                f"/v1/reservations/{lock_id}",
                params={"wait_seconds": wait},
                headers=user.auth,
                timeout=wait + 10.0,
            )
        else:
            r = await self.c.get(f"/v1/reservations/{lock_id}", headers=user.auth)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def wait_status(self, user: User, lock_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
        """Until the reservation reads ``status``: long-polls while it is PENDING_PAYMENT (one request
        per change), reads every 50 ms otherwise (the long-poll waits only on a held reservation) or
        when the server did not wait."""
        deadline = time.monotonic() + timeout
        while True:
            asked = time.monotonic()
            wait = max(0, min(MAX_WAIT_SECONDS, int(deadline - asked)))
            res = await self.reservation(user, lock_id, wait=wait)
            if res["status"] == status:
                return res
            if time.monotonic() > deadline:
                raise AssertionError(f"status {status} not reached within {timeout}s (last: {res!r})")
            # not held any more (nothing to wait for), or a server that answered a long-poll at once
            # (an older booking replica in a rolling upgrade): read again in 50 ms, as a poll would
            if res["status"] != "PENDING_PAYMENT" or wait == 0 or time.monotonic() - asked < min(wait, 1):
                await asyncio.sleep(0.05)

    async def cancel(
        self, user: User, booking_id: str, reason: str = "", key: str | None = None
    ) -> httpx.Response:
        headers = {**user.auth, "Idempotency-Key": key or uuid.uuid4().hex}
        return await self.c.post(
            f"/v1/bookings/{booking_id}:cancel", json={"reason": reason}, headers=headers
        )

    async def reschedule(
        self, user: User, booking_id: str, slot: str, key: str | None = None
    ) -> httpx.Response:
        headers = {**user.auth, "Idempotency-Key": key or uuid.uuid4().hex}
        return await self.c.post(
            f"/v1/bookings/{booking_id}:reschedule", json={"slot": slot}, headers=headers
        )

    async def booking(self, user: User, booking_id: str) -> dict[str, Any]:
        r = await self.c.get(f"/v1/bookings/{booking_id}", headers=user.auth)
        assert r.status_code == 200, r.text
        return dict(r.json()["booking"])

    async def wait_refund(
        self, user: User, booking_id: str, state: str = "REFUND_STATE_SUCCEEDED", timeout: float = 30
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            b = await self.booking(user, booking_id)
            return b if b.get("refund", {}).get("state") == state else None

        return await eventually(probe, timeout)
