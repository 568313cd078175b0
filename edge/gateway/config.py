"""Envoy's bootstrap for the public REST edge: the ONE generator, for the dev stack and Kubernetes.

``build_config(stack, upstreams=..., route_timeout=..., ...)`` returns the bootstrap as a JSON-ready
dict, built from envoy-data-plane's typed messages (betterproto2 + pydantic: field names, types and
``Any`` packing are checked at build time) and serialised with ``to_dict()`` (proto3 JSON, which
Envoy reads).  Its inputs are the upstream addresses, the edge settings (timeouts, limits) and the
build outputs of ``make gen`` in ``gen/petpro_api/`` (:mod:`edge.gateway.outputs`): the transcoder's
descriptor set and the REST route table with each RPC's method policy.  Nothing here is
hand-written per REST route, so a new ``google.api.http`` rule or policy is a proto change only.
``python -m edge.gateway render --out FILE`` writes it from the same env vars the edge reads.

Request path, in filter order (responses run through them in reverse)::

    Lua (gateway/problem.lua)   remembers method/path/request id; on the way back turns every 4xx/5xx
                                into application/problem+json and a 200 to POST-create into 201
    local_ratelimit             token bucket shared by the listener → 429
    jwt_authn                   on the protected routes (rules from the protos' method policy): the
                                bearer token's signature (auth_svc's JWKS, fetched through the internal
                                listener ``jwks_internal``), iss, aud, exp → 401 before the body is read
    buffer                      request body limit (64 KiB; 1 MiB on /webhooks/) → 413
    grpc_json_transcoder        REST → gRPC for MobileService (disabled on the HTTP-app routes);
                                unknown REST routes → 404, unknown query params → 400
    router                      /petpro.mobile.v1.MobileService/<Method> → edge_grpc (per-method
                                timeout; retries on UNAVAILABLE/connect failure only for the
                                methods the protos declare idempotent)
                                /webhooks/ /openapi.json /docs[/] /clinic/ /healthz /metrics → edge_http

Every request gets ``x-request-id`` (kept when the client sent one, generated otherwise) and it is
returned in the response.  On the gRPC routes only an allow-list of headers reaches the upstream as
metadata (``authorization``, ``idempotency-key``, ``x-request-id``, ``traceparent``/``tracestate``,
``accept-language`` and what Envoy/gRPC need), each value checked (problem.lua): any other header
is dropped, so a header that is no legal gRPC metadata key (``|: x``) never reaches gRPC.  One JSON access-log line per request on
stdout.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from edge.gateway import outputs, status
from edge.gateway.routes import (
    AUTH_SERVICE,
    BOOKING_SERVICE,
    CLINIC_ADMIN_SERVICE,
    CLINIC_STAFF_SERVICE,
    MOBILE_SERVICE,
    TRANSCODED_SERVICES,
    RestRoute,
    created_patterns,
    protected_patterns,
    protected_regexes,
)
from petpro.authn import CLIENT_ADDRESS_HEADER
from petpro.mesh import MESH
from petpro.settings import StackSettings

# envoy-data-plane's generated classes trip pydantic deprecation warnings at import: not ours to fix
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
    from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
    from envoy_data_plane.envoy.config.core.v3 import (
        Address,
        CidrRange,
        DataSource,
        EnvoyInternalAddress,
        HeaderValue,
        HeaderValueOption,
        HeaderValueOptionHeaderAppendAction,
        Http1ProtocolOptions,
        Http2ProtocolOptions,
        HttpProtocolOptions,
        HttpService,
        HttpUri,
        RuntimeFractionalPercent,
        SocketAddress,
        SubstitutionFormatString,
        TypedExtensionConfig,
    )
    from envoy_data_plane.envoy.config.core.v3 import RetryPolicy as CoreRetryPolicy
    from envoy_data_plane.envoy.config.endpoint.v3 import (
        ClusterLoadAssignment,
        Endpoint,
        LbEndpoint,
        LocalityLbEndpoints,
    )
    from envoy_data_plane.envoy.config.listener.v3 import (
        Filter,
        FilterChain,
        Listener,
        ListenerInternalListenerConfig,
    )
    from envoy_data_plane.envoy.config.overload.v3 import OverloadManager, ResourceMonitor
    from envoy_data_plane.envoy.config.route.v3 import (
        DirectResponseAction,
        FilterConfig,
        HeaderMatcher,
        RateLimitAction,
        RateLimitActionRemoteAddress,
        RateLimitActionRequestHeaders,
        RetryPolicy,
        Route,
        RouteAction,
        RouteConfiguration,
        RouteMatch,
        VirtualHost,
    )
    from envoy_data_plane.envoy.config.route.v3 import RateLimit as RouteRateLimit
    from envoy_data_plane.envoy.config.trace.v3 import OpenTelemetryConfig, TracingHttp
    from envoy_data_plane.envoy.extensions.access_loggers.stream.v3 import StdoutAccessLog
    from envoy_data_plane.envoy.extensions.bootstrap.internal_listener.v3 import InternalListener
    from envoy_data_plane.envoy.extensions.common.ratelimit.v3 import (
        LocalRateLimitDescriptor,
        RateLimitDescriptorEntry,
    )
    from envoy_data_plane.envoy.extensions.filters.http.buffer.v3 import Buffer, BufferPerRoute
    from envoy_data_plane.envoy.extensions.filters.http.grpc_json_transcoder.v3 import (
        GrpcJsonTranscoder,
        GrpcJsonTranscoderPrintOptions,
        GrpcJsonTranscoderRequestValidationOptions,
    )
    from envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3 import (
        JwksAsyncFetch,
        JwtAuthentication,
        JwtHeader,
        JwtProvider,
        JwtRequirement,
        RemoteJwks,
        RequirementRule,
    )
    from envoy_data_plane.envoy.extensions.filters.http.local_ratelimit.v3 import LocalRateLimit
    from envoy_data_plane.envoy.extensions.filters.http.lua.v3 import Lua
    from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
    from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
        HttpConnectionManager,
        HttpConnectionManagerCodecType,
        HttpConnectionManagerInternalAddressConfig,
        HttpConnectionManagerTracing,
        HttpFilter,
        RequestIdExtension,
    )
    from envoy_data_plane.envoy.extensions.http.original_ip_detection.xff.v3 import XffConfig, XffTrustedCidrs
    from envoy_data_plane.envoy.extensions.request_id.uuid.v3 import UuidRequestIdConfig
    from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections.v3 import (
        DownstreamConnectionsConfig,
    )
    from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
        HttpProtocolOptions as UpstreamHttpProtocolOptions,
    )
    from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
        HttpProtocolOptionsExplicitHttpConfig,
    )
    from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher, StringMatcher
    from envoy_data_plane.envoy.type.v3 import (
        FractionalPercent,
        FractionalPercentDenominatorType,
        Percent,
        TokenBucket,
    )
    from envoy_data_plane.google.protobuf import Any as PbAny
    from envoy_data_plane.google.protobuf import Struct

LUA_SOURCE = Path(__file__).with_name("problem.lua")

# Single paths served by the edge's Python HTTP app (its prefixes /webhooks/ and /clinic/ get
# routes of their own below, with their own timeouts and body limits).
HTTP_APP_PATHS: tuple[str, ...] = ("/openapi.json", "/docs", "/healthz", "/metrics")
HTTP_APP_PREFIXES: tuple[str, ...] = ("/webhooks/", "/clinic/")

# Filter names (also the keys of per-route configs).
# Errors Envoy produces itself (no ErrorInfo of a service): this domain.
ERROR_DOMAIN = "edge.petpro.dev"

F_LUA = "envoy.filters.http.lua"
F_RATELIMIT = "envoy.filters.http.local_ratelimit"
F_BUFFER = "envoy.filters.http.buffer"
F_JWT = "envoy.filters.http.jwt_authn"
F_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
F_ROUTER = "envoy.filters.http.router"

CLUSTER_GRPC = "edge_grpc"
CLUSTER_HTTP = "edge_http"
# jwt_authn fetches the JWKS from an Envoy internal listener (no port, not reachable from outside,
# not behind the public listener's rate limit) that transcodes GET /.well-known/jwks.json to
# AuthService.GetJwks, exactly as the public route does
CLUSTER_JWKS = "jwks_internal"
JWKS_LISTENER = "jwks_internal"
JWKS_PATH = "/.well-known/jwks.json"
JWT_PROVIDER = "petpro_auth"

# One JSON object per request on stdout.  `method`/`path` are what the client sent (the transcoder
# rewrites them to POST /<service>/<method>: `upstream_path`).
ACCESS_LOG_FORMAT: dict[str, str] = {
    "ts": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
    "path": "%DYNAMIC_METADATA(petpro.edge:path)%",
    "upstream_path": "%REQ(:PATH)%",
    "status": "%RESPONSE_CODE%",
    "reason": "%DYNAMIC_METADATA(petpro.edge:reason)%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "upstream": "%UPSTREAM_CLUSTER%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "user_agent": "%REQ(USER-AGENT)%",
}


@dataclass(frozen=True)
class RateLimit:
    """Envoy's local rate limit: one token bucket per client address (``per_client_*``), one per
    bearer token (``per_token_*``: an authenticated caller, whatever address it comes from), and the
    listener-wide ceiling (``burst`` / ``tokens_per_fill``) as the last resort.  Buckets are refilled
    every ``fill_seconds``; a request needs a token from each bucket it falls into.  ``burst=0``
    disables the filter.  A 429 tells the client when to come back (``Retry-After``: the fill
    interval, whole seconds).  Envoy keeps at most ``max_clients`` per-client buckets (LRU)."""

    burst: int = 2000
    tokens_per_fill: int = 1000
    fill_seconds: int = 1
    per_client_burst: int = 200
    per_client_tokens_per_fill: int = 100
    per_token_burst: int = 100
    per_token_tokens_per_fill: int = 50
    max_clients: int = 20_000

    @property
    def retry_after(self) -> str:
        return str(max(1, self.fill_seconds))


@dataclass(frozen=True)
class ClientAddress:
    """Who the client is behind a chain of proxies (Envoy's X-Forwarded-For model).

    Envoy establishes the client's address once, and everything downstream of it uses that one
    value: the per-client token bucket, the access log's ``client``, and the BFF's login and
    sign-up throttles (Envoy overwrites :data:`CLIENT_ADDRESS_HEADER` with it on every request).

    - ``trusted_cidrs`` (the proxies' own address ranges, e.g. an Ingress controller's pods or a
      cloud load balancer's ranges): only when the connection comes FROM such an address is
      X-Forwarded-For read, right to left, and the first address outside the ranges is the client
      (Envoy's ``envoy.http.original_ip_detection.xff`` with ``xff_trusted_cidrs``).  A request
      that bypasses the proxies is its own peer, whatever X-Forwarded-For it sends.  These ranges
      are also Envoy's internal addresses (``internal_address_config``).
    - else ``trusted_hops`` (``xff_num_trusted_hops`` with ``use_remote_address``): the client is
      the address ``trusted_hops`` entries from the right of X-Forwarded-For (after Envoy appends
      the peer).  Only safe when nothing but those proxies can reach Envoy (the chart's
      NetworkPolicy admits only the Ingress controller's namespace).
    - neither: the connection's peer is the client (Envoy faces the clients directly).
    """

    trusted_hops: int = 0
    trusted_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.trusted_hops and self.trusted_cidrs:
            raise ValueError(
                "trusted proxy hops and trusted proxy CIDRs exclude each other (Envoy's XFF model)"
            )
        if self.trusted_hops < 0:
            raise ValueError("trusted proxy hops must be >= 0")
        for cidr in self.trusted_cidrs:
            ipaddress.ip_network(cidr, strict=False)  # ValueError on a bad range

    def cidr_ranges(self) -> list[CidrRange]:
        nets = [ipaddress.ip_network(c, strict=False) for c in self.trusted_cidrs]
        return [CidrRange(address_prefix=str(n.network_address), prefix_len=n.prefixlen) for n in nets]


def _client_address_hcm(hcm: HttpConnectionManager, client: ClientAddress) -> None:
    """The HTTP connection manager's half of :class:`ClientAddress`."""
    if client.trusted_cidrs:
        hcm.use_remote_address = False  # the extension replaces it (Envoy refuses both)
        hcm.original_ip_detection_extensions = [
            TypedExtensionConfig(
                name="envoy.http.original_ip_detection.xff",
                typed_config=PbAny.pack(
                    XffConfig(xff_trusted_cidrs=XffTrustedCidrs(cidrs=client.cidr_ranges()))
                ),
            )
        ]
        hcm.internal_address_config = HttpConnectionManagerInternalAddressConfig(
            cidr_ranges=client.cidr_ranges()
        )
    else:
        hcm.use_remote_address = True
        hcm.xff_num_trusted_hops = client.trusted_hops


@dataclass(frozen=True)
class Tracing:
    """Envoy's own spans (one SERVER span per request, the parent of the service's span through the
    ``traceparent`` it sends upstream), exported over OTLP/HTTP to a collector."""

    host: str
    port: int
    path: str = "/v1/traces"
    service_name: str = "edge-envoy"
    sampling_percent: float = 100.0  # of requests without a sampled traceparent of their own


CLUSTER_OTLP = "otlp_collector"


@dataclass(frozen=True)
class JwtAuth:
    """Envoy verifies access tokens itself (``jwt_authn``) on every protected REST route, before the
    transcoder reads the body: signature (EdDSA/Ed25519 keys from auth_svc's JWKS), ``iss``, ``aud``,
    ``exp``.  A forged or expired token is 401 there, whatever the body.  The BFF still validates
    every token with auth_svc (revocation).  ``issuer``/``audience`` must be auth_svc's
    (``AUTH_ISSUER``/``AUTH_AUDIENCE``).  The JWKS is refetched every ``cache_seconds``: Envoy has no
    refetch on an unknown ``kid``, so a token signed with a key rotated in less than that ago can be
    refused at the edge until the next fetch (the retried request then passes)."""

    issuer: str = "petpro-auth"
    audience: str = "petpro"
    cache_seconds: int = 5
    clock_skew_seconds: int = 30
    fetch_timeout: float = 2.0


def tracing_from_env(environ: Mapping[str, str]) -> Tracing | None:
    """From the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the full URL) or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/traces``), as the services read them; None when unset
    or ``OTEL_TRACES_EXPORTER=none``.  Only ``http://`` collectors (in-cluster, next to the edge)."""
    from urllib.parse import urlsplit

    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    full = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    url = full or (base.rstrip("/") + "/v1/traces" if base else None)
    if not url:
        return None
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ValueError(f"Envoy exports traces to an http:// OTLP collector, not {url!r}")
    return Tracing(u.hostname, u.port or 4318, u.path or "/v1/traces")


def _tracing(t: Tracing) -> HttpConnectionManagerTracing:
    provider = TracingHttp(
        name="envoy.tracers.opentelemetry",
        typed_config=PbAny.pack(
            OpenTelemetryConfig(
                http_service=HttpService(
                    http_uri=HttpUri(
                        uri=f"http://{t.host}:{t.port}{t.path}",
                        cluster=CLUSTER_OTLP,
                        timeout=_seconds(2),
                    )
                ),
                service_name=t.service_name,
            )
        ),
    )
    return HttpConnectionManagerTracing(
        provider=provider,
        random_sampling=Percent(value=t.sampling_percent),
        spawn_upstream_span=False,
    )


# --------------------------------------------------------------------------------------------------
# descriptors (make gen)
# --------------------------------------------------------------------------------------------------


def transcoder_descriptor_set(fds: descriptor_pb2.FileDescriptorSet) -> bytes:
    """The descriptor set Envoy gets: ours without source info (Envoy does not need comments) plus
    google/rpc/{status,error_details}.proto and their imports, so that ``convert_grpc_status`` can
    print the ``google.rpc.ErrorInfo``/``BadRequest`` details as JSON instead of dropping them."""
    out = descriptor_pb2.FileDescriptorSet()
    have: set[str] = set()
    for f in fds.file:
        copy = out.file.add()
        copy.CopyFrom(f)
        copy.ClearField("source_code_info")
        have.add(f.name)

    def add(file_descriptor: Any) -> None:
        if file_descriptor.name in have:
            return
        for dep in file_descriptor.dependencies:
            add(dep)
        proto = out.file.add()
        file_descriptor.CopyToProto(proto)
        have.add(file_descriptor.name)

    for module in (any_pb2, duration_pb2, status_pb2, error_details_pb2):
        add(module.DESCRIPTOR)
    return out.SerializeToString(deterministic=True)


# --------------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------------


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


def _socket(host: str, port: int) -> Address:
    return Address(socket_address=SocketAddress(address=host, port_value=port))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cluster(name: str, host: str, port: int, *, http2: bool, connect_timeout: float) -> Cluster:
    protocol = (
        HttpProtocolOptionsExplicitHttpConfig(http2_protocol_options=Http2ProtocolOptions())
        if http2
        else HttpProtocolOptionsExplicitHttpConfig(http_protocol_options=Http1ProtocolOptions())
    )
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.STATIC if _is_ip(host) else ClusterDiscoveryType.STRICT_DNS,
        connect_timeout=_seconds(connect_timeout),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=_socket(host, port)))])
            ],
        ),
        typed_extension_protocol_options={
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": PbAny.pack(
                UpstreamHttpProtocolOptions(
                    explicit_http_config=protocol,
                    common_http_protocol_options=HttpProtocolOptions(idle_timeout=_seconds(300)),
                )
            )
        },
    )


