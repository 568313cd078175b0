"""Clinic dashboard: /clinic/api/me, the SSE bridge of the clinic feed, and the page in a real browser.

Through Envoy against the whole mesh (``api`` fixture), except the first tests, which run the edge's
HTTP app in-process on fake stubs to watch what the bridge does with its gRPC call (cancelled when the
browser leaves, renewed after a failure, ended on shutdown).  The browser is Debian's chromium driven
by Playwright (never a Playwright browser download): ``make chromium`` installs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import httpx
import pytest

from edge.web.app import HttpServer, create_app
from edge.web.deps import HttpDeps
from petpro.convert import ts
from petpro_api.auth.v1 import auth_pb2
from petpro_api.booking.v1 import booking_pb2
from petpro_api.notification.v1 import clinic_feed_pb2
from tests.conftest import MESH_ENV
from tests.e2e.conftest import HAPPY_PAWS, Api, User, confirmed_booking, eventually

EDGE_GRACE = float(MESH_ENV["EDGE_GRACE_SECONDS"])

pytestmark = pytest.mark.e2e

FLUFFY = "7b0c1f0e-2a57-4e0c-9a55-1c1f3b0d5e02"
STAFF = ("staff@happypaws.example", "happypaws-demo")
FLUFFY_STAFF = ("staff@fluffycuts.example", "fluffycuts-demo")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# --------------------------------------------------------------------------------------------------
# an SSE reader
# --------------------------------------------------------------------------------------------------


@dataclass
class Sse:
    event: str
    data: Any
    id: str | None

    @property
    def booking_id(self) -> str:
        return str(self.data.get("booking", {}).get("booking_id", "")) if isinstance(self.data, dict) else ""


class SseReader:
    """Events of a ``text/event-stream`` response (comments are counted, not returned)."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self) -> Sse | None:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if not line:
                if "data" in fields or "event" in fields:
                    data = json.loads(fields["data"]) if fields.get("data") else None
                    return Sse(fields.get("event", "message"), data, fields.get("id"))
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = f"{fields[name]}\n{value}" if name == "data" and "data" in fields else value
        return None

    async def next_comment(self, text: str, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line.startswith(":") and line[1:].strip() == text:
                    return

    async def until(self, done: Callable[[Sse], bool], timeout: float = 30.0) -> list[Sse]:
        out: list[Sse] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next()
                if event is None:
                    raise AssertionError(f"stream ended before the condition; got {out}")
                out.append(event)
                if done(event):
                    return out


# --------------------------------------------------------------------------------------------------
# the bridge in-process, on fake stubs
# --------------------------------------------------------------------------------------------------


class FakeCall:
    def __init__(
        self, request: clinic_feed_pb2.SubscribeRequest, metadata: Any, timeout: float | None
    ) -> None:
        self.request, self.metadata, self.timeout = request, dict(metadata), timeout
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = False

    async def read(self) -> Any:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> bool:
        self.cancelled = True
        return True


@dataclass
class Fakes:
    calls: list[FakeCall] = field(default_factory=list)
    roles: tuple[int, ...] = (auth_pb2.ROLE_CLINIC_STAFF,)
    token_ttl: float = 600
    expires_at: float = 0.0  # of the last token validated, whole seconds as on the wire

    async def ValidateToken(self, request: auth_pb2.ValidateTokenRequest) -> auth_pb2.ValidateTokenResponse:
        if request.token != "good":
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAUTHENTICATED, grpc.aio.Metadata(), grpc.aio.Metadata(), "bad token"
            )
        expires = ts(datetime.fromtimestamp(time.time() + self.token_ttl).astimezone())
        self.expires_at = expires.ToSeconds()
        return auth_pb2.ValidateTokenResponse(
            user_id=str(uuid.uuid4()),
            email="s@example.com",
            name="S",
            roles=self.roles,
            clinic_ids=[HAPPY_PAWS],
            expires_at=expires,
        )

    async def GetClinic(self, request: booking_pb2.GetClinicRequest, timeout: float | None = None) -> Any:
        return booking_pb2.GetClinicResponse(
            clinic=booking_pb2.Clinic(
                clinic_id=request.clinic_id, name="Happy Paws Veterinary Clinic", time_zone="Europe/Berlin"
            )
        )

    def Subscribe(self, request: Any, metadata: Any = (), timeout: float | None = None) -> FakeCall:
        call = FakeCall(request, metadata, timeout)
        self.calls.append(call)
        return call


