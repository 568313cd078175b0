"""Calling another service: its errors keep their code, reason and field violations, so a NOT_FOUND
deep in the mesh is still a 404 at the edge; INTERNAL/UNKNOWN become UNAVAILABLE without details."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from petpro.errors import DomainError, FieldViolation, Kind

R = TypeVar("R")


class UpstreamError(DomainError):
    """An internal service's error, re-raised with its own code, reason and violations."""

    def __init__(self, message: str, kind: Kind, *, domain: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind
        self.domain = domain  # google.rpc.ErrorInfo.domain of the service that raised it


def from_rpc_error(err: grpc.aio.AioRpcError) -> UpstreamError:
    code = err.code()
    if code.name not in Kind.__members__:
        return UpstreamError("an internal service failed; try again", Kind.UNAVAILABLE,
                             reason="UPSTREAM_UNAVAILABLE")
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
    return UpstreamError(err.details() or code.name, Kind[code.name], domain=domain, reason=reason,
                         violations=violations, metadata=meta)


async def call(rpc: Callable[[Any], Awaitable[R]], request: Any) -> R:
    try:
        return await rpc(request)
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from None