def _disabled() -> dict[str, PbAny]:
    return {F_TRANSCODER: PbAny.pack(FilterConfig(disabled=True))}


def _http_app_routes(*, timeout: float, webhook_timeout: float, webhook_max_bytes: int) -> list[Route]:
    routes = []
    for path in HTTP_APP_PATHS:
        routes.append(
            Route(
                name=f"http{path}",
                match=RouteMatch(path=path),
                route=RouteAction(cluster=CLUSTER_HTTP, timeout=_seconds(timeout)),
                typed_per_filter_config=_disabled(),
            )
        )
    routes.append(
        Route(
            name="http/webhooks",
            match=RouteMatch(prefix=HTTP_APP_PREFIXES[0]),
            # the webhook handler makes up to three RPCs; the sender retries on a non-2xx anyway
            route=RouteAction(cluster=CLUSTER_HTTP, timeout=_seconds(webhook_timeout)),
            typed_per_filter_config={
                **_disabled(),
                F_BUFFER: PbAny.pack(BufferPerRoute(buffer=Buffer(max_request_bytes=webhook_max_bytes))),
            },
        )
    )
    routes.append(
        Route(
            name="http/docs",
            match=RouteMatch(prefix="/docs/"),  # the Swagger UI assets of /docs
            route=RouteAction(cluster=CLUSTER_HTTP, timeout=_seconds(timeout)),
            typed_per_filter_config=_disabled(),
        )
    )
    routes.append(
        Route(
            name="http/clinic",
            match=RouteMatch(prefix=HTTP_APP_PREFIXES[1]),
            # the clinic dashboard holds a live stream open: no overall timeout, idle timeout only
            route=RouteAction(cluster=CLUSTER_HTTP, timeout=_seconds(0), idle_timeout=_seconds(300)),
            typed_per_filter_config=_disabled(),
        )
    )
    return routes


