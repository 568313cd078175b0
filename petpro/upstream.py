"""Calling another service: its errors keep their code, reason and field violations, so a NOT_FOUND
deep in the mesh is still a 404 at the edge.  A server fault upstream (INTERNAL, UNKNOWN, DATA_LOSS,
UNIMPLEMENTED) stays a server fault: INTERNAL with a generic message naming the request id (500 at
the edge), its own text logged with that id, never shown; it is not UNAVAILABLE, which tells a client
to retry.  Only CANCELLED (the upstream gave up on the call) joins UNAVAILABLE/DEADLINE_EXCEEDED as
"retry later"."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from petpro import telemetry
from petpro.errors import DomainError, FieldViolation, Kind

R = TypeVar("R")
log = logging.getLogger("petpro.upstream")

# gRPC codes that are no Kind of their own: a server fault, or (CANCELLED) a call to retry
_SERVER_FAULTS = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNIMPLEMENTED"})


class UpstreamError(DomainError):
    """An internal service's error, re-raised with its own code, reason and violations."""

    def __init__(self, message: str, kind: Kind, *, domain: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind
        self.domain = domain  # google.rpc.ErrorInfo.domain of the service that raised it


def from_rpc_error(err: grpc.aio.AioRpcError) -> UpstreamError:
    code = err.code()
    if code.name in _SERVER_FAULTS:
        rid = telemetry.request_id_var.get()
        log.error(
            "upstream internal error",
            extra={"fields": {"request_id": rid, "code": code.name, "upstream_message": err.details() or ""}},
        )
        return UpstreamError(
            f"internal error (request id {rid})" if rid else "internal error",
            Kind.INTERNAL,
            reason="INTERNAL",
        )
    if code.name not in Kind.__members__:  # CANCELLED
        return UpstreamError(
            "an internal service gave up on the call; retry", Kind.UNAVAILABLE, reason="UPSTREAM_UNAVAILABLE"
        )
    reason, domain, violations, meta = code.name, "", [], {}
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, meta = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations]
    return UpstreamError(
        err.details() or code.name,
        Kind[code.name],
        domain=domain,
        reason=reason,
        violations=violations,
        metadata=meta,
    )


async def call(rpc: Callable[[Any], Awaitable[R]], request: Any) -> R:
    try:
        return await rpc(request)
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from None