def event(cursor: int) -> clinic_feed_pb2.SubscribeResponse:
    return clinic_feed_pb2.SubscribeResponse(
        event=clinic_feed_pb2.ClinicEvent(
            cursor=cursor,
            event_id=str(uuid.uuid4()),
            type=clinic_feed_pb2.CLINIC_EVENT_TYPE_BOOKING_CREATED,
            booking=clinic_feed_pb2.BookingSummary(booking_id=str(uuid.uuid4()), pet_name="Rex"),
        )
    )


@pytest.fixture
async def local_edge() -> AsyncIterator[tuple[httpx.AsyncClient, Fakes, HttpDeps]]:
    fakes = Fakes()
    deps = HttpDeps(
        payment=None,
        booking=fakes,
        auth=fakes,
        clinic_feed=fakes,  # type: ignore[arg-type]
        feed_heartbeat_seconds=0.2,
    )
    server = HttpServer(create_app(deps), "127.0.0.1", 0, graceful_timeout=2)
    port = server.bind()
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _true(server.started), timeout=10)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=10, headers={"Authorization": "Bearer good"}
    ) as client:
        yield client, fakes, deps
    server.stop()
    await task


async def _true(value: bool) -> bool:
    return value


async def test_bridge_cancels_the_grpc_call_when_the_browser_leaves(local_edge):
    client, fakes, _ = local_edge
    async with client.stream(
        "GET", "/clinic/api/feed", params={"clinic_id": HAPPY_PAWS}, headers={"Last-Event-ID": "41"}
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(r)
        await eventually(lambda: _true(bool(fakes.calls)))
        call = fakes.calls[0]
        assert call.request.after_cursor == 41 and call.metadata["authorization"] == "Bearer good"
        call.queue.put_nowait(event(42))
        got = await reader.next()
        assert got is not None and (got.id, got.event, got.data["cursor"]) == ("42", "booking.created", "42")
        await reader.next_comment("keep-alive")  # heartbeats while nothing happens
    await eventually(lambda: _true(call.cancelled), timeout=5)


async def test_bridge_resubscribes_from_the_last_cursor_and_ends_streams_on_shutdown(local_edge):
    client, fakes, deps = local_edge
    async with client.stream(
        "GET", "/clinic/api/feed", params={"clinic_id": HAPPY_PAWS, "after_cursor": "7"}
    ) as r:
        reader = SseReader(r)
        await eventually(lambda: _true(bool(fakes.calls)))
        fakes.calls[0].queue.put_nowait(event(8))
        assert (await reader.next()).id == "8"  # type: ignore[union-attr]
        fakes.calls[0].queue.put_nowait(
            grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "notif restarting"
            )
        )
        assert (await reader.next()) == Sse("feed.status", {"state": "reconnecting"}, None)
        assert (await reader.next()) == Sse("feed.status", {"state": "live"}, None)
        assert len(fakes.calls) == 2 and fakes.calls[1].request.after_cursor == 8 and fakes.calls[0].cancelled
        fakes.calls[1].queue.put_nowait(event(9))
        assert (await reader.next()).id == "9"  # type: ignore[union-attr]

        deps.closing.set()  # what the edge's on_shutdown hook does
        async with asyncio.timeout(5):
            assert await reader.next() is None  # the response ends cleanly
    assert fakes.calls[1].cancelled
    r = await client.get("/clinic/api/feed", params={"clinic_id": HAPPY_PAWS})
    assert (r.status_code, r.json()["reason"], r.headers["retry-after"]) == (503, "SHUTTING_DOWN", "2")


async def test_bridge_ends_the_stream_when_the_token_expires(local_edge):
    client, fakes, _ = local_edge
    fakes.token_ttl = 2.0  # whole seconds on the wire: expires in 1 to 2 s
    async with client.stream("GET", "/clinic/api/feed", params={"clinic_id": HAPPY_PAWS}) as r:
        async with asyncio.timeout(60):  # a hang guard only: the end is caused by the expiry, not a timer
            assert await SseReader(r).next() is None  # the browser reconnects, with its renewed cookie
    assert time.time() >= fakes.expires_at - 0.05  # not before the token expired (loop timer resolution)
    assert fakes.calls[0].cancelled