def _grpc_routes(
    routes: Sequence[RestRoute], clusters: Mapping[str, str], *, timeout: float, retries: int
) -> list[Route]:
    """Routes matched AFTER the transcoder rewrote :path to the gRPC method (it clears the route
    cache), so timeouts and retries are per RPC.  Retries only for the methods the protos declare
    idempotent: any other call may have reached the service before the connection broke.  A long-poll
    (``max_wait_seconds`` in its policy) gets that much more time than the others: its wait, then the
    usual time to answer."""
    out = []
    seen: set[str] = set()
    for r in routes:
        if r.grpc_path in seen:
            continue
        seen.add(r.grpc_path)
        limit = timeout + r.max_wait_seconds
        action = RouteAction(cluster=clusters[r.service], timeout=_seconds(limit))
        if r.idempotent and retries > 0:
            action.retry_policy = RetryPolicy(
                retry_on="unavailable,connect-failure,refused-stream,reset-before-request",
                num_retries=retries,
            )
        out.append(
            Route(
                name=f"grpc{r.grpc_path}",
                match=RouteMatch(path=r.grpc_path),
                route=action,
                # the service sees the deadline too (slightly shorter than Envoy's, so it answers
                # DEADLINE_EXCEEDED itself rather than being cut off)
                request_headers_to_add=[_header("grpc-timeout", f"{max(int(limit * 1000) - 200, 100)}m")],
            )
        )
    return out


