"""One more instance of a stack's service, next to the one the stack runs: as the chart runs replicas
(same database, consumer group, Redis, SMTP), for the tests and the benchmark that need two.

The extra instance is started with the component's own launch (argv and env, on top of the stack's
child environment) and its own gRPC and metrics ports; it logs to ``logs/<name>.log`` under the stack's
home.  It is not in the stack's pid files: whoever starts one stops it (:meth:`ExtraReplica.stop`,
:meth:`ExtraReplica.kill`, or the context manager, which stops it even when the body failed)::

    with ExtraReplica(stack, "notif") as replica:
        await eventually(replica.ready)
        await eventually(replica.assigned)  # it holds partitions of the consumer group
        ...

:class:`Metrics` reads a service's Prometheus endpoint (the extra replica's, or the stack's own
instance's with :func:`stack_metrics`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from petpro_dev.devstack import checks, process
from petpro_dev.devstack.checks import NotReady

if TYPE_CHECKING:
    from petpro_dev.devstack.stack import Stack

LAG_GAUGE = "kafka_consumer_lag_messages"  # a consumer's lag, one series per topic it holds partitions of
CONSUMED = "events_consumed_total"  # events a consumer has handled (processed or dead-lettered)


@dataclass(frozen=True)
class Metrics:
    """A service's ``/metrics`` (Prometheus text format)."""

    url: str

    async def text(self) -> str:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as c:
            r = await c.get(self.url)
            r.raise_for_status()
            return r.text

    async def total(self, name: str) -> float:
        """The sum of a metric's series (0 when it has none)."""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in (await self.text()).splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )

    async def has_series(self, name: str) -> bool:
        text = await self.text()
        return any(line.startswith(name + "{") for line in text.splitlines())

    async def assigned(self) -> bool:
        """The consumer has joined its group, holds partitions and has fetched from them (its lag gauge
        has series: they are set per topic of the partitions it is assigned, once it knows their end)."""
        return await self.has_series(LAG_GAUGE)

    async def consumed(self) -> float:
        """Events this instance has handled so far (its ``events_consumed_total``)."""
        return await self.total(CONSUMED)


def stack_metrics(stack: Stack, component: str) -> Metrics:
    """The metrics of the instance the stack itself runs."""
    return Metrics(f"http://{stack.ctx.settings.host}:{stack.ctx.port(f'{component}_metrics')}/metrics")


class ExtraReplica:
    """A second ``python -m <module>`` of a stack component (``notif`` by default), started at once.

    ``env_prefix``: the service's settings prefix (``NOTIF_``: ``NOTIF_GRPC_PORT``, ``NOTIF_METRICS_PORT``),
    by default the component's name in capitals.  ``name``: its log's and its report's name."""

    def __init__(
        self,
        stack: Stack,
        component: str = "notif",
        *,
        name: str | None = None,
        env_prefix: str | None = None,
        stop_grace: float | None = None,
    ) -> None:
        comp = stack.component(component)
        self.name = name or f"{component}-replica"
        self.host = stack.ctx.settings.host
        self.grpc_port, self.metrics_port = process.free_port(self.host), process.free_port(self.host)
        self.stop_grace = comp.stop_grace if stop_grace is None else stop_grace
        prefix = env_prefix if env_prefix is not None else f"{component.upper()}_"
        launch = comp.launch(stack.ctx)
        env = stack.ctx.child_env(
            {
                **launch.env,
                f"{prefix}GRPC_PORT": str(self.grpc_port),
                f"{prefix}METRICS_PORT": str(self.metrics_port),
            }
        )
        self.log: Path = stack.ctx.log_path(self.name)
        self.metrics = Metrics(f"http://{self.host}:{self.metrics_port}/metrics")
        self.proc: subprocess.Popen[bytes] = process.spawn(
            launch.argv, env=env, log_path=self.log, user=launch.user
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"{self.name} exited ({self.proc.returncode}):\n"
                + "\n".join(process.tail(self.log, 60, last_run=True))
            )

    async def ready(self) -> bool:
        """Its gRPC health says SERVING (an exit is an error, with the log's tail)."""
        self._alive()
        try:
            await asyncio.to_thread(checks.grpc_health, self.address())
        except NotReady:
            return False
        return True

    async def assigned(self) -> bool:
        """It holds partitions of its consumer group (see :meth:`Metrics.assigned`)."""
        self._alive()
        try:
            return await self.metrics.assigned()
        except httpx.HTTPError:  # not listening yet
            return False

    async def consumed(self) -> float:
        return await self.metrics.consumed()

    def stop(self) -> bool:
        """SIGTERM (a graceful stop: a consumer commits what it finished and leaves its group), then
        SIGKILL after the component's grace period; waits for the exit.  True if it stopped gracefully."""
        if self.proc.poll() is not None:
            return True
        return process.terminate(self.proc.pid, grace=self.stop_grace, proc=self.proc)

    def kill(self) -> None:
        """SIGKILL (a crash), and wait for it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def __enter__(self) -> ExtraReplica:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
