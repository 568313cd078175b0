"""/docs in a real browser, through Envoy: the vendored Swagger UI renders every operation of the
generated OpenAPI document with nothing fetched from anywhere but the edge (offline), under the
page's Content-Security-Policy, without script errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Api
from tests.e2e.test_dashboard import browser  # noqa: F401  (the module's chromium fixture)

pytestmark = pytest.mark.e2e


async def test_docs_render_every_operation_offline(api: Api, browser: Any) -> None:  # noqa: F811
    from playwright.async_api import expect

    base = httpx.URL(str(api.c.base_url))
    document = (await api.c.get("/openapi.json")).json()
    operations = sum(len(item) for item in document["paths"].values())
    ctx = await browser.new_context()
    page = await ctx.new_page()
    problems: list[str] = []
    foreign: list[str] = []

    async def only_the_edge(route: Any) -> None:
        url = httpx.URL(route.request.url)
        if (url.host, url.port) != (base.host, base.port):
            foreign.append(str(url))
            await route.abort()
        else:
            await route.continue_()

    await page.route("**/*", only_the_edge)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error"
            and "favicon" not in msg.text
            and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    try:
        await page.goto(str(base.join("/docs")))
        await expect(page.locator(".opblock")).to_have_count(operations, timeout=30_000)
        await expect(page.locator(".info .title")).to_contain_text(document["info"]["title"])
        await expect(page.locator(".opblock-summary-path", has_text="/v1/bookings").first).to_be_visible()
        assert foreign == [] and problems == []
    finally:
        await ctx.close()
