"""OS-process plumbing of the dev stack: pid files, process identity, detached spawn, stop, ports, logs.

Process inspection and process-tree handling come from psutil.  A pid file holds the pid on its first
line and the process start time (seconds since boot, which a clock step does not move) on the second, so a pid reused
by an unrelated process after a reboot or a crash is never mistaken for ours and never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypedDict

import psutil

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)
_SAME_START = 0.01  # s: two readings of one process's creation time agree far closer than this


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_time: float | None  # seconds since boot (_create_time); None: a hand-written pid file (then checked
    # by command line)


def _process(pid: int) -> psutil.Process | None:
    """The live (not zombie) process ``pid``, or None."""
    try:
        proc = psutil.Process(pid)
        return None if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) else proc
    except _GONE:
        return None
    except psutil.AccessDenied:
        return psutil.Process(pid)


def proc_cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except (*_GONE, psutil.AccessDenied):
        return []


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child nobody reaped yet)."""
    return _process(pid) is not None


def _create_time(proc: psutil.Process) -> float | None:
    """When the process started, in seconds since boot.  psutil's ``create_time()`` is that plus the
    boot time in wall-clock seconds (``/proc/stat`` btime), which the kernel moves whenever the clock
    is stepped (a VM's time sync did so under two CPU burners): every pid file then looked like a pid
    reused by another process, and the chaos suite's restart of one service found its own backing
    services "in use by another process" and left them running.  The difference never changes."""
    try:
        return proc.create_time() - psutil.boot_time()
    except (*_GONE, psutil.AccessDenied):
        return None


def read_pidfile(path: Path) -> PidRecord | None:
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return None
    try:
        return PidRecord(int(lines[0]), float(lines[1]) if len(lines) > 1 else None)
    except (IndexError, ValueError):
        return None  # garbage: treated as stale


def write_pidfile(path: Path, pid: int) -> PidRecord:
    proc = _process(pid)
    record = PidRecord(pid, _create_time(proc) if proc else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n{'' if record.start_time is None else repr(record.start_time)}\n")
    tmp.replace(path)
    return record


def _same_start(proc: psutil.Process, start_time: float) -> bool:
    created = _create_time(proc)
    return created is not None and abs(created - start_time) < _SAME_START


def is_ours(record: PidRecord, expected_argv: Sequence[str] | None = None) -> bool:
    """The pid file's process is alive and is the one we started (same creation time; for a pid file
    without one: the same command line)."""
    proc = _process(record.pid)
    if proc is None:
        return False
    if record.start_time is not None:
        return _same_start(proc, record.start_time)
    return expected_argv is not None and proc_cmdline(record.pid) == list(expected_argv)


START_MARKER = "=== "  # begins the line open_log writes before each run of a component


@contextlib.contextmanager
def open_log(path: Path, title: str) -> Iterator[BinaryIO]:
    """Append to a component's log, after a marker line (where ``tail(last_run=True)`` cuts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        fh.write(f"\n{START_MARKER}{time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n".encode())
        fh.flush()
        yield fh


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    user: str | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a detached process (own session and process group) with stdout+stderr appended to
    ``log_path``.  ``user``: run as that system user (only applied when we are root)."""
    with open_log(log_path, f"start: {' '.join(argv)}") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            **run_as(user),
        )


class RunAs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def run_as(user: str | None) -> RunAs:
    """Keyword arguments for ``subprocess`` to run a command as ``user`` (only when we are root)."""
    if user is None or os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam(user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def wait_exit(pid: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Wait until ``pid`` has exited (reaping it if it is our child).  True if it did in time."""
    if proc is not None and proc.pid == pid:
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    target = _process(pid)
    if target is None:
        return True
    try:
        target.wait(timeout)  # reaps our own child; otherwise waits until the pid is gone
    except psutil.TimeoutExpired:
        return not is_alive(pid)  # a zombie left for its parent to reap has exited too
    return True


def process_group(pid: int) -> int | None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        return os.getpgid(pid)
    return None


def _family(pid: int) -> list[psutil.Process]:
    """``pid``, its descendants and the rest of its process group (helpers that a crash left
    reparented), live ones only."""
    leader = _process(pid)
    found: dict[int, psutil.Process] = {}
    if leader is not None:
        found[pid] = leader
        with contextlib.suppress(*_GONE):
            found.update((c.pid, c) for c in leader.children(recursive=True))
    for other in psutil.process_iter():
        if other.pid not in found and process_group(other.pid) == pid:
            found[other.pid] = other
    return [p for p in found.values() if is_alive(p.pid)]


def family(pid: int) -> dict[int, float]:
    """Live processes of ``pid``'s process group plus all its descendants (PostgreSQL's backends
    call setsid(), so the group alone is not enough), as pid → creation time."""
    return {p.pid: t for p in _family(pid) if (t := _create_time(p)) is not None}


def _signal_group(pid: int, sig: int, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def terminate(
    pid: int,
    *,
    grace: float,
    polite: Callable[[], None] | None = None,
    proc: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Stop a process we started, its process group and its descendants.

    ``polite`` (e.g. ``pg_ctl stop -m fast``) replaces the SIGTERM to the group.  After ``grace``
    seconds the group gets SIGKILL; helpers still alive shortly after the leader exited get SIGKILL
    too (psutil signals a helper only while its pid still names the same process).  Returns True if
    the leader stopped gracefully.
    """
    if _process(pid) is None:
        return True
    group = process_group(pid) == pid  # we start every component as a session/group leader
    helpers = [p for p in _family(pid) if p.pid != pid]
    if polite is not None:
        try:
            polite()
        except Exception:  # the generic path below still stops it
            _signal_group(pid, signal.SIGTERM, group=group)
    else:
        _signal_group(pid, signal.SIGTERM, group=group)
    graceful = wait_exit(pid, grace, proc)
    if not graceful:
        _signal_group(pid, signal.SIGKILL, group=group)
        wait_exit(pid, 5.0, proc)
    # helpers normally exit with their leader; whatever is left gets SIGKILL after a short wait
    _gone, alive = psutil.wait_procs(helpers, timeout=min(grace, 2.0))
    for p in alive:
        with contextlib.suppress(*_GONE):
            p.kill()
    psutil.wait_procs(alive, timeout=5.0)
    return graceful


def port_in_use(host: str, port: int) -> bool:
    """Something accepts connections on host:port, or the port cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def wait_port_free(host: str, port: int, timeout: float = 5.0) -> bool:
    """True once nothing holds host:port, within ``timeout`` s: a component restarted right after its
    previous instance was killed may find the port still held for a moment (seen once in a chaos run
    of the broker); a port held longer is another program's, and ``up`` says so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if not port_in_use(host, port):
            return True
    return False


def tail(path: Path, lines: int = 40, *, last_run: bool = False) -> list[str]:
    """The last ``lines`` lines of a text file (empty if it does not exist).  ``last_run``: only
    what follows the last start marker, i.e. the output of the latest start."""
    try:
        with path.open("rb") as fh:
            out = [ln.decode(errors="replace").rstrip("\n") for ln in deque(fh, maxlen=lines)]
    except FileNotFoundError:
        return []
    if last_run:
        starts = [i for i, line in enumerate(out) if line.startswith(START_MARKER)]
        if starts:
            out = out[starts[-1] :]
    return out


def follow(path: Path, *, poll: float = 0.25) -> Iterator[str]:
    """Yield lines appended to ``path`` from now on (``tail -f``); never returns."""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        while True:
            line = fh.readline()
            if line:
                yield line.decode(errors="replace").rstrip("\n")
            else:
                time.sleep(poll)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (for tests and extra instances)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