def _header(key: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(
        header=HeaderValue(key=key, value=value),
        append_action=HeaderValueOptionHeaderAppendAction.ADD_IF_ABSENT,
    )


def _lua(value: Any) -> str:
    """A Lua literal of a JSON-like value (str, int, bool, list, dict with str/int keys)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua escapes for ASCII
    if isinstance(value, list | tuple):
        return "{ " + ", ".join(_lua(v) for v in value) + " }"
    return "{ " + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in value.items()) + " }"


def lua_source(
    *, created: Iterable[tuple[str, str]], domain: str, protected: Iterable[tuple[str, str]] = ()
) -> str:
    """problem.lua with its configuration prelude: the (HTTP method, path pattern) pairs of the
    routes whose RPC creates a resource and of those whose RPC is not public (401 without a bearer
    token, before the transcoder parses the body), the HTTP app's paths (they keep their request
    headers; every other route gets the header allow-list), the gRPC → HTTP status table, the default
    error domain."""
    config = {
        "created": [{"method": m, "pattern": p} for m, p in created],
        "protected": [{"method": m, "pattern": p} for m, p in protected],
        "http_app_paths": {p: True for p in HTTP_APP_PATHS},
        "http_app_prefixes": [*HTTP_APP_PREFIXES, "/docs/"],
        "grpc_http": {code: http for code, (_, http) in sorted(status.by_number().items())},
        "grpc_names": {code: name for code, (name, _) in sorted(status.by_number().items())},
        "titles": dict(sorted(status.TITLES.items())),
        "domain": domain,
    }
    return f"PETPRO_EDGE = {_lua(config)}\n" + LUA_SOURCE.read_text()


def _percent_100() -> RuntimeFractionalPercent:
    return RuntimeFractionalPercent(
        default_value=FractionalPercent(numerator=100, denominator=FractionalPercentDenominatorType.HUNDRED),
        runtime_key="edge.local_rate_limit.enabled",
    )


def _jwt_filter(jwt: JwtAuth, routes: Sequence[RestRoute]) -> HttpFilter:
    """jwt_authn with one rule per protected binding (HTTP method + the path as RE2; one alternation
    per method would exceed RE2's default program size).  The routes cannot carry the requirement:
    before the transcoder a REST path matches no route of its own, only the catch-all.  A bearer
    token is required there; the Lua filter answered a request without one already (TOKEN_MISSING)."""
    rules = [
        RequirementRule(
            match=RouteMatch(
                safe_regex=RegexMatcher(regex=regex),
                headers=[HeaderMatcher(name=":method", string_match=StringMatcher(exact=method))],
            ),
            requires=JwtRequirement(provider_name=JWT_PROVIDER),
        )
        for method, regex in protected_regexes(routes)
    ]
    provider = JwtProvider(
        issuer=jwt.issuer,
        audiences=[jwt.audience],
        require_expiration=True,
        clock_skew_seconds=jwt.clock_skew_seconds,
        remote_jwks=RemoteJwks(
            http_uri=HttpUri(
                uri=f"http://jwks.internal{JWKS_PATH}",
                cluster=CLUSTER_JWKS,
                timeout=_seconds(jwt.fetch_timeout),
            ),
            cache_duration=_seconds(jwt.cache_seconds),
            # fetched in the background from the start, then again every cache_duration; a failed
            # fetch is retried every second.  fast_listener: the listener does not wait for it (the
            # internal listener it comes through would not be up before it: Envoy's start hangs);
            # until the keys are there a protected route answers 503 retry later (problem.lua)
            async_fetch=JwksAsyncFetch(fast_listener=True, failed_refetch_duration=_seconds(1)),
            retry_policy=CoreRetryPolicy(num_retries=2),
        ),
        from_headers=[JwtHeader(name="authorization", value_prefix="Bearer ")],
        forward=True,  # the BFF validates the token again (revocation)
    )
    return HttpFilter(
        name=F_JWT,
        typed_config=PbAny.pack(
            JwtAuthentication(providers={JWT_PROVIDER: provider}, rules=rules, stat_prefix="edge_jwt")
        ),
    )


def _auth_descriptor_set(descriptor: bytes) -> bytes:
    """The transcoder's descriptor set cut down to AuthService's file and its imports."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor)
    files = {f.name: f for f in fds.file}
    package, _, name = AUTH_SERVICE.rpartition(".")
    root = next(f.name for f in fds.file if f.package == package and any(s.name == name for s in f.service))
    keep: set[str] = set()
    todo = [root]
    while todo:
        n = todo.pop()
        if n not in keep:
            keep.add(n)
            todo += list(files[n].dependency)
    out = descriptor_pb2.FileDescriptorSet(file=[f for f in fds.file if f.name in keep])
    return out.SerializeToString(deterministic=True)


def _jwks_listener(descriptor: bytes, auth_cluster: str, timeout: float) -> Listener:
    """The internal listener jwt_authn fetches the JWKS from (GET /.well-known/jwks.json →
    AuthService.GetJwks, nothing else)."""
    hcm = HttpConnectionManager(
        stat_prefix="jwks_internal",
        codec_type=HttpConnectionManagerCodecType.AUTO,
        route_config=RouteConfiguration(
            name="jwks_internal",
            virtual_hosts=[
                VirtualHost(
                    name="jwks_internal",
                    domains=["*"],
                    routes=[
                        Route(
                            name="grpc/jwks",
                            match=RouteMatch(path=f"/{AUTH_SERVICE}/GetJwks"),
                            route=RouteAction(cluster=auth_cluster, timeout=_seconds(timeout)),
                        ),
                        Route(
                            name="not_found",
                            match=RouteMatch(prefix="/"),
                            direct_response=DirectResponseAction(status=404),
                        ),
                    ],
                )
            ],
        ),
        http_filters=[
            HttpFilter(
                name=F_TRANSCODER,
                typed_config=PbAny.pack(
                    GrpcJsonTranscoder(
                        proto_descriptor_bin=_auth_descriptor_set(descriptor),
                        services=[AUTH_SERVICE],
                        print_options=GrpcJsonTranscoderPrintOptions(preserve_proto_field_names=True),
                        request_validation_options=GrpcJsonTranscoderRequestValidationOptions(
                            reject_unknown_method=True
                        ),
                    )
                ),
            ),
            HttpFilter(name=F_ROUTER, typed_config=PbAny.pack(Router())),
        ],
    )
    return Listener(
        name=JWKS_LISTENER,
        internal_listener=ListenerInternalListenerConfig(),
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(name="envoy.filters.network.http_connection_manager", typed_config=PbAny.pack(hcm))
                ]
            )
        ],
    )


