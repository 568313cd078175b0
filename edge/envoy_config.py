"""Envoy's bootstrap for the public REST edge, generated from the protos' descriptor set.

``build_config(stack, descriptor_path, admin_port=...)`` returns the bootstrap as a JSON-ready dict,
built from envoy-data-plane's typed messages (betterproto2 + pydantic: field names, types and
``Any`` packing are checked at build time) and serialised with ``to_dict()`` (proto3 JSON, which
Envoy reads).  Nothing here is hand-written per REST route: the gRPC routes come from the
descriptor set, so a new ``google.api.http`` annotation is a proto change only.

Request path, in filter order (responses run through them in reverse)::

    Lua (edge/problem.lua)      remembers method/path/request id; on the way back turns every 4xx/5xx
                                into application/problem+json and a 200 to POST-create into 201
    local_ratelimit             token bucket shared by the listener → 429
    buffer                      request body limit (64 KiB; 1 MiB on /webhooks/) → 413
    grpc_json_transcoder        REST → gRPC for MobileService (disabled on the HTTP-app routes);
                                unknown REST routes → 404, unknown query params → 400
    router                      /petpro.mobile.v1.MobileService/<Method> → edge_grpc (per-method
                                timeout; retries on UNAVAILABLE/connect failure for GET rules only)
                                /webhooks/ /openapi.json /docs /clinic/ /healthz /metrics → edge_http

Every request gets ``x-request-id`` (kept when the client sent one, generated otherwise) and it is
returned in the response.  On the gRPC routes only an allow-list of headers reaches the upstream as
metadata (``authorization``, ``idempotency-key``, ``x-request-id``, ``traceparent``/``tracestate``,
``accept-language`` and what Envoy/gRPC need), each value checked (edge/problem.lua): any other header
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

from google.api import annotations_pb2
from google.protobuf import any_pb2, descriptor_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from edge.openapi import CREATED_PATHS, default_descriptor_path
from petpro.settings import StackSettings

# envoy-data-plane's generated classes trip pydantic deprecation warnings at import: not ours to fix
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
    from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
    from envoy_data_plane.envoy.config.core.v3 import (
        Address,
        DataSource,
        HeaderValue,
        HeaderValueOption,
        HeaderValueOptionHeaderAppendAction,
        Http1ProtocolOptions,
        Http2ProtocolOptions,
        HttpProtocolOptions,
        RuntimeFractionalPercent,
        SocketAddress,
        SubstitutionFormatString,
    )
    from envoy_data_plane.envoy.config.endpoint.v3 import (
        ClusterLoadAssignment,
        Endpoint,
        LbEndpoint,
        LocalityLbEndpoints,
    )
    from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
    from envoy_data_plane.envoy.config.overload.v3 import OverloadManager, ResourceMonitor
    from envoy_data_plane.envoy.config.route.v3 import (
        DirectResponseAction,
        FilterConfig,
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
    from envoy_data_plane.envoy.extensions.access_loggers.stream.v3 import StdoutAccessLog
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
    from envoy_data_plane.envoy.extensions.filters.http.local_ratelimit.v3 import LocalRateLimit
    from envoy_data_plane.envoy.extensions.filters.http.lua.v3 import Lua
    from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
    from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
        HttpConnectionManager,
        HttpConnectionManagerCodecType,
        HttpFilter,
    )
    from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections.v3 import (
        DownstreamConnectionsConfig,
    )
    from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
        HttpProtocolOptions as UpstreamHttpProtocolOptions,
    )
    from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
        HttpProtocolOptionsExplicitHttpConfig,
    )
    from envoy_data_plane.envoy.type.v3 import (
        FractionalPercent,
        FractionalPercentDenominatorType,
        TokenBucket,
    )
    from envoy_data_plane.google.protobuf import Any as PbAny
    from envoy_data_plane.google.protobuf import Struct

MOBILE_SERVICE = "petpro.mobile.v1.MobileService"
# The public catalog reads are transcoded straight to BookingService (no BFF hop); Envoy routes only
# its annotated methods, every other BookingService path ends at the 404 route.
BOOKING_SERVICE = "petpro.booking.v1.BookingService"
TRANSCODED_SERVICES: tuple[str, ...] = (MOBILE_SERVICE, BOOKING_SERVICE)
LUA_SOURCE = Path(__file__).with_name("problem.lua")

# Single paths served by the edge's Python HTTP app (its prefixes /webhooks/ and /clinic/ get
# routes of their own below, with their own timeouts and body limits).
HTTP_APP_PATHS: tuple[str, ...] = ("/openapi.json", "/docs", "/healthz", "/metrics")
HTTP_APP_PREFIXES: tuple[str, ...] = ("/webhooks/", "/clinic/")

# Filter names (also the keys of per-route configs).
F_LUA = "envoy.filters.http.lua"
F_RATELIMIT = "envoy.filters.http.local_ratelimit"
F_BUFFER = "envoy.filters.http.buffer"
F_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
F_ROUTER = "envoy.filters.http.router"

CLUSTER_GRPC = "edge_grpc"
CLUSTER_HTTP = "edge_http"

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
class GrpcRoute:
    """One transcoded RPC: its gRPC path and the HTTP verb of its ``google.api.http`` rule."""

    grpc_path: str  # "/petpro.mobile.v1.MobileService/ListPets"
    http_method: str  # "GET", "POST", …
    http_path: str  # "/v1/pets"


# --------------------------------------------------------------------------------------------------
# descriptors
# --------------------------------------------------------------------------------------------------


def _load_set(descriptor_path: Path) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor_path).read_bytes())


def grpc_routes(fds: descriptor_pb2.FileDescriptorSet, services: Iterable[str]) -> list[GrpcRoute]:
    """The RPCs of ``services`` that carry a ``google.api.http`` rule (additional_bindings too)."""
    wanted = set(services)
    found: set[str] = set()
    out: list[GrpcRoute] = []
    for f in fds.file:
        for svc in f.service:
            full = f"{f.package}.{svc.name}" if f.package else svc.name
            if full not in wanted:
                continue
            found.add(full)
            for m in svc.method:
                if not m.options.HasExtension(annotations_pb2.http):
                    continue
                rule = m.options.Extensions[annotations_pb2.http]
                for r in (rule, *rule.additional_bindings):
                    kind = r.WhichOneof("pattern")
                    if kind is None:
                        continue
                    path = r.custom.path if kind == "custom" else getattr(r, kind)
                    verb = r.custom.kind if kind == "custom" else kind.upper()
                    out.append(GrpcRoute(f"/{full}/{m.name}", verb.upper(), path))
    missing = wanted - found
    if missing:
        raise ValueError(f"services not in the descriptor set: {', '.join(sorted(missing))}")
    return out


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
            name="http/clinic",
            match=RouteMatch(prefix=HTTP_APP_PREFIXES[1]),
            # the clinic dashboard holds a live stream open: no overall timeout, idle timeout only
            route=RouteAction(cluster=CLUSTER_HTTP, timeout=_seconds(0), idle_timeout=_seconds(300)),
            typed_per_filter_config=_disabled(),
        )
    )
    return routes


def _grpc_routes(routes: Sequence[GrpcRoute], clusters: Mapping[str, str], *, timeout: float,
                 retries: int) -> list[Route]:
    """Routes matched AFTER the transcoder rewrote :path to the gRPC method (it clears the route
    cache), so timeouts and retries are per RPC.  Retries only for reads (GET rules): a POST may
    have reached the service before the connection broke."""
    out = []
    seen: set[str] = set()
    for r in routes:
        if r.grpc_path in seen:
            continue
        seen.add(r.grpc_path)
        idempotent = all(x.http_method == "GET" for x in routes if x.grpc_path == r.grpc_path)
        service = r.grpc_path.split("/")[1]
        action = RouteAction(cluster=clusters[service], timeout=_seconds(timeout))
        if idempotent and retries > 0:
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
                request_headers_to_add=[_header("grpc-timeout", f"{max(int(timeout * 1000) - 200, 100)}m")],
            )
        )
    return out


def _header(key: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(
        header=HeaderValue(key=key, value=value),
        append_action=HeaderValueOptionHeaderAppendAction.ADD_IF_ABSENT,
    )


def _lua_pattern(http_path: str) -> str:
    """``/v1/bookings/{booking_id}`` → the Lua pattern ``^/v1/bookings/[^/]+$``."""
    import re

    parts = re.split(r"(\{[^}]+\})", http_path)
    escaped = "".join("[^/]+" if p.startswith("{") else re.sub(r"([%^$().\[\]*+?-])", r"%\1", p) for p in parts)
    return f"^{escaped}$"


def protected_routes(routes: Iterable[GrpcRoute]) -> list[tuple[str, str]]:
    """(HTTP method, Lua path pattern) of every transcoded route whose RPC is not declared public
    (``petpro.policy``): the edge answers 401 there without a bearer token, before transcoding."""
    import petpro_api.booking.v1.booking_pb2
    import petpro_api.mobile.v1.mobile_pb2  # noqa: F401 — their descriptors carry the policy
    from petpro.policy import policy

    return sorted({(r.http_method, _lua_pattern(r.http_path)) for r in routes if not policy(r.grpc_path).public})


def lua_source(*, created_paths: Iterable[str], domain: str, protected: Iterable[tuple[str, str]] = ()) -> str:
    """problem.lua with its configuration prelude."""
    created = ", ".join(f"[{json.dumps(p)}] = true" for p in sorted(created_paths))
    # the HTTP app's routes keep their request headers; every other route gets the allow-list
    http_paths = ", ".join(f"[{json.dumps(p)}] = true" for p in HTTP_APP_PATHS)
    http_prefixes = ", ".join(json.dumps(p) for p in HTTP_APP_PREFIXES)
    guarded = ", ".join(f"{{ {json.dumps(m)}, {json.dumps(p)} }}" for m, p in protected)
    prelude = (f"PETPRO_EDGE = {{ created_paths = {{ {created} }}, domain = {json.dumps(domain)}, "
               f"http_app_paths = {{ {http_paths} }}, http_app_prefixes = {{ {http_prefixes} }}, "
               f"protected = {{ {guarded} }} }}\n")
    return prelude + LUA_SOURCE.read_text()


def _percent_100() -> RuntimeFractionalPercent:
    return RuntimeFractionalPercent(
        default_value=FractionalPercent(numerator=100, denominator=FractionalPercentDenominatorType.HUNDRED),
        runtime_key="edge.local_rate_limit.enabled",
    )


# --------------------------------------------------------------------------------------------------
# the bootstrap
# --------------------------------------------------------------------------------------------------


def build_config(
    stack: StackSettings,
    descriptor_path: Path,
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
    created_paths: Iterable[str] = CREATED_PATHS,
    error_domain: str = "petpro.dev",
    access_log: bool = True,
    max_connections: int = 10_000,
) -> dict[str, Any]:
    """Envoy v3 bootstrap (JSON-ready dict) for the edge of ``stack``.

    Defaults: listener on ``stack.host:port("envoy")``, admin on ``stack.host:port("envoy_admin")``,
    gRPC upstream ``stack.host:port("edge")`` (MobileService), HTTP upstream
    ``stack.host:port("edge_http")``.  ``descriptor_path`` is the FileDescriptorSet with imports
    (``gen/petpro_api/petpro.binpb``); it is embedded into the config, so the file is self-contained.
    """
    host = stack.host
    listen_host = listen_host or host
    listen_port = stack.port("envoy") if listen_port is None else listen_port
    admin_port = stack.port("envoy_admin") if admin_port is None else admin_port
    http_host, http_port = http_upstream or (host, stack.port("edge_http"))
    # where each transcoded service lives: MobileService in the edge process, BookingService itself
    where = {MOBILE_SERVICE: grpc_upstream or (host, stack.port("edge")),
             BOOKING_SERVICE: (host, stack.port("booking"))}
    where.update(upstreams or {})
    clusters = {svc: CLUSTER_GRPC if svc == MOBILE_SERVICE else f"grpc_{svc}" for svc in services}

    fds = _load_set(descriptor_path)
    rpc_routes = grpc_routes(fds, services)

    transcoder = GrpcJsonTranscoder(
        proto_descriptor_bin=transcoder_descriptor_set(fds),
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
                        inline_string=lua_source(created_paths=created_paths, domain=error_domain,
                                                 protected=protected_routes(rpc_routes))
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
                            RouteRateLimit(actions=[RateLimitAction(remote_address=RateLimitActionRemoteAddress())]),
                            RouteRateLimit(actions=[RateLimitAction(request_headers=RateLimitActionRequestHeaders(
                                header_name="authorization", descriptor_key="bearer", skip_if_absent=True))]),
                        ],
                        descriptors=[
                            LocalRateLimitDescriptor(
                                entries=[RateLimitDescriptorEntry(key="remote_address", value="")],
                                token_bucket=TokenBucket(
                                    max_tokens=rate_limit.per_client_burst,
                                    tokens_per_fill=rate_limit.per_client_tokens_per_fill,
                                    fill_interval=_seconds(rate_limit.fill_seconds)),
                            ),
                            LocalRateLimitDescriptor(
                                entries=[RateLimitDescriptorEntry(key="bearer", value="")],
                                token_bucket=TokenBucket(
                                    max_tokens=rate_limit.per_token_burst,
                                    tokens_per_fill=rate_limit.per_token_tokens_per_fill,
                                    fill_interval=_seconds(rate_limit.fill_seconds)),
                            ),
                        ],
                        max_dynamic_descriptors=rate_limit.max_clients,
                        always_consume_default_token_bucket=True,  # the global ceiling counts everyone
                    )
                ),
            )
        )
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
            virtual_hosts=[VirtualHost(name="edge", domains=["*"], routes=routes)],
        ),
        http_filters=http_filters,
        # request ids: keep the client's, generate one otherwise, echo it in every response
        generate_request_id=True,
        preserve_external_request_id=True,
        always_set_request_id_in_response=True,
        use_remote_address=True,
        normalize_path=True,
        merge_slashes=True,
        server_name="petpro-edge",
        access_log=[_access_log()] if access_log else [],
    )

    bootstrap = Bootstrap(
        admin=Admin(address=_socket(host, admin_port)),
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
            listeners=[
                Listener(
                    name="edge",
                    address=_socket(listen_host, listen_port),
                    filter_chains=[
                        FilterChain(
                            filters=[
                                Filter(
                                    name="envoy.filters.network.http_connection_manager",
                                    typed_config=PbAny.pack(hcm),
                                )
                            ]
                        )
                    ],
                )
            ],
            clusters=[
                *(_cluster(clusters[svc], *where[svc], http2=True, connect_timeout=1.0) for svc in services),
                _cluster(CLUSTER_HTTP, http_host, http_port, http2=False, connect_timeout=1.0),
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


__all__ = ["RateLimit", "build_config", "default_descriptor_path", "grpc_routes", "write_config"]
