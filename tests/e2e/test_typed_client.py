"""The contract a mobile team compiles against, tried for real: TypeScript types generated from the
OpenAPI document the edge serves (openapi-typescript), the typed example client (examples/typescript:
register → log in → clinics and services → a free slot → a pet → book → pay link → booking status)
compiled with tsc --strict and run with node against the mesh; and the answers of the REST edge hold
to that document (every field it calls required comes back, with the type it says)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.e2e.conftest import CHECKUP, HAPPY_PAWS, Api, confirmed_booking

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "typescript"
BIN = ROOT / "node_modules" / ".bin"


def _run(*args: str | Path) -> None:
    r = subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{args[0]}: {r.stdout}\n{r.stderr}"


async def test_the_typed_example_client_books_and_pays(api: Api, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is needed (the mobile team's toolchain)"
    assert (BIN / "tsc").exists() and (BIN / "openapi-typescript").exists(), "run npm ci (make setup)"
    served = await api.c.get("/openapi.json")
    assert served.status_code == 200
    spec = tmp_path / "openapi.json"
    spec.write_text(served.text)
    await asyncio.to_thread(
        _run,
        BIN / "openapi-typescript",
        spec,
        "--read-write-markers",
        "-o",
        EXAMPLE / "generated" / "api.d.ts",
    )
    await asyncio.to_thread(_run, BIN / "tsc", "-p", EXAMPLE)  # --strict, emits build/

    proc = await asyncio.create_subprocess_exec(
        node,
        str(EXAMPLE / "build" / "src" / "book.js"),
        str(api.c.base_url).rstrip("/"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PETPRO_WAIT_SECONDS": "60"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(120):
        async for raw in proc.stdout:
            line = raw.decode().strip()
            lines.append(line)
            if line.startswith("PAY "):  # the owner pays on the hosted page
                assert (await api.pay(line.removeprefix("PAY "))).status_code == 200
        code = await proc.wait()
    assert code == 0, "\n".join(lines) + (await proc.stderr.read()).decode()
    kinds = [line.split()[0] for line in lines]
    assert kinds == ["REGISTERED", "SERVICE", "HELD", "PAY", "BOOKED"], lines
    assert lines[0].endswith("verified=false")
    assert lines[2].endswith("PENDING_PAYMENT") and lines[4].endswith("BOOKING_STATE_CONFIRMED")


def _validator(doc: dict[str, Any], method: str, path: str, status: str) -> jsonschema.Draft202012Validator:
    schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


async def test_answers_hold_to_the_served_document(api: Api) -> None:
    doc = (await api.c.get("/openapi.json")).json()
    owner, lock_id, booking_id = await confirmed_booking(api)
    await api.pet(owner)
    day = (await api.free_slots(CHECKUP, 3))[0][:10]
    calls: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
        # (method, OpenAPI path, URL, query, headers)
        ("get", "/v1/me", "/v1/me", {}, owner.auth),
        ("get", "/v1/clinics", "/v1/clinics", {}, {}),
        ("get", "/v1/clinics/{clinic_id}/services", f"/v1/clinics/{HAPPY_PAWS}/services", {}, {}),
        (
            "get",
            "/v1/services/{service_id}/availability",
            f"/v1/services/{CHECKUP}/availability",
            {"date": day},
            {},
        ),
        ("get", "/v1/pets", "/v1/pets", {}, owner.auth),
        ("get", "/v1/reservations/{lock_id}", f"/v1/reservations/{lock_id}", {}, owner.auth),
        ("get", "/v1/bookings/{booking_id}", f"/v1/bookings/{booking_id}", {}, owner.auth),
        ("get", "/v1/bookings", "/v1/bookings", {}, owner.auth),
        ("get", "/v1/me/notification-preferences", "/v1/me/notification-preferences", {}, owner.auth),
    ]
    for method, path, url, query, headers in calls:
        r = await api.c.request(method.upper(), url, params=query, headers=headers)
        assert r.status_code == 200, (url, r.text)
        errors = [e.message for e in _validator(doc, method, path, "200").iter_errors(r.json())]
        assert errors == [], (url, errors, json.dumps(r.json())[:2000])