async def test_bridge_tells_the_page_when_notif_refuses_the_stream(local_edge):
    client, fakes, _ = local_edge
    async with client.stream("GET", "/clinic/api/feed", params={"clinic_id": HAPPY_PAWS}) as r:
        reader = SseReader(r)
        await eventually(lambda: _true(bool(fakes.calls)))
        fakes.calls[0].queue.put_nowait(
            grpc.aio.AioRpcError(
                grpc.StatusCode.UNAUTHENTICATED, grpc.aio.Metadata(), grpc.aio.Metadata(), "revoked"
            )
        )
        assert await reader.next() == Sse("feed.closed", {"status": 401, "reason": "UNAUTHENTICATED"}, None)
        assert await reader.next() is None
    assert len(fakes.calls) == 1


# --------------------------------------------------------------------------------------------------
# through Envoy, against the mesh
# --------------------------------------------------------------------------------------------------


def fresh_client(api: Api) -> httpx.AsyncClient:
    """A client with its own cookie jar (the session's ``api`` client must not collect the feed cookie)."""
    return httpx.AsyncClient(base_url=api.c.base_url, timeout=20)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int, reason: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["reason"] == reason, r.json()


async def test_me_is_for_clinic_staff_only(api: Api):
    staff = await api.login(*STAFF)
    owner = await api.user()
    async with fresh_client(api) as c:
        assert_problem(await c.get("/clinic/api/me"), 401, "TOKEN_MISSING")
        assert_problem(await c.get("/clinic/api/me", headers=bearer("not.a.jwt")), 401, "TOKEN_INVALID")
        assert_problem(await c.get("/clinic/api/me", headers=owner.auth), 403, "NOT_CLINIC_STAFF")
        r = await c.get("/clinic/api/me", headers=bearer(staff))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["email"] == STAFF[0]
        assert body["clinics"] == [
            {"clinic_id": HAPPY_PAWS, "name": "Happy Paws Veterinary Clinic", "time_zone": "Europe/Berlin"}
        ]
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"petpro_clinic_feed={staff};")
        assert "HttpOnly" in cookie and "Path=/clinic/api/feed" in cookie and "SameSite=strict" in cookie
        assert 0 < int(cookie.split("Max-Age=")[1].split(";")[0]) <= 900


