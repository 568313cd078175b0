"""petpro.upstream.from_rpc_error: an upstream's server fault is a server error (500, generic text,
logged with the request id), not "retry later"; UNAVAILABLE/DEADLINE_EXCEEDED stay retryable; and
every table that turns a code into an HTTP status agrees (edge.gateway.status, the Lua prelude)."""

from __future__ import annotations

import logging

import grpc
import pytest

from edge.gateway import status
from edge.gateway.config import lua_source
from petpro import telemetry
from petpro.errors import Kind
from petpro.interceptors import KIND_TO_CODE, status_for
from petpro.upstream import from_rpc_error


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNIMPLEMENTED,
    ],
)
def test_an_upstream_server_fault_is_internal_with_a_generic_message_logged_with_the_request_id(
    code: grpc.StatusCode, caplog: pytest.LogCaptureFixture
) -> None:
    token = telemetry.request_id_var.set("rid-42")
    try:
        with caplog.at_level(logging.ERROR, logger="petpro.upstream"):
            err = from_rpc_error(_rpc_error(code, "Traceback: KeyError 'secret-column'"))
    finally:
        telemetry.request_id_var.reset(token)
    assert (err.kind, err.reason) == (Kind.INTERNAL, "INTERNAL")
    assert err.message == "internal error (request id rid-42)"
    # what a client gets from the kit (the BFF re-raises it): INTERNAL → 500, without the upstream's text
    st = status_for(err, "rid-42")
    assert st.code == grpc.StatusCode.INTERNAL.value[0] and "secret" not in st.SerializeToString().decode(
        "latin-1"
    )
    assert status.http_status(KIND_TO_CODE[err.kind]) == 500
    [record] = [r for r in caplog.records if r.name == "petpro.upstream"]
    fields = record.__dict__["fields"]
    assert (
        fields["request_id"] == "rid-42"
        and fields["code"] == code.name
        and "secret-column" in fields["upstream_message"]
    )


@pytest.mark.parametrize(
    ("code", "kind", "http"),
    [
        (grpc.StatusCode.UNAVAILABLE, Kind.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, Kind.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.CANCELLED, Kind.UNAVAILABLE, 503),
        (grpc.StatusCode.NOT_FOUND, Kind.NOT_FOUND, 404),
        (grpc.StatusCode.INVALID_ARGUMENT, Kind.INVALID_ARGUMENT, 400),
    ],
)
def test_other_codes_keep_their_kind_and_retryability(code: grpc.StatusCode, kind: Kind, http: int) -> None:
    err = from_rpc_error(_rpc_error(code, "x"))
    assert err.kind == kind
    assert status.http_status(KIND_TO_CODE[err.kind]) == http


def test_every_code_to_http_table_agrees() -> None:
    # only server faults and outages are 5xx; only UNAVAILABLE says 503 ("retry later")
    for kind in Kind:
        http = status.http_status(KIND_TO_CODE[kind])
        assert (http >= 500) == (kind in (Kind.INTERNAL, Kind.UNAVAILABLE, Kind.DEADLINE_EXCEEDED)), kind
        assert (http == 503) == (kind is Kind.UNAVAILABLE), kind
    # the Lua filter gets the same table in its prelude (INTERNAL 13 → 500, UNAVAILABLE 14 → 503, DEADLINE 4 → 504)
    prelude = lua_source(created=(), domain="d").splitlines()[0]
    for code, (_, http) in status.by_number().items():
        assert f"[{code}] = {http}" in prelude
    assert "[13] = 500" in prelude and "[14] = 503" in prelude and "[4] = 504" in prelude
