"""``/docs``: Swagger UI over ``/openapi.json``, from the vendored npm package ``swagger-ui-dist``
(pinned in package.json, installed into ``node_modules/`` by ``make setup``).  Everything is served
by the edge itself — no CDN — so the page works offline; no inline script, so it runs under a strict
Content-Security-Policy.

Routes: ``GET /docs`` (the page), ``GET /docs/assets/{name}`` (the bundle, its CSS, the initializer).
``EDGE_SWAGGER_UI_DIR`` points at another copy of the package's files (e.g. in an image).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from edge.web.problem import problem

PACKAGE = "swagger-ui-dist"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
INIT_JS = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null
  });
});
"""
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — API reference</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>
"""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; font-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def swagger_ui_dir() -> Path:
    """The installed swagger-ui-dist files: ``EDGE_SWAGGER_UI_DIR``, else ``node_modules/`` of the
    repository (found upwards from this file)."""
    explicit = os.environ.get("EDGE_SWAGGER_UI_DIR")
    if explicit:
        return Path(explicit)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "node_modules" / PACKAGE
        if candidate.is_dir():
            return candidate
    return Path("node_modules") / PACKAGE


class Docs:
    def __init__(self, title: str) -> None:
        self.page = PAGE.replace("{title}", html.escape(title))
        self.dir = swagger_ui_dir()
        self.cache: dict[str, bytes] = {}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/docs", self.index, methods=["GET"]),
            Route("/docs/assets/{name}", self.asset, methods=["GET"]),
        ]

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers=SECURITY_HEADERS)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "init.js":
            return Response(INIT_JS, media_type="text/javascript; charset=utf-8", headers=SECURITY_HEADERS)
        if name not in ASSETS:
            return problem(404, "NOT_FOUND", f"no asset {name!r}", request=request)
        if name not in self.cache:
            path = self.dir / name
            if not path.is_file():
                return problem(
                    503,
                    "DOCS_NOT_INSTALLED",
                    f"{PACKAGE} is not installed (run make setup / npm ci)",
                    request=request,
                )
            self.cache[name] = path.read_bytes()
        return Response(
            self.cache[name],
            media_type=ASSETS[name],
            headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"},
        )
