"""grpc.aio server bootstrap shared by every PetPro service.

A service's ``server.build(settings)`` returns an :class:`App` (servicers + resources); ``serve(app)``
runs it: health (``grpc.health.v1``) and reflection on every server, the kit around every method
(:class:`petpro.interceptors.KitServerStack`, wrapped once at registration), Prometheus metrics, and graceful shutdown — SIGTERM/SIGINT → health NOT_SERVING → drain in-flight RPCs within
the grace period → stop background tasks → close resources → return (exit code 0).  Worker threads
still blocked after that (a Kafka metadata read that gets no answer, in ``asyncio.to_thread``) are
given ``EXIT_THREADS_SECONDS``, then named in the log and left behind: the process exits with 0 all
the same (their work is a read or a send the outbox repeats), never waits for them past the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from petpro import telemetry
from petpro.interceptors import KitServerStack
from petpro.settings import ServiceSettings

log = logging.getLogger("petpro.server")

# Keepalive: let idle streams (clinic feed) survive proxies, and detect dead peers.
SERVER_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
)


# how long the default executor's worker threads may take to finish after the graceful stop
EXIT_THREADS_SECONDS = 5.0
# how long each step of the stop after the drain may take (a background task's end, a resource's close)
STOP_STEP_SECONDS = 5.0

# Streams open when a connection reaches its maximum age keep running this long (clinic feeds).
MAX_CONNECTION_AGE_GRACE_MS = 24 * 3600 * 1000


def server_options(settings: ServiceSettings) -> list[tuple[str, Any]]:
    """SERVER_OPTIONS plus, when ``<SVC>_MAX_CONNECTION_AGE_SECONDS`` is set, a maximum connection
    age: the server sends GOAWAY, clients open a new connection for new RPCs and re-resolve their
    ``dns:///`` target, so replicas added behind a headless Service get traffic (gRPC's DNS resolver
    does not poll)."""
    options = list(SERVER_OPTIONS)
    if settings.max_connection_age_seconds > 0:
        options += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
        ]
    return options


@dataclass
class Registration:
    """One gRPC service on the server: the generated ``add_XServicer_to_server`` and its servicer."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    full_name: str  # e.g. "petpro.booking.v1.BookingService" (health + reflection)
    # client-facing services: a petpro.authn.Authenticator; the kit interceptor then authenticates
    # every method not declared public, before decoding and validating the request
    authenticator: Any = None


@dataclass
class App:
    name: str
    settings: ServiceSettings
    services: list[Registration]
    # coroutine factories started after the server is up (outbox relay, consumers…), cancelled on stop
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # awaited when shutdown begins (after NOT_SERVING, before draining): end long-lived streams here
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # awaited once on start (before serving) and on stop (after draining), in reverse order
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    interceptors: list[grpc.aio.ServerInterceptor] = field(default_factory=list)
    # awaited after start: the server says SERVING once all of them returned (a consumer in its group),
    # or after ``ready_timeout`` seconds whatever they say (a readiness gate, never a lock-out)
    ready: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    ready_timeout: float = 20.0


