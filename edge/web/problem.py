"""problem+json (RFC 9457) bodies of the edge's HTTP app, and the parts of a failed RPC's
``google.rpc.Status`` they are made of.  The same body shape as the Lua filter gives transcoded errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse

from petpro import telemetry

ERROR_DOMAIN = "petpro.dev"
PROBLEM_TYPE_BASE = "https://petpro.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem(
    status: int,
    reason: str,
    detail: str,
    *,
    request: Request | None = None,
    domain: str = ERROR_DOMAIN,
    violations: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + reason.lower().replace("_", "-"),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path if request is not None else "",
        "reason": reason,
        "domain": domain or ERROR_DOMAIN,
        "violations": list(violations),
        "request_id": telemetry.request_id_var.get(),
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


@dataclass(frozen=True)
class RpcError:
    """The interesting parts of a failed RPC's google.rpc.Status."""

    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    violations: tuple[dict[str, str], ...]

    @classmethod
    def of(cls, err: grpc.aio.AioRpcError) -> RpcError:
        reason, domain, violations = "", "", []
        for key, value in err.trailing_metadata() or ():
            if key != "grpc-status-details-bin" or not isinstance(value, bytes):
                continue
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # malformed details: keep the plain code
                break
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason, domain = info.reason, info.domain
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations = [
                        {"field": v.field, "description": v.description, "reason": v.reason}
                        for v in bad.field_violations
                    ]
        code = err.code()
        return cls(code, err.details() or "", reason or code.name, domain, tuple(violations))


def rpc_problem(request: Request, err: RpcError, status: int, detail: str | None = None) -> JSONResponse:
    return problem(
        status,
        err.reason,
        detail or err.message or err.code.name,
        request=request,
        domain=err.domain,
        violations=err.violations,
    )
