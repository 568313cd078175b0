"""The REST route table comes from the protos' method policy, and everything that treats a route
differently (Envoy's retries, the Lua 201 rewrite, the OpenAPI security and 201) follows it.  The
gateway's build outputs in gen/ are what the descriptors produce today (make gen ran)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from edge.gateway import outputs
from edge.gateway.build import write_outputs
from edge.gateway.config import build_config
from edge.gateway.openapi import build_openapi
from edge.gateway.routes import MOBILE_SERVICE, RestRoute, created_patterns, route_table
from petpro import policy
from petpro.settings import StackSettings
from petpro_api.auth.v1 import clinic_staff_pb2  # noqa: F401  (descriptors in the default pool)
from petpro_api.booking.v1 import clinic_admin_pb2  # noqa: F401
from petpro_api.common.v1 import options_pb2
from petpro_api.mobile.v1 import mobile_pb2  # noqa: F401


@pytest.fixture(scope="module")
def fds() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(outputs.descriptor_path().read_bytes())


def _by_method(routes: list[RestRoute]) -> dict[str, RestRoute]:
    return {r.method: r for r in routes}


def test_route_table_carries_the_declared_policy(fds) -> None:
    routes = route_table(fds)
    assert routes, "no REST routes found"
    for r in routes:
        declared = policy.policy(r.grpc_path)  # the same option, read from the generated modules
        assert (r.public, r.idempotent, r.creates) == (declared.public, declared.idempotent, declared.creates)
    by = _by_method(routes)
    assert by["Register"].public and by["Register"].creates
    assert by["CreateBooking"].creates and not by["CreateBooking"].public
    assert by["ListPets"].idempotent and not by["ListPets"].creates


def test_a_long_poll_route_waits_its_declared_wait_longer_than_the_others(fds) -> None:
    """GetReservation declares max_wait_seconds (its long-poll): its Envoy route, and the deadline
    Envoy passes on, get that much more than the route timeout; the other routes keep theirs."""
    by = _by_method(route_table(fds))
    assert by["GetReservation"].max_wait_seconds == 25 and by["ListPets"].max_wait_seconds == 0
    routes, _ = _routes_of(build_config(StackSettings(port_base=18400), route_timeout=10.0))
    poll, plain = routes[f"grpc/{MOBILE_SERVICE}/GetReservation"], routes[f"grpc/{MOBILE_SERVICE}/ListPets"]
    assert (poll["route"]["timeout"], plain["route"]["timeout"]) == ("35s", "10s")
    assert poll["requestHeadersToAdd"][0]["header"] == {"key": "grpc-timeout", "value": "34800m"}


def test_path_patterns_match_the_template_only() -> None:
    route = RestRoute("s", "M", "GET", "/v1/clinics/{clinic_id}/services")
    pattern = route.path_pattern()
    lua_to_re = pattern.replace("%", "\\")
    assert re.match(lua_to_re, "/v1/clinics/abc-1/services")
    assert not re.match(lua_to_re, "/v1/clinics/abc/services/x")
    assert not re.match(lua_to_re, "/v1/clinics//services")


def _with_policy(fds, service: str, method: str, **fields: bool) -> descriptor_pb2.FileDescriptorSet:
    out = descriptor_pb2.FileDescriptorSet()
    out.CopyFrom(fds)
    pkg, _, name = service.rpartition(".")
    for f in out.file:
        for svc in f.service:
            if f.package == pkg and svc.name == name:
                for m in svc.method:
                    if m.name == method:
                        m.options.Extensions[options_pb2.policy].CopyFrom(options_pb2.MethodPolicy(**fields))
                        return out
    raise AssertionError(f"{service}/{method} not found")


def _write(tmp_path: Path, fds) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    outputs.descriptor_path(tmp_path).write_bytes(fds.SerializeToString())
    write_outputs(tmp_path)
    return tmp_path


def _routes_of(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    listener = config["staticResources"]["listeners"][0]
    hcm = listener["filterChains"][0]["filters"][0]["typedConfig"]
    return {r["name"]: r for r in hcm["routeConfig"]["virtualHosts"][0]["routes"]}, hcm


def _lua(hcm: dict[str, Any]) -> str:
    lua = next(f for f in hcm["httpFilters"] if f["name"] == "envoy.filters.http.lua")
    return lua["typedConfig"]["defaultSourceCode"]["inlineString"]


def _lua_created(hcm: dict[str, Any]) -> str:
    """The ``created`` routes of the Lua filter's prelude."""
    return _lua(hcm).split('["created"] = ', 1)[1].split('["protected"]', 1)[0]


