"""The clinic side on a fresh install, with no seed file: `petpro admin create-clinic`, the invitation
email, staff, a service, and an owner's paid booking, on a mesh of its own started empty."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from petpro_dev.devstack import Stack

from .conftest import Api
from .test_clinic_ops import (
    Clinic,
    _day,
    _email,
    _petpro,
    accept_invitation,
    add_service,
    book_and_pay,
    free_slots,
)

pytestmark = pytest.mark.e2e


async def test_a_new_clinic_is_created_staffed_given_services_and_hours_and_booked_on_an_empty_mesh(
    make_stack: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    from petpro_dev.devstack import default_components

    monkeypatch.setenv("EDGE_ENVOY_RATE_LIMIT_BURST", "0")  # this test's own requests only
    stack = make_stack(default_components())
    await asyncio.to_thread(stack.up)
    base = f"http://{stack.ctx.settings.host}:{stack.ctx.port('envoy')}"
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        api = Api(client, stack)
        assert (await client.get("/v1/clinics")).json()["clinics"] == []  # nothing seeded

        settings = stack.ctx.settings
        env: dict[str, Any] = {
            **os.environ,
            **stack.env(),
            "PETPRO_HOME": str(settings.home),
            "PETPRO_PORT_BASE": str(settings.port_base),
            "PETPRO_ADMIN_PASSWORD": "fresh-root-1",
        }
        admin_email = _email("fresh-admin")
        done = await asyncio.to_thread(
            _petpro,
            [
                "admin",
                "create-clinic",
                "--name",
                "First Clinic",
                "--time-zone",
                "Europe/Berlin",
                "--admin-email",
                admin_email,
                "--hours",
                "mon-sun=08:00-18:00",
            ],
            env,
        )
        assert done.returncode == 0, done.stderr
        clinic_id = re.search(r"clinic_id ([0-9a-f-]{36})", done.stdout)[1]

        await accept_invitation(api, admin_email)
        admin = await api.login(admin_email, "clinic-pass-1")
        staff_email = _email("fresh-staff")
        r = await client.post(
            f"/v1/clinics/{clinic_id}/invitations",
            headers={"Authorization": f"Bearer {admin}"},
            json={"email": staff_email, "role": "CLINIC_ROLE_STAFF"},
        )
        assert r.status_code == 201, r.text
        await accept_invitation(api, staff_email)
        staff = await api.login(staff_email, "clinic-pass-1")

        clinic = Clinic(clinic_id, admin, staff, "")
        svc = await add_service(api, clinic, name="First check-up")
        owner = await api.user()
        day = _day(2)
        slot = (await free_slots(api, svc["service_id"], day))[0]
        booking_id = await book_and_pay(api, owner, await api.pet(owner), svc["service_id"], slot)

        r = await client.get(
            f"/v1/clinics/{clinic_id}/bookings",
            headers={"Authorization": f"Bearer {staff}"},
            params={"start_time": slot, "end_time": f"{_day(3).isoformat()}T23:00:00Z"},
        )
        assert [b["booking"]["booking_id"] for b in r.json()["bookings"]] == [booking_id], r.text
