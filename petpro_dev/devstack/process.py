"""OS-process plumbing of the dev stack: pid files, process identity, detached spawn, stop, ports, logs.

Linux only (``/proc``, pidfd).  A pid file holds the pid on its first line and the process start time
(``/proc/<pid>/stat`` field 22, clock ticks since boot) on the second, so a pid reused by an unrelated
process after a reboot or a crash is never mistaken for ours and never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import select
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypedDict


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_time: int | None  # None: a hand-written pid file (identity then checked by command line)


@dataclass(frozen=True)
class ProcStat:
    state: str
    ppid: int
    pgrp: int
    start_time: int


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` of a process, or None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) is in parentheses and may contain spaces: split after the last ')'
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(state=fields[0], ppid=int(fields[1]), pgrp=int(fields[2]), start_time=int(fields[19]))


def proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child nobody reaped yet)."""
    st = proc_stat(pid)
    return st is not None and st.state not in ("Z", "X")


def read_pidfile(path: Path) -> PidRecord | None:
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return None
    try:
        return PidRecord(int(lines[0]), int(lines[1]) if len(lines) > 1 else None)
    except (IndexError, ValueError):
        return None  # garbage: treated as stale


def write_pidfile(path: Path, pid: int) -> PidRecord:
    st = proc_stat(pid)
    record = PidRecord(pid, st.start_time if st else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n{record.start_time or ''}\n")
    tmp.replace(path)
    return record


def is_ours(record: PidRecord, expected_argv: Sequence[str] | None = None) -> bool:
    """The pid file's process is alive and is the one we started (same start time; for a pid file
    without a start time: the same command line)."""
    st = proc_stat(record.pid)
    if st is None or st.state in ("Z", "X"):
        return False
    if record.start_time is not None:
        return st.start_time == record.start_time
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
    """Wait until ``pid`` has exited (reaping it if it is our child).  True if it did in time.

    Event-driven: ``Popen.wait`` for our own child, a pidfd otherwise; a short poll only as fallback.
    """
    if proc is not None and proc.pid == pid:
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    pidfd: int | None = None
    with contextlib.suppress(OSError, AttributeError):
        pidfd = os.pidfd_open(pid)
    try:
        while True:
            _reap(pid)
            if not is_alive(pid):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if pidfd is not None:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                poller.poll(max(1, int(min(left, 1.0) * 1000)))
            else:
                time.sleep(min(left, 0.02))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: int, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _live_processes() -> dict[int, ProcStat]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = proc_stat(int(entry.name))
            if st is not None and st.state not in ("Z", "X"):  # a zombie holds no port or file
                table[int(entry.name)] = st
    return table


def family(pid: int) -> dict[int, int]:
    """Live processes of ``pid``'s process group plus all its descendants (PostgreSQL's backends
    call setsid(), so the group alone is not enough), as pid → start time (for safe signalling)."""
    table = _live_processes()
    found = {p for p, st in table.items() if st.pgrp == pid}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for p, st in table.items():
            if st.ppid == parent and p not in found:
                found.add(p)
                todo.append(p)
    found.add(pid)
    return {p: table[p].start_time for p in found if p in table}


def _still_running(procs: dict[int, int]) -> dict[int, int]:
    return {p: t for p, t in procs.items() if (st := proc_stat(p)) and st.start_time == t and is_alive(p)}


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
    too.  Returns True if the leader stopped gracefully.
    """
    st = proc_stat(pid)
    if st is None:
        return True
    group = st.pgrp == pid  # we start every component as a session/group leader
    helpers = family(pid)
    if polite is not None:
        try:
            polite()
        except Exception:  # the generic path below still stops it
            _signal(pid, signal.SIGTERM, group=group)
    else:
        _signal(pid, signal.SIGTERM, group=group)
    graceful = wait_exit(pid, grace, proc)
    if not graceful:
        _signal(pid, signal.SIGKILL, group=group)
        wait_exit(pid, 5.0, proc)
    # helpers normally exit with their leader; whatever is left gets SIGKILL after a short wait
    deadline = time.monotonic() + min(grace, 2.0)
    while (left := _still_running(helpers)) and time.monotonic() < deadline:
        time.sleep(0.01)
    for p in left:
        _signal(p, signal.SIGKILL, group=False)
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
