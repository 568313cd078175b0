"""Locust user journey of the mobile app for longer load runs (``make load``):
browse clinics → services → availability → book a free slot → pay on the sandbox page → poll until
confirmed.  Run against a stack from ``make up`` (``petpro seed`` first)::

    make load                       # headless, LOAD_USERS (20) for LOAD_TIME (2m)
"""

from __future__ import annotations

import datetime as dt
import random
import uuid

import requests
from locust import HttpUser, between, task

HAPPY_PAWS = "7b0c1f0e-2a57-4e0c-9a55-1c1f3b0d5e01"
SERVICES = ["5d6f8a10-3c2b-4f7e-8d91-0a1b2c3d4e01", "5d6f8a10-3c2b-4f7e-8d91-0a1b2c3d4e02"]


class PetOwner(HttpUser):
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        email = f"load-{uuid.uuid4().hex[:12]}@example.com"
        self.client.post(
            "/v1/auth/register", json={"email": email, "password": "correct-horse", "name": "Load"}
        )
        token = self.client.post("/v1/auth/login", json={"email": email, "password": "correct-horse"}).json()
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}
        pet = self.client.post(
            "/v1/pets", json={"name": "Rex", "species": "SPECIES_DOG"}, headers=self.headers
        )
        self.pet = pet.json()["pet"]["pet_id"]

    @task(5)
    def browse(self) -> None:
        self.client.get("/v1/clinics")
        self.client.get(f"/v1/clinics/{HAPPY_PAWS}/services", name="/v1/clinics/{id}/services")

    @task(1)
    def book(self) -> None:
        service = random.choice(SERVICES)
        day = dt.date.today() + dt.timedelta(days=random.randint(1, 150))
        slots = (
            self.client.get(
                f"/v1/services/{service}/availability",
                params={"date": day.isoformat()},
                name="/v1/services/{id}/availability",
            )
            .json()
            .get("slots", [])
        )
        free = [s["start_time"] for s in slots if s["free"]]
        if not free:
            return
        with self.client.post(
            "/v1/bookings",
            headers={**self.headers, "Idempotency-Key": uuid.uuid4().hex},
            json={
                "service_id": service,
                "pet_id": self.pet,
                "slot": random.choice(free),
                "payment_method": "card",
            },
            catch_response=True,
        ) as r:
            if r.status_code == 409:  # someone else got the slot first: a normal outcome
                r.success()
                return
            if r.status_code != 201:
                r.failure(f"{r.status_code} {r.text[:200]}")
                return
            held = r.json()
        requests.post(
            held["payment_url"],
            data={"card_number": "4242424242424242"},
            headers={"Accept": "application/json"},
            timeout=10,
        )
        for _ in range(3):  # the app long-polls: each GET waits (up to 25 s) for the hold to change
            res = self.client.get(
                f"/v1/reservations/{held['lock_id']}",
                params={"wait_seconds": 25},
                headers=self.headers,
                name="/v1/reservations/{id}?wait_seconds",
                timeout=35,
            ).json()
            if res.get("status") != "PENDING_PAYMENT":
                break