def _lua_protected(hcm: dict[str, Any]) -> str:
    """The ``protected`` routes (no bearer token → 401) of the Lua filter's prelude."""
    return _lua(hcm).split('["protected"] = ', 1)[1].split('["http_app_paths"]', 1)[0]


def test_policy_drives_envoy_retries_lua_201_and_openapi(tmp_path: Path, fds) -> None:
    """Flip ListPets' policy in the descriptors: the generated outputs follow, nothing else changes."""
    stack = StackSettings(home=tmp_path, port_base=17400)
    before_routes, before_hcm = _routes_of(build_config(stack))
    pets = before_routes[f"grpc/{MOBILE_SERVICE}/ListPets"]
    assert "retryPolicy" in pets["route"]  # idempotent today
    assert '"^/v1/pets$"' in _lua(before_hcm)  # CreatePet (POST /v1/pets) creates

    changed = _with_policy(fds, MOBILE_SERVICE, "ListPets", creates=True)  # no longer idempotent
    root = _write(tmp_path / "gen", changed)
    after_routes, after_hcm = _routes_of(build_config(stack, root))
    assert "retryPolicy" not in after_routes[f"grpc/{MOBILE_SERVICE}/ListPets"]["route"]
    assert '"GET"' in _lua_created(after_hcm) and '"GET"' not in _lua_created(before_hcm)
    listing = '{ ["method"] = "GET", ["pattern"] = "^/v1/pets$" }'
    assert listing in _lua_protected(before_hcm)  # not public: 401 without a bearer token at the edge

    doc = json.loads(outputs.openapi_path(root).read_text())
    assert "201" in doc["paths"]["/v1/pets"]["get"]["responses"]
    public = _with_policy(fds, MOBILE_SERVICE, "ListPets", public=True)
    doc = build_openapi(public.SerializeToString())
    assert doc["paths"]["/v1/pets"]["get"]["security"] == []
    assert "401" not in doc["paths"]["/v1/pets"]["get"]["responses"]
    root = _write(tmp_path / "gen-public", public)
    assert listing not in _lua_protected(_routes_of(build_config(stack, root))[1])


def test_created_patterns_are_the_creating_methods(fds) -> None:
    patterns = created_patterns(route_table(fds))
    assert ("POST", "^/v1/bookings$") in patterns and ("POST", "^/v1/auth/register$") in patterns
    assert all(method == "POST" for method, _ in patterns)
    assert ("POST", "^/v1/auth/login$") not in patterns


def test_gateway_outputs_in_gen_are_fresh(tmp_path: Path) -> None:
    """What make gen-check enforces for the edge: gen/petpro_api/{openapi.json,envoy_*} are exactly what
    today's descriptors produce (run `make gen` after a proto or generator change)."""
    root = tmp_path / "gen"
    root.mkdir()
    outputs.descriptor_path(root).write_bytes(outputs.descriptor_path().read_bytes())
    for written in write_outputs(root):
        committed = outputs.gen_dir() / written.relative_to(root)
        assert committed.is_file(), f"{committed} missing: run make gen"
        assert committed.read_bytes() == written.read_bytes(), f"{committed} is stale: run make gen"


