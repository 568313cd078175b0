"""Outgoing gRPC: channels with a retry policy and an interceptor that propagates context.

Every call gets a deadline (the caller's, else ``default_timeout``), ``x-request-id``, and an
OpenTelemetry CLIENT span whose ``traceparent`` goes along as metadata, applied by the channel's
multicallables themselves (:class:`KitChannel`), not by client interceptors.  Retries are done by gRPC
itself (service config) and only for UNAVAILABLE on the methods the protos declare idempotent
(``(petpro.common.v1.policy).idempotent``, :mod:`petpro.policy`).

Load balancing: the service config selects ``round_robin``, so a target that resolves to several
addresses — ``dns:///booking:7402`` naming a Kubernetes headless Service (one A record per ready
pod) — gets a subchannel per address and spreads calls per RPC; gRPC re-resolves when a connection
drops.  A plain ``host:port`` with one address behaves as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import grpc
from opentelemetry.trace import SpanKind

from petpro import policy, telemetry

CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.enable_retries", 1),
    # a peer that restarts (a rolling update, a killed pod) is retried within a second: gRPC's default
    # reconnect backoff grows to 120 s, which turns a two-second restart into minutes of UNAVAILABLE
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)


class _Call:
    """A multicallable of the kit's channel: the generated stub's, built once per method by the stub,
    with the kit's deadline, ``x-request-id`` and trace context applied directly on each call (no
    client interceptor: grpc.aio runs those as an extra task per call)."""

    __slots__ = ("default_timeout", "inner", "method", "traced")

    def __init__(self, inner: Any, method: str, default_timeout: float) -> None:
        self.inner = inner
        self.method = method
        self.default_timeout = default_timeout
        self.traced = not method.lstrip("/").startswith(telemetry.UNTRACED_SERVICES)

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        md = [(k, v) for k, v in metadata] if metadata else []
        rid = telemetry.request_id_var.get()
        if rid and not any(k == "x-request-id" for k, _ in md):
            md.append(("x-request-id", rid))
        span = None
        if self.traced:
            span = telemetry.start_rpc_span(self.method, SpanKind.CLIENT)
            telemetry.inject_traceparent(span, md)
        call = self.inner(
            request,
            timeout=self.default_timeout if timeout is None else timeout,
            metadata=grpc.aio.Metadata(*md),
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )
        if span is not None and span.is_recording():
            call.add_done_callback(lambda done: telemetry.end_rpc_span(span, _code(done)))
        return call


def _code(call: Any) -> grpc.StatusCode | None:
    """The status of a finished aio call, read without awaiting (in its done callback)."""
    try:
        from grpc._common import CYGRPC_STATUS_CODE_TO_STATUS_CODE

        return CYGRPC_STATUS_CODE_TO_STATUS_CODE[call._cython_call._status.code()]
    except Exception:
        return grpc.StatusCode.UNKNOWN if call.cancelled() else None


class KitChannel(grpc.aio.Channel):
    """A ``grpc.aio`` channel whose multicallables (what generated stubs build once per method) apply
    the kit's per-call context: every call gets a deadline (the caller's, else ``default_timeout``),
    ``x-request-id`` and a CLIENT span whose ``traceparent`` goes along as metadata."""

    def __init__(self, inner: grpc.aio.Channel, default_timeout: float) -> None:
        self.inner = inner
        self.default_timeout = default_timeout

    def _call(self, kind: str, method: str, *args: Any, **kwargs: Any) -> _Call:
        """The inner channel's multicallable of ``kind`` (what a stub builds once per method), wrapped."""
        return _Call(getattr(self.inner, kind)(method, *args, **kwargs), method, self.default_timeout)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("unary_unary", method, *args, **kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("unary_stream", method, *args, **kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("stream_unary", method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("stream_stream", method, *args, **kwargs)

    async def __aenter__(self) -> KitChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.close(None)

    async def close(self, grace: float | None = None) -> None:
        await self.inner.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.inner.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.inner.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.inner.channel_ready()


LOAD_BALANCING: list[dict[str, Any]] = [{"round_robin": {}}]


def service_config(idempotent: Iterable[str]) -> str:
    """``idempotent``: full service names ("petpro.booking.v1.BookingService") or "Service/Method"."""
    names = []
    for item in idempotent:
        service, _, method = item.partition("/")
        names.append({"service": service, "method": method} if method else {"service": service})
    if not names:
        return json.dumps({"loadBalancingConfig": LOAD_BALANCING})
    return json.dumps(
        {
            "loadBalancingConfig": LOAD_BALANCING,
            "methodConfig": [
                {
                    "name": names,
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


def channel(addr: str, *, services: Iterable[str] = (), default_timeout: float = 5.0) -> grpc.aio.Channel:
    """An insecure (mesh-internal) channel to ``addr`` (``host:port`` or ``dns:///host:port``) with
    deadlines, context, retries and round-robin balancing over the addresses it resolves to.
    ``services``: full names of the services called over it ("petpro.booking.v1.BookingService");
    their idempotent methods, as the protos declare them, are retried on UNAVAILABLE."""
    inner = grpc.aio.insecure_channel(
        addr,
        options=[*CHANNEL_OPTIONS, ("grpc.service_config", service_config(policy.retryable(*services)))],
    )
    return KitChannel(inner, default_timeout)