async def test_feed_replays_a_booking_then_streams_a_new_one_live_and_resumes_after_last_event_id(api: Api):
    token = await api.login(*STAFF)
    _, _, first = await confirmed_booking(api)
    async with fresh_client(api) as c:
        async with c.stream(
            "GET", "/clinic/api/feed", params={"clinic_id": HAPPY_PAWS}, headers=bearer(token)
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            reader = SseReader(r)
            replayed = await reader.until(lambda e: e.booking_id == first)  # replay from cursor 0
            _, _, second = await confirmed_booking(api)
            live = await reader.until(lambda e: e.booking_id == second)
        seen = replayed + live
        # the replay holds what the session did at this clinic before (other tests cancel and move
        # bookings there too); this test's two bookings each come once, as created
        assert {e.event for e in seen if e.booking_id in (first, second)} == {"booking.created"}
        cursors = [int(e.id or 0) for e in seen]
        assert cursors == sorted(set(cursors)) and cursors == [int(e.data["cursor"]) for e in seen]
        ids = [e.booking_id for e in seen]
        assert ids.count(first) == 1 and ids.count(second) == 1
        new = live[-1].data
        assert new["type"] == "CLINIC_EVENT_TYPE_BOOKING_CREATED" and new["event_id"]
        booking = new["booking"]
        assert booking["service_name"] == "General check-up" and booking["pet_name"] == "Rex"
        assert booking["pet_species"] == "SPECIES_DOG" and booking["owner_name"] == "Ann"
        assert booking["amount"] == {"amount_minor": "4500", "currency": "EUR"}
        assert booking["slot_start_time"].endswith("Z") and booking["owner_email"].endswith("@example.com")

        # the browser reconnects with Last-Event-ID = the first booking's cursor: only later events
        first_cursor = int(replayed[-1].id or 0)
        async with c.stream(
            "GET",
            "/clinic/api/feed",
            params={"clinic_id": HAPPY_PAWS},
            headers={**bearer(token), "Last-Event-ID": str(first_cursor)},
        ) as r:
            resumed = await SseReader(r).until(lambda e: e.booking_id == second)
        assert int(resumed[0].id or 0) == first_cursor + 1
        assert first not in [e.booking_id for e in resumed]
        assert [int(e.id or 0) for e in resumed] == list(
            range(first_cursor + 1, first_cursor + 1 + len(resumed))
        )

        # same with after_cursor (a fresh EventSource made by the page)
        second_cursor = int(live[-1].id or 0)
        async with c.stream(
            "GET",
            "/clinic/api/feed",
            headers=bearer(token),
            params={"clinic_id": HAPPY_PAWS, "after_cursor": str(second_cursor - 1)},
        ) as r:
            again = await SseReader(r).next()
        assert again is not None and (again.id, again.booking_id) == (str(second_cursor), second)


async def test_feed_authorises_before_streaming_and_takes_the_cookie_set_by_me(api: Api):
    staff = await api.login(*STAFF)
    fluffy = await api.login(*FLUFFY_STAFF)
    owner: User = await api.user()
    params = {"clinic_id": HAPPY_PAWS}
    async with fresh_client(api) as c:
        assert_problem(await c.get("/clinic/api/feed", params=params), 401, "TOKEN_MISSING")
        assert_problem(
            await c.get("/clinic/api/feed", params=params, headers=bearer("x.y.z")), 401, "TOKEN_INVALID"
        )
        # a non-member is told the clinic does not exist, as on every clinic-scoped call
        assert_problem(
            await c.get("/clinic/api/feed", params=params, headers=owner.auth), 404, "CLINIC_NOT_FOUND"
        )
        assert_problem(
            await c.get("/clinic/api/feed", params=params, headers=bearer(fluffy)), 404, "CLINIC_NOT_FOUND"
        )
        assert_problem(
            await c.get("/clinic/api/feed", params={"clinic_id": "7"}, headers=bearer(staff)),
            400,
            "INVALID_ARGUMENT",
        )
        assert_problem(
            await c.get("/clinic/api/feed", params={**params, "after_cursor": "-1"}, headers=bearer(staff)),
            400,
            "INVALID_ARGUMENT",
        )

        # what the page does: /clinic/api/me with the Bearer token sets the cookie EventSource sends
        assert (await c.get("/clinic/api/me", headers=bearer(staff))).status_code == 200
        async with c.stream("GET", "/clinic/api/feed", params=params) as r:
            assert r.status_code == 200
            assert (await SseReader(r).next()) is not None  # the replay starts

        # logout revokes the session and clears the cookie
        r = await c.post("/clinic/api/logout", headers=bearer(staff), json={})
        assert r.status_code == 204 and "petpro_clinic_feed=" in r.headers["set-cookie"]
        assert "petpro_clinic_feed" not in c.cookies
        assert_problem(await c.get("/clinic/api/feed", params=params), 401, "TOKEN_MISSING")

        async def revoked() -> bool:  # the edge caches a validation for a few seconds
            return (await c.get("/clinic/api/me", headers=bearer(staff))).status_code == 401

        await eventually(revoked, timeout=15, interval=0.5)


async def test_page_and_assets_are_served(api: Api):
    r = await api.c.get("/clinic/dashboard")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert '<label for="email">Email</label>' in r.text
    for name, kind in (("dashboard.css", "text/css"), ("dashboard.js", "text/javascript")):
        r = await api.c.get(f"/clinic/assets/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert_problem(await api.c.get("/clinic/assets/nope.js"), 404, "NOT_FOUND")
    assert_problem(await api.c.get("/clinic/nowhere"), 404, "NOT_FOUND")


# --------------------------------------------------------------------------------------------------
# in a real browser
# --------------------------------------------------------------------------------------------------


def chromium_installed() -> bool:
    return CHROMIUM.exists()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not chromium_installed():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: run `make chromium` (apt-get install chromium)")
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}); `make chromium` installs it")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def open_dashboard(api: Api, browser: Any, **context: Any) -> tuple[Any, Any, list[str]]:
    """A new browser context on the dashboard; the list collects script errors and failed requests."""
    # the browser's own zone differs from the clinic's on purpose: the page must use the clinic's
    ctx = await browser.new_context(locale="en-GB", timezone_id="America/New_York", **context)
    page = await ctx.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.request.method} {httpx.URL(r.url).path}")
            if r.status >= 400
            else None
        ),
    )
    await page.goto(f"{str(api.c.base_url).rstrip('/')}/clinic/dashboard")
    return ctx, page, problems