class Running:
    """A started server; ``stop()`` performs the graceful sequence."""

    def __init__(
        self, app: App, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, port: int
    ) -> None:
        self.app = app
        self.server = server
        self.health = health_servicer
        self.port = port
        self.tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.draining = asyncio.Event()  # set when new RPCs are refused and in-flight ones drain

    async def stop(self, grace: float | None = None) -> None:
        if self._stopped:
            return
        self._stopped = True
        grace = self.app.settings.grace_seconds if grace is None else grace
        log.info("shutting down", extra={"fields": {"grace_s": grace}})
        await self.health.enter_graceful_shutdown()  # every service → NOT_SERVING
        for hook in self.app.on_shutdown:
            await hook()
        self.draining.set()
        # refuses new RPCs, waits for in-flight ones up to grace, then cancels them; every later step is
        # bounded too (STOP_STEP_SECONDS), so a step that never ends is named in the log, not waited for
        # until the kubelet's SIGKILL
        await self._bounded("the server's stop", self.server.stop(grace), grace + STOP_STEP_SECONDS)
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            done, pending = await asyncio.wait(self.tasks, timeout=STOP_STEP_SECONDS)
            for task in done:  # (retrieved, as awaiting them did: no "exception never retrieved")
                if not task.cancelled():
                    task.exception()
            for task in pending:
                log.warning(
                    "background task still running after its cancellation; left behind",
                    extra={"fields": {"task": task.get_name(), "at": _task_at(task)}},
                )
        for close in reversed(self.app.on_stop):
            await self._bounded(getattr(close, "__qualname__", repr(close)), close(), STOP_STEP_SECONDS)
        log.info("stopped")

    @staticmethod
    async def _bounded(what: str, step: Awaitable[object], timeout: float) -> None:
        try:
            await asyncio.wait_for(step, timeout)
        except TimeoutError:
            log.warning("a stop step did not finish in time; left behind", extra={"fields": {"step": what}})
        except Exception:
            log.exception("error while stopping", extra={"fields": {"step": what}})


async def start(app: App, port: int | None = None) -> Running:
    """Start ``app`` on its configured port (or ``port``; 0 picks a free one).  Used by tests too."""
    for hook in app.on_start:
        await hook()
    server = grpc.aio.server(interceptors=app.interceptors or None, options=server_options(app.settings))
    kit = KitServerStack(
        authenticators={
            reg.full_name: reg.authenticator for reg in app.services if reg.authenticator is not None
        }
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health.SERVICE_NAME, reflection.SERVICE_NAME]
    for reg in app.services:
        reg.add_to_server(reg.servicer, _Wrapping(server, kit))  # type: ignore[arg-type]
        names.append(reg.full_name)
    reflection.enable_server_reflection(names, server)
    bind_port = app.settings.listen_port if port is None else port
    bound = server.add_insecure_port(f"{app.settings.bind_host}:{bind_port}")
    if bound == 0:
        raise SystemExit(f"{app.name}: cannot bind {app.settings.bind_host}:{bind_port}")
    await server.start()
    running = Running(app, server, health_servicer, bound)
    for task_factory in app.background:
        running.tasks.append(asyncio.create_task(_guard(app.name, task_factory)))
    if app.ready:
        for name in ("", *(reg.full_name for reg in app.services)):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        running.tasks.append(asyncio.create_task(_serving_when_ready(app, health_servicer, bound)))
    else:
        await _serving(app, health_servicer, bound)
    return running


async def _serving(app: App, health_servicer: health.aio.HealthServicer, bound: int) -> None:
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for reg in app.services:
        await health_servicer.set(reg.full_name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"fields": {"addr": f"{app.settings.bind_host}:{bound}"}})


async def _serving_when_ready(app: App, health_servicer: health.aio.HealthServicer, bound: int) -> None:
    """SERVING once every ``app.ready`` returned, or at ``app.ready_timeout`` (logged): a rolling
    update then waits for a consumer to be in its group before it stops the next replica."""
    try:
        await asyncio.wait_for(asyncio.gather(*(ready() for ready in app.ready)), app.ready_timeout)
    except TimeoutError:
        log.warning("not ready in time, serving anyway", extra={"fields": {"timeout_s": app.ready_timeout}})
    await _serving(app, health_servicer, bound)


