"""problem+json (RFC 9457) bodies of the edge's HTTP app, also for a failed RPC's ``google.rpc.Status``
(parsed by the kit's one parser).  The same body shape as the Lua filter gives transcoded errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse

from edge.gateway.status import TITLES
from petpro import telemetry
from petpro.upstream import UpstreamError

# The domain of the errors the edge's HTTP app raises itself (the services' errors keep theirs).
ERROR_DOMAIN = "edge.petpro.dev"
PROBLEM_TYPE_BASE = "https://petpro.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem(
    status: int,
    reason: str,
    detail: str,
    *,
    request: Request | None = None,
    domain: str = ERROR_DOMAIN,
    violations: Sequence[dict[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + reason.lower().replace("_", "-"),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path if request is not None else "",
        "reason": reason,
        "domain": domain or ERROR_DOMAIN,
        "violations": list(violations),
        "request_id": telemetry.request_id_var.get(),
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def rpc_problem(request: Request, err: UpstreamError, status: int, detail: str | None = None) -> JSONResponse:
    """The problem for a failed RPC (parsed once, by :func:`petpro.upstream.from_rpc_error`)."""
    return problem(
        status,
        err.reason,
        detail or err.message or err.kind.name,
        request=request,
        domain=err.domain,
        violations=[
            {"field": v.field, "description": v.description, "reason": v.reason} for v in err.violations
        ],
    )
