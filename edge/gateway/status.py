"""The one gRPC → HTTP status table of the edge (grpc-gateway's ``runtime.HTTPStatusFromCode``).

Used by the Lua filter for transcoded errors (handed to it in its configuration prelude), by the
HTTP app's problem+json for the RPCs it makes itself, and by the clinic dashboard's stream.
"""

from __future__ import annotations

import grpc

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    # grpc-gateway says 499 (nginx's "client closed request"), but a response a client reads was never
    # closed by that client: a CANCELLED that reaches one is a server giving up on the call, e.g. a
    # replica that began shutting down as the call arrived.  Retry later, as petpro/upstream.py maps
    # it for calls between services.
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

TITLES: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def http_status(code: grpc.StatusCode | str) -> int:
    """HTTP status of a gRPC code (a ``grpc.StatusCode`` or its name)."""
    if isinstance(code, str):
        code = grpc.StatusCode[code] if code in grpc.StatusCode.__members__ else grpc.StatusCode.UNKNOWN
    return HTTP_STATUS.get(code, 500)


def by_number() -> dict[int, tuple[str, int]]:
    """``{numeric code: (name, HTTP status)}`` (what the Lua filter gets)."""
    return {code.value[0]: (code.name, status) for code, status in HTTP_STATUS.items()}
