"""Outgoing gRPC: channels with a retry policy and an interceptor that propagates context.

Every call gets a deadline (the caller's, else ``default_timeout``), ``x-request-id``, and an
OpenTelemetry CLIENT span whose ``traceparent`` goes along as metadata.  Retries are done by gRPC
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


def _metadata(existing: Any) -> list[tuple[str, str]]:
    md = list(existing or ())
    keys = {k for k, _ in md}
    rid = telemetry.request_id_var.get()
    if rid and "x-request-id" not in keys:
        md.append(("x-request-id", rid))
    return md


class _ContextInterceptor(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, default_timeout: float) -> None:
        self.default_timeout = default_timeout

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            method=d.method,
            timeout=d.timeout if d.timeout is not None else self.default_timeout,
            metadata=grpc.aio.Metadata(*_metadata(d.metadata)),
            credentials=d.credentials,
            wait_for_ready=d.wait_for_ready,
        )

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


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
    return grpc.aio.insecure_channel(
        addr,
        options=[*CHANNEL_OPTIONS, ("grpc.service_config", service_config(policy.retryable(*services)))],
        interceptors=[_ContextInterceptor(default_timeout), *telemetry.grpc_client_interceptors()],
    )