def test_render_cli_writes_the_config_for_other_deployments(tmp_path: Path) -> None:
    """`python -m edge.gateway render --out FILE` (what a Kubernetes ConfigMap is rendered with): the
    listener and upstreams come from the same env vars the edge reads; host names resolve by DNS."""
    import os
    import subprocess
    import sys

    out = tmp_path / "envoy.json"
    env = {
        **os.environ,
        "PETPRO_HOME": str(tmp_path),
        "PETPRO_HOST": "0.0.0.0",
        "PETPRO_PORT_BASE": "18400",
        "EDGE_ADDR": "edge:7405",
        "EDGE_HTTP_ADDR": "edge:7482",
        "BOOKING_ADDR": "booking:7402",
        "AUTH_ADDR": "auth:7401",
        "NOTIF_ADDR": "notif:7404",
        "EDGE_ENVOY_ROUTE_TIMEOUT": "7",
    }
    subprocess.run(
        [sys.executable, "-m", "edge.gateway", "render", "--out", str(out)], env=env, check=True, timeout=120
    )
    config = json.loads(out.read_text())
    clusters = {c["name"]: c for c in config["staticResources"]["clusters"]}
    jwks = clusters.pop("jwks_internal")  # Envoy's internal listener for jwt_authn's JWKS: no host, no port
    assert jwks["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"] == {
        "envoyInternalAddress": {"serverListenerName": "jwks_internal"}
    }
    endpoints = {
        name: c["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]
        for name, c in clusters.items()
    }
    assert {name: (a["address"], a["portValue"]) for name, a in endpoints.items()} == {
        "edge_grpc": ("edge", 7405),
        "edge_http": ("edge", 7482),
        "grpc_petpro.booking.v1.BookingService": ("booking", 7402),
        "grpc_petpro.booking.v1.ClinicAdminService": ("booking", 7402),
        "grpc_petpro.auth.v1.AuthService": ("auth", 7401),
        "grpc_petpro.auth.v1.ClinicStaffService": ("auth", 7401),
        "grpc_petpro.notification.v1.NotificationService": ("notif", 7404),
    }
    assert {c["type"] for c in clusters.values()} == {"STRICT_DNS"}
    listener = config["staticResources"]["listeners"][0]["address"]["socketAddress"]
    assert (listener["address"], listener["portValue"]) == ("0.0.0.0", 18480)
    routes, _ = _routes_of(config)
    assert routes[f"grpc/{MOBILE_SERVICE}/ListPets"]["route"]["timeout"] == "7s"


def test_envoy_verifies_tokens_on_exactly_the_protected_routes_before_the_body_is_read() -> None:
    """jwt_authn: auth_svc's issuer and audience, its JWKS through the internal listener (GetJwks
    only), the token forwarded to the BFF, one rule per non-public binding, placed before the body
    buffer and the transcoder."""
    from auth_svc.server import AuthSettings
    from edge.gateway.config import JwtAuth
    from edge.gateway.routes import protected_regexes

    config = build_config(StackSettings(port_base=18400))
    hcm = config["staticResources"]["listeners"][0]["filterChains"][0]["filters"][0]["typedConfig"]
    names = [f["name"] for f in hcm["httpFilters"]]
    assert (
        names.index("envoy.filters.http.lua")
        < names.index("envoy.filters.http.jwt_authn")
        < names.index("envoy.filters.http.buffer")
        < names.index("envoy.filters.http.grpc_json_transcoder")
    )
    jwt = next(f for f in hcm["httpFilters"] if f["name"] == "envoy.filters.http.jwt_authn")["typedConfig"]
    [provider] = jwt["providers"].values()
    settings = AuthSettings()
    assert (provider["issuer"], provider["audiences"]) == (settings.issuer, [settings.audience])
    assert (JwtAuth.issuer, JwtAuth.audience) == (settings.issuer, settings.audience)
    assert provider["forward"] is True and provider["requireExpiration"] is True
    assert provider["remoteJwks"]["httpUri"]["cluster"] == "jwks_internal"
    assert (
        provider["remoteJwks"]["cacheDuration"] == "5s"
        and provider["remoteJwks"]["asyncFetch"]["fastListener"]
    )
    routes = outputs.load_routes()
    rules = {
        (r["match"]["headers"][0]["stringMatch"]["exact"], r["match"]["safeRegex"]["regex"])
        for r in jwt["rules"]
    }
    assert rules == set(protected_regexes(routes))
    public = [r for r in routes if r.public]
    assert public and all(
        not (m == r.http_method and re.fullmatch(rx, re.sub(r"\{[^}]+\}", "x", r.http_path)))
        for r in public
        for m, rx in rules
    )
    for r in routes:
        if not r.public:
            assert any(
                m == r.http_method and re.fullmatch(rx, re.sub(r"\{[^}]+\}", "abc", r.http_path))
                for m, rx in rules
            ), r
    internal = config["staticResources"]["listeners"][1]
    assert internal["name"] == "jwks_internal" and "address" not in internal
    ihcm = internal["filterChains"][0]["filters"][0]["typedConfig"]
    [vhost] = ihcm["routeConfig"]["virtualHosts"]
    assert [r["match"].get("path") for r in vhost["routes"]] == ["/petpro.auth.v1.AuthService/GetJwks", None]
    # off: no filter, no internal listener
    off = build_config(StackSettings(port_base=18400), jwt=None)
    assert len(off["staticResources"]["listeners"]) == 1
    _, off_hcm = _routes_of(off)
    assert "envoy.filters.http.jwt_authn" not in [f["name"] for f in off_hcm["httpFilters"]]


def test_client_address_model_is_one_of_hops_or_trusted_proxy_ranges() -> None:
    """Envoy's XFF model (edge.gateway.config.ClientAddress): a hop count with use_remote_address, or
    the XFF extension trusting only the proxies' ranges; never both; the address Envoy settles on
    overwrites whatever the client sent as x-petpro-client-address."""
    import pytest

    from edge.gateway.config import ClientAddress

    def hcm(client: ClientAddress) -> dict:  # type: ignore[type-arg]
        config = build_config(StackSettings(port_base=18400), client_address=client)
        (edge,) = [x for x in config["staticResources"]["listeners"] if x["name"] == "edge"]
        return edge["filterChains"][0]["filters"][0]["typedConfig"]  # type: ignore[no-any-return]

    direct = hcm(ClientAddress())
    assert (direct["useRemoteAddress"], direct.get("xffNumTrustedHops", 0)) == (True, 0)
    assert "originalIpDetectionExtensions" not in direct
    (added,) = direct["routeConfig"]["virtualHosts"][0]["requestHeadersToAdd"]
    assert added == {
        "header": {"key": "x-petpro-client-address", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
        "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    assert hcm(ClientAddress(trusted_hops=2))["xffNumTrustedHops"] == 2
    ranges = hcm(ClientAddress(trusted_cidrs=("10.1.2.3/32", "fd00::/8")))
    assert ranges["useRemoteAddress"] is False  # Envoy refuses the extension together with it
    (ext,) = ranges["originalIpDetectionExtensions"]
    cidrs = [{"addressPrefix": "10.1.2.3", "prefixLen": 32}, {"addressPrefix": "fd00::", "prefixLen": 8}]
    assert ext["typedConfig"]["xffTrustedCidrs"]["cidrs"] == cidrs
    assert ranges["internalAddressConfig"]["cidrRanges"] == cidrs
    with pytest.raises(ValueError, match="exclude each other"):
        ClientAddress(trusted_hops=1, trusted_cidrs=("10.0.0.0/8",))
    with pytest.raises(ValueError):
        ClientAddress(trusted_cidrs=("10.0.0.0/33",))
