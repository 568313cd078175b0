"""The dev stack: start, stop and inspect a list of components under one state folder.

``Stack(settings, components)`` is what ``petpro up/down/status`` and the test fixtures use::

    stack = Stack(StackSettings(home=tmp, port_base=17400), components=infra())
    stack.up()            # → UpReport; raises StackError (with the failing component's log tail)
    stack.env()           # DATABASE_URL, REDIS_URL, … for clients
    stack.down()

Components start as soon as what they depend on is ready (independent ones in parallel), progress
is reported in list order.  ``down`` stops in reverse dependency order.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from petpro.settings import BackingSettings, StackSettings
from petpro_dev.devstack import process
from petpro_dev.devstack.checks import NotReady, ProcessExited, wait_ready
from petpro_dev.devstack.component import Component, Context, Step, Task, TaskFailed

S = TypeVar("S", bound=Step)

LOG_TAIL_LINES = 40
EXTERNAL_TIMEOUT = 10.0


@dataclass(frozen=True)
class StepResult:
    """Outcome of one component or task in ``up`` or ``down``."""

    name: str
    address: str
    state: str  # up: started | already running | external | done | skipped | failed; down: stopped | killed | not running
    pid: int | None = None
    seconds: float = 0.0
    detail: str = ""
    log_tail: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.state in ("failed", "skipped")


@dataclass(frozen=True)
class UpReport:
    results: tuple[StepResult, ...]
    seconds: float  # from the call to all-healthy

    def by_name(self) -> dict[str, StepResult]:
        return {r.name: r for r in self.results}


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    state: str  # running | external | stopped | unhealthy | unreachable
    pid: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("running", "external")


class PreflightError(RuntimeError):
    """A component cannot be started (port taken, external server unreachable): no log to show."""


class StackError(RuntimeError):
    """``up`` failed: the message names the component, the reason and the end of its log."""

    def __init__(self, message: str, results: Sequence[StepResult] = ()) -> None:
        super().__init__(message)
        self.results = tuple(results)


class Stack:
    """A dev stack: ``components`` (default: :func:`components.default_components`) under
    ``settings.home`` with ``settings``' port map; ``backing`` URLs that are set mark components as
    external.  ``progress`` is called with each step's result, in list order, during ``up``."""

    def __init__(
        self,
        settings: StackSettings | None = None,
        components: Sequence[Step] | None = None,
        *,
        backing: BackingSettings | None = None,
        progress: Callable[[StepResult], None] | None = None,
    ) -> None:
        if components is None:
            from petpro_dev.devstack.components import default_components

            components = default_components()
        self.steps: tuple[Step, ...] = tuple(components)
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"component {step.name!r} listed twice")
            missing = [d for d in step.depends_on if d not in seen]
            if missing:
                raise ValueError(f"{step.name!r} depends on {missing}, which must come before it in the list")
            seen.add(step.name)
        self.settings = settings if settings is not None else StackSettings()
        self.ctx = Context(self.settings, backing if backing is not None else BackingSettings())
        self.progress = progress
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # children started by this object
        self._cancel = threading.Event()

    # ------------------------------------------------------------------ queries

    def component(self, name: str) -> Component:
        for step in self.steps:
            if step.name == name and isinstance(step, Component):
                return step
        raise KeyError(f"no component {name!r}; known: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [s.name for s in self.steps if isinstance(s, Component)]

    def address(self, name: str) -> str:
        return self.component(name).address(self.ctx)

    def log_path(self, name: str) -> Path:
        return self.ctx.log_path(name)

    def env(self) -> dict[str, str]:
        """Environment a client of this stack needs (DATABASE_URL, REDIS_URL, …, PETPRO_*)."""
        return self.ctx.client_env()

    def pid(self, name: str) -> int | None:
        """Pid of a component this stack started and that is still alive."""
        record = process.read_pidfile(self.ctx.pid_path(name))
        return record.pid if record is not None and process.is_ours(record) else None

    # ------------------------------------------------------------------ up

    def up(self, only: Collection[str] | None = None, *, timeout: float | None = None) -> UpReport:
        """Start what is not running (``only``: those names and what they depend on) and wait until
        all are ready.  Raises :class:`StackError` if one fails; the others are left running."""
        started = time.monotonic()
        steps = self._select(only)
        self._cancel.clear()
        results: list[StepResult] = []
        with self._locked():
            for result in self._in_order(
                steps, lambda s: s.depends_on, lambda s, deps: self._up_one(s, deps, timeout)
            ):
                results.append(result)
                if self.progress is not None:
                    self.progress(result)
        report = UpReport(tuple(results), time.monotonic() - started)
        failures = [r for r in results if r.state == "failed"]
        if failures:
            raise StackError("\n\n".join(self._describe_failure(r) for r in failures), results)
        return report

    def _up_one(self, step: Step, deps: Sequence[StepResult], timeout: float | None) -> StepResult:
        failed = [d.name for d in deps if d.failed]
        address = step.address(self.ctx) if isinstance(step, Component) else ""
        if failed:
            return StepResult(step.name, address, "skipped", detail=f"{', '.join(failed)} not up")
        t0 = time.monotonic()
        try:
            if isinstance(step, Task):
                note = step.run(self.ctx)
                return StepResult(step.name, "", note, seconds=time.monotonic() - t0)
            return self._start(step, address, t0, timeout)
        except TaskFailed as exc:
            tail = tuple(process.tail(exc.log_path, LOG_TAIL_LINES, last_run=True)) if exc.log_path else ()
            return StepResult(
                step.name, address, "failed", seconds=time.monotonic() - t0, detail=str(exc), log_tail=tail
            )
        except PreflightError as exc:
            return StepResult(step.name, address, "failed", seconds=time.monotonic() - t0, detail=str(exc))
        except Exception as exc:
            tail = tuple(process.tail(self.ctx.log_path(step.name), LOG_TAIL_LINES, last_run=True))
            return StepResult(
                step.name, address, "failed", seconds=time.monotonic() - t0, detail=f"{exc}", log_tail=tail
            )

    def _start(self, comp: Component, address: str, t0: float, timeout: float | None) -> StepResult:
        ctx = self.ctx

        def result(state: str, pid: int | None = None, detail: str = "") -> StepResult:
            return StepResult(comp.name, address, state, pid, time.monotonic() - t0, detail)

        if comp.is_external(ctx):
            try:
                wait_ready(comp.ready, address, timeout=timeout or EXTERNAL_TIMEOUT, cancel=self._cancel)
            except NotReady as exc:
                raise PreflightError(f"external {comp.url_key} {address} is unreachable: {exc}") from None
            if comp.provision is not None:
                comp.provision(ctx, address)
            return result("external")

        pid_path = ctx.pid_path(comp.name)
        launch = comp.launch(ctx)
        record = process.read_pidfile(pid_path)
        detail = ""
        if record is not None:
            if self._is_ours(comp, record):
                try:
                    comp.ready(address)
                except NotReady as exc:  # alive but not answering: replace it
                    detail = f"restarted (was unhealthy: {exc})"
                    self._stop(comp, record)
                else:
                    if comp.provision is not None:
                        comp.provision(ctx, address)
                    return result("already running", record.pid)
            else:
                detail = "stale pid file removed"
            pid_path.unlink(missing_ok=True)

        port = comp.port_of(ctx)
        if process.port_in_use(ctx.settings.host, port) and not process.wait_port_free(
            ctx.settings.host, port
        ):
            raise PreflightError(
                f"port {port} is already in use by another process "
                f"(choose another PETPRO_PORT_BASE, or set PETPRO_{comp.name.upper()}_PORT)"
            )
        if comp.prepare is not None:
            comp.prepare(ctx)
        proc = process.spawn(
            launch.argv, env=ctx.child_env(launch.env), log_path=ctx.log_path(comp.name), user=launch.user
        )
        self._procs[comp.name] = proc
        process.write_pidfile(pid_path, proc.pid)
        try:
            wait_ready(
                comp.ready, address, timeout=timeout or comp.start_timeout, proc=proc, cancel=self._cancel
            )
        except ProcessExited as exc:
            pid_path.unlink(missing_ok=True)
            raise RuntimeError(str(exc)) from None
        if comp.provision is not None:
            comp.provision(ctx, address)
        return result("started", proc.pid, detail)

    # ------------------------------------------------------------------ down

    def down(self, *, purge: bool = False) -> list[StepResult]:
        """Stop everything this stack's home has pid files for, dependents first; remove the pid
        files.  Data stays unless ``purge`` (then ``data/`` and ``mail/`` are deleted)."""
        comps = [s for s in self.steps if isinstance(s, Component)]
        needs = {c.name: self._component_deps(c) for c in comps}
        dependents = {c.name: [d for d in needs if c.name in needs[d]] for c in comps}
        results: list[StepResult] = []
        if self.ctx.run_dir.exists():  # else nothing was ever started here
            with self._locked():
                # reverse order; a component stops once everything that depends on it has stopped
                results += self._in_order(
                    list(reversed(comps)), lambda c: dependents[c.name], lambda c, _: self._down_one(c)
                )
                results += self._down_orphans({c.name for c in comps})
        if purge:
            shutil.rmtree(self.ctx.data_root, ignore_errors=True)
            shutil.rmtree(self.ctx.mail_dir, ignore_errors=True)
        return results

    def _component_deps(self, step: Step) -> set[str]:
        """Components ``step`` depends on, directly or through tasks."""
        by_name = {s.name: s for s in self.steps}
        found: set[str] = set()
        for name in step.depends_on:
            dep = by_name[name]
            found |= {name} if isinstance(dep, Component) else self._component_deps(dep)
        return found

    def _down_one(self, comp: Component) -> StepResult:
        try:
            return self._take_down(comp)
        except Exception as exc:
            return StepResult(comp.name, comp.address(self.ctx), "failed", detail=str(exc))

    def _take_down(self, comp: Component) -> StepResult:
        address = comp.address(self.ctx)
        record = process.read_pidfile(self.ctx.pid_path(comp.name))
        if record is None:
            state = "external" if comp.is_external(self.ctx) else "not running"
            return StepResult(comp.name, address, state)
        t0 = time.monotonic()
        if not self._is_ours(comp, record):
            self.ctx.pid_path(comp.name).unlink(missing_ok=True)
            return StepResult(comp.name, address, "not running", detail="stale pid file removed")
        graceful = self._stop(comp, record)
        self.ctx.pid_path(comp.name).unlink(missing_ok=True)
        return StepResult(
            comp.name, address, "stopped" if graceful else "killed", record.pid, time.monotonic() - t0
        )

    def _is_ours(self, comp: Component, record: process.PidRecord) -> bool:
        # a pid file we wrote has the start time; a hand-written one is compared by command line
        argv = comp.launch(self.ctx).argv if record.start_time is None else None
        return process.is_ours(record, argv)

    def _stop(self, comp: Component, record: process.PidRecord) -> bool:
        stop = comp.stop
        polite = (lambda: stop(self.ctx, record.pid)) if stop is not None else None
        return process.terminate(
            record.pid, grace=comp.stop_grace, polite=polite, proc=self._procs.pop(comp.name, None)
        )

    def _down_orphans(self, known: set[str]) -> list[StepResult]:
        """Pid files of components no longer in the list (e.g. started by another version)."""
        results = []
        for pid_path in sorted(self.ctx.run_dir.glob("*.pid")):
            name = pid_path.stem
            if name in known:
                continue
            record = process.read_pidfile(pid_path)
            state = "not running"
            if record is not None and record.start_time is not None and process.is_ours(record):
                state = "stopped" if process.terminate(record.pid, grace=10.0) else "killed"
            pid_path.unlink(missing_ok=True)
            results.append(StepResult(name, "", state, record.pid if record else None))
        return results

    # ------------------------------------------------------------------ status

    def status(self) -> list[ComponentStatus]:
        comps = [s for s in self.steps if isinstance(s, Component)]
        with ThreadPoolExecutor(max_workers=max(1, len(comps))) as pool:
            return list(pool.map(self._status_one, comps))

    def _status_one(self, comp: Component) -> ComponentStatus:
        address = comp.address(self.ctx)
        if comp.is_external(self.ctx):
            try:
                comp.ready(address)
            except NotReady as exc:
                return ComponentStatus(comp.name, address, "unreachable", detail=str(exc))
            return ComponentStatus(comp.name, address, "external")
        record = process.read_pidfile(self.ctx.pid_path(comp.name))
        if record is None or not self._is_ours(comp, record):
            return ComponentStatus(comp.name, address, "stopped")
        try:
            comp.ready(address)
        except NotReady as exc:
            return ComponentStatus(comp.name, address, "unhealthy", record.pid, str(exc))
        return ComponentStatus(comp.name, address, "running", record.pid)

    # ------------------------------------------------------------------ helpers

    def _select(self, only: Collection[str] | None) -> list[Step]:
        if only is None:
            return list(self.steps)
        by_name = {s.name: s for s in self.steps}
        unknown = set(only) - set(by_name)
        if unknown:
            raise KeyError(f"unknown component(s) {', '.join(sorted(unknown))}; known: {', '.join(by_name)}")
        wanted: set[str] = set()
        todo = list(only)
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo.extend(by_name[name].depends_on)
        return [s for s in self.steps if s.name in wanted]

    def _in_order(
        self,
        steps: Sequence[S],
        waits_for: Callable[[S], Iterable[str]],
        run: Callable[[S, list[StepResult]], StepResult],
    ) -> Iterator[StepResult]:
        """Run each step in its own thread once the steps it waits for (earlier in ``steps``) are
        done; yield the results in list order as they become available."""
        futures: dict[str, Future[StepResult]] = {}

        def after(step: S, waits: list[Future[StepResult]]) -> StepResult:
            return run(step, [f.result() for f in waits])

        with ThreadPoolExecutor(max_workers=max(1, len(steps)), thread_name_prefix="devstack") as pool:
            try:
                for step in steps:
                    waits = [futures[name] for name in waits_for(step) if name in futures]
                    futures[step.name] = pool.submit(after, step, waits)
                for step in steps:
                    yield futures[step.name].result()
            except BaseException:  # Ctrl-C: end the readiness waits instead of sitting them out
                self._cancel.set()
                raise

    def _describe_failure(self, r: StepResult) -> str:
        lines = [f"{r.name} failed: {r.detail}"]
        if r.log_tail:
            lines.append(f"--- last {len(r.log_tail)} lines of {self.ctx.log_path(r.name)} ---")
            lines += r.log_tail
        return "\n".join(lines)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up``/``down`` at a time per home (a second one waits)."""
        self.ctx.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.ctx.run_dir / ".lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