async def sign_in(page: Any, email: str, password: str) -> None:
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_dashboard_shows_a_new_booking_live_in_a_real_browser(api: Api, browser: Any, tmp_path: Path):
    from playwright.async_api import expect

    ctx, page, problems = await open_dashboard(api, browser, viewport={"width": 1280, "height": 900})
    try:
        await expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
        await sign_in(page, STAFF[0], "wrong-password")
        await expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")
        await page.screenshot(path=str(tmp_path / "login-error.png"))
        await sign_in(page, *STAFF)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Happy Paws Veterinary Clinic")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator("#summary")).not_to_have_text("Loading bookings…")
        await expect(page.locator("#clinic-picker")).to_be_hidden()  # one clinic: no selector
        await page.evaluate("window.__sameDocument = true")

        # book and pay through the REST API, like the mobile app
        owner = await api.user(name="Dana Okafor")
        pet_name = f"Biscuit {uuid.uuid4().hex[:4]}"
        pet = await api.pet(owner, name=pet_name, species="SPECIES_CAT")
        slot = await api.unique_slot()
        r = await api.book(owner, pet, slot)
        assert r.status_code == 201, r.text
        assert (await api.pay(r.json()["payment_url"])).status_code == 200
        booking_id = (await api.wait_status(owner, r.json()["lock_id"], "CONFIRMED"))["booking_id"]

        row = page.locator(f'li.booking[data-booking-id="{booking_id}"]')
        await expect(row).to_be_visible(timeout=30_000)
        local = datetime.fromisoformat(slot.replace("Z", "+00:00")).astimezone(ZoneInfo("Europe/Berlin"))
        for text in (
            booking_id[:8].upper(),
            pet_name,
            "(Cat)",
            local.strftime("%H:%M"),
            "General check-up",
            "Dana Okafor",
            owner.email,
            "€45.00",
        ):
            await expect(row).to_contain_text(text)
        await expect(row).to_have_attribute("data-arrived", "live")  # highlighted as new
        day = page.locator("section.day", has=row).get_by_role("heading", level=2)
        await expect(day).to_contain_text(local.strftime("%-d %B"))
        assert await page.evaluate("window.__sameDocument") is True  # no reload happened

        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await row.scroll_into_view_if_needed()
        await page.screenshot(path=str(tmp_path / "dashboard-narrow.png"))
        print(f"\nscreenshots: {tmp_path}")

        await page.get_by_role("button", name="Log out").click()
        await expect(page.get_by_role("alert")).to_have_text("You have signed out.")
        assert problems == ["401 POST /v1/auth/login"], problems  # only the wrong password
    finally:
        await ctx.close()


async def test_staff_of_several_clinics_pick_one_in_the_browser(api: Api, browser: Any, tmp_path: Path):
    from playwright.async_api import expect

    from auth_svc.adapters.repository import AuthRepository
    from auth_svc.adapters.tables import SCHEMA
    from auth_svc.domain import ROLE_CLINIC_STAFF, Passwords, normalize_email
    from auth_svc.domain import User as AuthUser
    from petpro.db import Database

    # provisioned like `petpro seed` provisions staff (there is no API for it)
    email, password = f"both-{uuid.uuid4().hex[:6]}@example.com", "two-clinics-demo"
    db = Database(api.stack.env()["DATABASE_URL"], SCHEMA, app_name="test-dashboard", pool_size=1)
    try:
        async with db.unit_of_work() as session:
            await AuthRepository(session).upsert_user(
                AuthUser(
                    id=uuid.uuid4(),
                    email=normalize_email(email),
                    name="Sam Both",
                    password_hash=Passwords().hash(password),
                    roles=(ROLE_CLINIC_STAFF,),
                    memberships={HAPPY_PAWS: "STAFF", FLUFFY: "STAFF"},
                )
            )
    finally:
        await db.close()
    token = await api.login(email, password)
    await confirmed_booking(api)  # Happy Paws has at least one booking to show
    async with fresh_client(api) as c:
        me = (await c.get("/clinic/api/me", headers=bearer(token))).json()
    assert [x["name"] for x in me["clinics"]] == ["Fluffy Cuts Grooming", "Happy Paws Veterinary Clinic"]

    ctx, page, problems = await open_dashboard(api, browser)
    try:
        await sign_in(page, email, password)
        picker = page.get_by_label("Clinic", exact=True)
        await expect(picker).to_be_visible()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Fluffy Cuts Grooming")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await picker.select_option(label="Happy Paws Veterinary Clinic")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Happy Paws Veterinary Clinic")
        await expect(page.locator("li.booking").first).to_be_visible()
        await expect(page.locator("#clinic-meta")).to_contain_text("Europe/Berlin")
        await page.screenshot(path=str(tmp_path / "two-clinics.png"), full_page=True)
        await picker.select_option(label="Fluffy Cuts Grooming")
        await expect(page.locator("#clinic-meta")).to_contain_text("America/New_York")
        await expect(page.locator("li.booking")).to_have_count(0)  # none of Happy Paws' bookings
        assert problems == [], problems

        # a reload keeps the session (sessionStorage) and the chosen clinic; a rejected access token
        # is renewed with the refresh token
        await page.evaluate("sessionStorage.setItem('petpro.clinic.access_token', 'no.longer.valid')")
        await page.reload()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Fluffy Cuts Grooming")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        assert (
            await page.evaluate("sessionStorage.getItem('petpro.clinic.access_token')") != "no.longer.valid"
        )
        assert problems == ["401 GET /clinic/api/me"], problems
    finally:
        await ctx.close()