def _internal_cluster(name: str, listener: str, connect_timeout: float) -> Cluster:
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=_seconds(connect_timeout),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[
                        LbEndpoint(
                            endpoint=Endpoint(
                                address=Address(
                                    envoy_internal_address=EnvoyInternalAddress(server_listener_name=listener)
                                )
                            )
                        )
                    ]
                )
            ],
        ),
    )


# --------------------------------------------------------------------------------------------------
# the bootstrap
# --------------------------------------------------------------------------------------------------


def build_config(
    stack: StackSettings,
    source: Path | None = None,
    *,
    admin_port: int | None = None,
    listen_host: str | None = None,
    listen_port: int | None = None,
    grpc_upstream: tuple[str, int] | None = None,
    http_upstream: tuple[str, int] | None = None,
    services: Sequence[str] = TRANSCODED_SERVICES,
    upstreams: Mapping[str, tuple[str, int]] | None = None,
    route_timeout: float = 10.0,
    webhook_timeout: float = 30.0,
    get_retries: int = 2,
    max_request_bytes: int = 64 * 1024,
    webhook_max_request_bytes: int = 1024 * 1024,
    rate_limit: RateLimit = RateLimit(),
    error_domain: str = ERROR_DOMAIN,
    access_log: bool = True,
    max_connections: int = 10_000,
    tracing: Tracing | None = None,
    jwt: JwtAuth | None = JwtAuth(),
    client_address: ClientAddress = ClientAddress(),
) -> dict[str, Any]:
    """Envoy v3 bootstrap (JSON-ready dict) for the edge of ``stack``.

    Defaults: listener on ``stack.host:port("envoy")``, admin on ``stack.host:port("envoy_admin")``,
    gRPC upstream ``stack.host:port("edge")`` (MobileService), HTTP upstream
    ``stack.host:port("edge_http")``; ``upstreams`` overrides where a transcoded service lives
    (``{BOOKING_SERVICE: ("booking", 7402)}``).  ``source`` is the gen/ tree with the gateway's
    build outputs (default: the installed gen/); the transcoder's descriptor set is embedded into
    the config, so the file is self-contained.  ``jwt`` (None: off) makes Envoy verify the bearer
    token of every protected route before the body is read (:class:`JwtAuth`).
    """
    host = stack.host
    listen_host = listen_host or host
    listen_port = stack.port("envoy") if listen_port is None else listen_port
    admin_port = stack.port("envoy_admin") if admin_port is None else admin_port
    http_host, http_port = http_upstream or (host, stack.port("edge_http"))
    # where each transcoded service lives: the component serving it (the mesh manifest)
    where = {svc: (host, stack.port(MESH.server_of(svc).name)) for svc in MESH.gateway.routes}
    if grpc_upstream:
        where[MOBILE_SERVICE] = grpc_upstream
    where.update(upstreams or {})
    clusters = {svc: CLUSTER_GRPC if svc == MOBILE_SERVICE else f"grpc_{svc}" for svc in services}

    rpc_routes = [r for r in outputs.load_routes(source) if r.service in services]

    descriptor = (outputs.envoy_dir(source) / outputs.TRANSCODER_NAME).read_bytes()
    transcoder = GrpcJsonTranscoder(
        proto_descriptor_bin=descriptor,
        services=list(services),
        convert_grpc_status=True,
        print_options=GrpcJsonTranscoderPrintOptions(
            add_whitespace=False,
            always_print_primitive_fields=True,  # clients see false/0/"" instead of a missing key,
            always_print_enums_as_ints=False,
            preserve_proto_field_names=True,
        ),
        request_validation_options=GrpcJsonTranscoderRequestValidationOptions(
            reject_unknown_method=True,
            reject_unknown_query_parameters=True,
        ),
        case_insensitive_enum_parsing=True,
    )

    http_filters = [
        HttpFilter(
            name=F_LUA,
            typed_config=PbAny.pack(
                Lua(
                    default_source_code=DataSource(
                        inline_string=lua_source(
                            created=created_patterns(rpc_routes),
                            domain=error_domain,
                            protected=protected_patterns(rpc_routes),
                        )
                    ),
                    clear_route_cache=False,
                )
            ),
        )
    ]
    if rate_limit.burst > 0:
        http_filters.append(
            HttpFilter(
                name=F_RATELIMIT,
                typed_config=PbAny.pack(
                    LocalRateLimit(
                        stat_prefix="edge_rate_limit",
                        token_bucket=TokenBucket(
                            max_tokens=rate_limit.burst,
                            tokens_per_fill=rate_limit.tokens_per_fill,
                            fill_interval=_seconds(rate_limit.fill_seconds),
                        ),
                        response_headers_to_add=[_header("retry-after", rate_limit.retry_after)],
                        filter_enabled=_percent_100(),
                        filter_enforced=_percent_100(),
                        local_rate_limit_per_downstream_connection=False,
                        # per client: an empty descriptor value is a wildcard, one bucket per value
                        rate_limits=[
                            RouteRateLimit(
                                actions=[RateLimitAction(remote_address=RateLimitActionRemoteAddress())]
                            ),
                            RouteRateLimit(
                                actions=[
                                    RateLimitAction(
                                        request_headers=RateLimitActionRequestHeaders(
                                            header_name="authorization",
                                            descriptor_key="bearer",
                                            skip_if_absent=True,
                                        )
                                    )
                                ]
                            ),
                        ],
                        descriptors=[
                            LocalRateLimitDescriptor(
                                entries=[RateLimitDescriptorEntry(key="remote_address", value="")],
                                token_bucket=TokenBucket(
                                    max_tokens=rate_limit.per_client_burst,
                                    tokens_per_fill=rate_limit.per_client_tokens_per_fill,
                                    fill_interval=_seconds(rate_limit.fill_seconds),
                                ),
                            ),
                            LocalRateLimitDescriptor(
                                entries=[RateLimitDescriptorEntry(key="bearer", value="")],
                                token_bucket=TokenBucket(
                                    max_tokens=rate_limit.per_token_burst,
                                    tokens_per_fill=rate_limit.per_token_tokens_per_fill,
                                    fill_interval=_seconds(rate_limit.fill_seconds),
                                ),
                            ),
                        ],
                        max_dynamic_descriptors=rate_limit.max_clients,
                        always_consume_default_token_bucket=True,  # the global ceiling counts everyone
                    )
                ),
            )
        )
    jwt_on = jwt is not None and AUTH_SERVICE in services
    if jwt_on:
        assert jwt is not None
        http_filters.append(_jwt_filter(jwt, rpc_routes))
    http_filters += [
        HttpFilter(name=F_BUFFER, typed_config=PbAny.pack(Buffer(max_request_bytes=max_request_bytes))),
        HttpFilter(name=F_TRANSCODER, typed_config=PbAny.pack(transcoder)),
        HttpFilter(name=F_ROUTER, typed_config=PbAny.pack(Router())),
    ]

    routes = [
        *_http_app_routes(
            timeout=route_timeout,
            webhook_timeout=webhook_timeout,
            webhook_max_bytes=webhook_max_request_bytes,
        ),
        *_grpc_routes(rpc_routes, clusters, timeout=route_timeout, retries=get_retries),
        # Anything else: the transcoder answers 404 for a path no RPC maps (reject_unknown_method)
        # before this is reached; a request it lets through (e.g. a native gRPC call to another
        # service) ends here and is never passed upstream raw.
        Route(
            name="not_found",
            match=RouteMatch(prefix="/"),
            direct_response=DirectResponseAction(status=404, body=DataSource(inline_string="no such route")),
        ),
    ]

    hcm = HttpConnectionManager(
        stat_prefix="edge",
        codec_type=HttpConnectionManagerCodecType.AUTO,
        route_config=RouteConfiguration(
            name="edge",
            virtual_hosts=[
                VirtualHost(
                    name="edge",
                    domains=["*"],
                    routes=routes,
                    # the client's address as Envoy established it (ClientAddress), never the client's word
                    request_headers_to_add=[
                        HeaderValueOption(
                            header=HeaderValue(
                                key=CLIENT_ADDRESS_HEADER, value="%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
                            ),
                            append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
                        )
                    ],
                )
            ],
        ),
        http_filters=http_filters,
        # request ids: keep the client's, generate one otherwise, echo it in every response
        generate_request_id=True,
        preserve_external_request_id=True,
        always_set_request_id_in_response=True,
        normalize_path=True,
        merge_slashes=True,
        server_name="petpro-edge",
        access_log=[_access_log()] if access_log else [],
    )
    _client_address_hcm(hcm, client_address)
    if tracing is not None:
        hcm.tracing = _tracing(tracing)
        # sample by the tracing config, not by a nibble of x-request-id, and never rewrite the client's id
        hcm.request_id_extension = RequestIdExtension(
            typed_config=PbAny.pack(
                UuidRequestIdConfig(pack_trace_reason=False, use_request_id_for_trace_sampling=False)
            )
        )

    listeners = [
        Listener(
            name="edge",
            address=_socket(listen_host, listen_port),
            filter_chains=[
                FilterChain(
                    filters=[
                        Filter(
                            name="envoy.filters.network.http_connection_manager", typed_config=PbAny.pack(hcm)
                        )
                    ]
                )
            ],
        )
    ]
    if jwt_on:
        listeners.append(_jwks_listener(descriptor, clusters[AUTH_SERVICE], route_timeout))

    bootstrap = Bootstrap(
        admin=Admin(address=_socket(host, admin_port)),
        bootstrap_extensions=[
            TypedExtensionConfig(
                name="envoy.bootstrap.internal_listener", typed_config=PbAny.pack(InternalListener())
            )
        ]
        if jwt_on
        else [],
        # a cap on downstream connections (an edge without one is open to connection floods)
        overload_manager=OverloadManager(
            resource_monitors=[
                ResourceMonitor(
                    name="envoy.resource_monitors.global_downstream_max_connections",
                    typed_config=PbAny.pack(
                        DownstreamConnectionsConfig(max_active_downstream_connections=max_connections)
                    ),
                )
            ]
        ),
        static_resources=BootstrapStaticResources(
            listeners=listeners,
            clusters=[
                *(_cluster(clusters[svc], *where[svc], http2=True, connect_timeout=1.0) for svc in services),
                _cluster(CLUSTER_HTTP, http_host, http_port, http2=False, connect_timeout=1.0),
                *(
                    [_cluster(CLUSTER_OTLP, tracing.host, tracing.port, http2=False, connect_timeout=1.0)]
                    if tracing is not None
                    else []
                ),
                *([_internal_cluster(CLUSTER_JWKS, JWKS_LISTENER, connect_timeout=1.0)] if jwt_on else []),
            ],
        ),
    )
    return bootstrap.to_dict()


def _access_log() -> AccessLog:
    return AccessLog(
        name="envoy.access_loggers.stdout",
        typed_config=PbAny.pack(
            StdoutAccessLog(
                log_format=SubstitutionFormatString(
                    json_format=Struct.from_dict(ACCESS_LOG_FORMAT),
                )
            )
        ),
    )


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(config, indent=1))
    tmp.replace(path)
    return path


__all__ = [
    "AUTH_SERVICE",
    "BOOKING_SERVICE",
    "CLIENT_ADDRESS_HEADER",
    "CLINIC_ADMIN_SERVICE",
    "CLINIC_STAFF_SERVICE",
    "MOBILE_SERVICE",
    "ClientAddress",
    "JwtAuth",
    "RateLimit",
    "Tracing",
    "build_config",
    "tracing_from_env",
    "write_config",
]