class _Wrapping:
    """The server as a generated ``add_XServicer_to_server`` sees it: every method handler it
    registers goes through :meth:`KitServerStack.wrap` first (once, here, not per call)."""

    def __init__(self, server: grpc.aio.Server, kit: KitServerStack) -> None:
        self.server = server
        self.kit = kit
        self.wrapped: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}

    def _wrap(self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> dict[str, Any]:
        if service not in self.wrapped:
            self.wrapped[service] = {
                name: self.kit.wrap(f"/{service}/{name}", handler) for name, handler in handlers.items()
            }
        return self.wrapped[service]

    def add_generic_rpc_handlers(self, generic_handlers: Sequence[Any]) -> None:
        out = []
        for h in generic_handlers:
            handlers = getattr(h, "_method_handlers", None)
            service = getattr(h, "_name", None)
            if handlers is None or service is None:
                raise TypeError(f"the kit wraps method handlers by name; cannot wrap {h!r}")
            by_name = {full.rpartition("/")[2]: handler for full, handler in handlers.items()}
            out.append(grpc.method_handlers_generic_handler(service, self._wrap(service, by_name)))
        self.server.add_generic_rpc_handlers(tuple(out))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.server.add_registered_method_handlers(service, self._wrap(service, handlers))


async def _guard(
    name: str,
    factory: Callable[[], Awaitable[None]],
    *,
    first_backoff: float = 0.5,
    max_backoff: float = 10.0,
) -> None:
    """Run a background task for the life of the server: one that crashes (a Kafka consumer whose
    broker refused it during a restart) is started again after a backoff, never left dead in a
    process that still reports SERVING."""
    backoff = first_backoff
    while True:
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task of %s crashed; starting it again in %.1fs", name, backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff)


async def serve(app: App) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    # the handlers first: a SIGTERM while starting (a rollout that changes its mind) is a stop too, not
    # Python's default (killed by the signal, nothing closed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    telemetry.start_metrics_server(app.settings.metrics_listen_port, app.settings.bind_host)
    starting = asyncio.ensure_future(start(app))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # stopped before it served: nothing was taken on yet
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        log.info("stopped before serving")
        return
    running = starting.result()
    await stopping
    await running.stop()
    stuck = await _threads_finished(EXIT_THREADS_SECONDS)
    if stuck:
        log.warning(
            "worker threads still busy after the stop; exiting without them",
            extra={"fields": {"timeout_s": EXIT_THREADS_SECONDS, "threads": stuck}},
        )
        _exit_now()


async def _threads_finished(timeout: float) -> list[str]:
    """Wait up to ``timeout`` for the default executor's threads (``asyncio.to_thread``) and every other
    non-daemon thread to finish; → where each one still running is (empty: all done).  Python would
    otherwise join them at exit, however long they block."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(loop.shutdown_default_executor()), timeout)
    while True:
        left = [
            t
            for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()
            and "_do_shutdown" not in t.name  # (the executor's shutdown, waiting on the others)
        ]  # fmt: skip
        if not left or loop.time() >= deadline:
            break
        await asyncio.sleep(0.05)
    frames = sys._current_frames()
    return [f"{t.name}: {_where(frames.get(t.ident or -1))}" for t in left]


def _where(frame: Any) -> str:
    if frame is None:
        return "?"
    return " < ".join(
        f"{f.name} ({f.filename}:{f.lineno})" for f in reversed(traceback.extract_stack(frame)[-4:])
    )


def _task_at(task: asyncio.Task[Any]) -> str:
    """Where a task waits: its chain of awaits, outermost first."""
    out: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(out) < 8:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_qualname} ({frame.f_code.co_filename}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(out) or "?"


def _exit_now() -> None:
    """Exit 0 at once, spans and logs flushed, without joining the threads that would not finish."""
    telemetry.shutdown_tracing()
    logging.shutdown()
    os._exit(0)


def main(build: Callable[[Any], App], settings: ServiceSettings) -> None:
    """Entry point of ``python -m <service>``: logging, tracing, uvloop, build, serve."""
    import uvloop

    service = build.__module__.split(".")[0]
    telemetry.configure_logging(service, settings.log_level)
    telemetry.setup_tracing(service)

    async def _run() -> None:
        await serve(build(settings))

    try:
        uvloop.run(_run())  # (uvloop.install() is deprecated)
    finally:
        telemetry.shutdown_tracing()  # flush the last spans


def periodic(
    name: str, interval: float, job: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    """A background task factory running ``job`` every ``interval`` seconds; failures are logged and
    retried at the next tick (sweepers, relays)."""
    job_log = logging.getLogger(name)

    async def loop() -> None:
        while True:
            try:
                await job()
            except Exception:
                job_log.exception("%s failed; retrying in %.1fs", name, interval)
            await asyncio.sleep(interval)

    return loop