# --------------------------------------------------------------------------------------------------
# restarts (last: they stop processes of the session's mesh, and start them again)
# --------------------------------------------------------------------------------------------------


async def _stopped(pid: int) -> bool:
    from petpro_dev.devstack.process import is_alive

    return not is_alive(pid)  # an exited child of this session is a zombie until reaped


async def test_a_stream_survives_a_notif_restart_and_ends_cleanly_when_the_edge_stops(api: Api):
    token = await api.login(*STAFF)
    try:
        async with (
            fresh_client(api) as c,
            c.stream("GET", "/clinic/api/feed", params={"clinic_id": HAPPY_PAWS}, headers=bearer(token)) as r,
        ):
            assert r.status_code == 200
            reader = SseReader(r)
            notif = api.stack.pid("notif")
            assert notif
            os.kill(notif, signal.SIGTERM)  # notif ends its streams; the edge re-subscribes by itself
            await reader.until(lambda e: e.event == "feed.status" and e.data == {"state": "reconnecting"})
            await eventually(lambda: _stopped(notif))
            await asyncio.to_thread(api.stack.up, ["notif"])
            await reader.until(lambda e: e.event == "feed.status" and e.data == {"state": "live"}, timeout=60)
            _, _, booking = await confirmed_booking(api)
            await reader.until(lambda e: e.booking_id == booking)  # same HTTP response, nothing missed

            edge = api.stack.pid("edge")
            assert edge
            os.kill(edge, signal.SIGTERM)
            # ended at once, not after the drain timeout: the mesh's edge drains for up to
            # EDGE_GRACE_SECONDS (tests/conftest.py), far longer than this guard
            async with asyncio.timeout(EDGE_GRACE / 2):
                while (await reader.next()) is not None:  # ends as a complete response, not a reset
                    pass
            await eventually(lambda: _stopped(edge))
    finally:
        await asyncio.to_thread(api.stack.up, ["notif", "edge"])
    assert (await api.c.get("/clinic/dashboard")).status_code == 200


async def test_staff_cancel_from_the_dashboard_and_every_change_shows_live(api: Api, browser: Any):
    from playwright.async_api import expect

    ctx, page, problems = await open_dashboard(api, browser, viewport={"width": 1280, "height": 900})
    try:
        await sign_in(page, *STAFF)
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator("#summary")).not_to_have_text("Loading bookings…")
        owner, _, booking_id = await confirmed_booking(api)
        row = page.locator(f'li.booking[data-booking-id="{booking_id}"]')
        await expect(row).to_be_visible(timeout=30_000)

        new = await api.unique_slot()  # the owner moves it: the row follows, live
        assert (await api.reschedule(owner, booking_id, new)).status_code == 200
        local = datetime.fromisoformat(new.replace("Z", "+00:00")).astimezone(ZoneInfo("Europe/Berlin"))
        await expect(row.locator("time")).to_have_text(local.strftime("%H:%M"), timeout=30_000)

        page.once("dialog", lambda d: asyncio.ensure_future(d.accept("the vet is ill")))
        await row.get_by_role("button", name="Cancel").click()
        await expect(row).to_have_attribute("data-state", "BOOKING_STATE_CANCELLED", timeout=30_000)
        await expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
        got = await api.booking(owner, booking_id)
        assert (got["state"], got["cancelled_by"], got["cancel_reason"]) == (
            "BOOKING_STATE_CANCELLED",
            "BOOKING_ACTOR_CLINIC",
            "the vet is ill",
        )
        assert problems == [], problems
    finally:
        await ctx.close()
