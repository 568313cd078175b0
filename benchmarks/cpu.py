"""CPU time per operation per process, from /proc (user + system ticks), for every figure.

Rates move with whatever else the shared box is doing; CPU time spent per operation moves far less,
and it says where the cost is.  Each stack process is read with its descendants (Envoy runs under a
small supervisor, PostgreSQL forks a backend per connection) plus the children they have already
reaped (``cutime``/``cstime``).  The load generator is this process plus the tools it ran (h2load).
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")

OWN = ("auth", "booking", "payment", "notif", "edge", "envoy")  # PetPro's own processes (the stack's)
REPLICAS = ("notif-2",)  # extra replicas a figure starts next to the stack's (PetPro's own too)
# PetPro's own processes, each extra replica right after the one the stack runs
OWN_ALL = tuple(n for own in OWN for n in (own, *(r for r in REPLICAS if r.startswith(own + "-"))))
APART = ("postgres", "redis", "kafka", "smtp", "stripe")  # backing services and the sandbox
LOADGEN = "loadgen"


def _stat(pid: int) -> tuple[float, float]:
    """(own + reaped children's CPU seconds) of one process."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        raw = Path(f"/proc/{pid}/stat").read_text()
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        return (utime + stime) / TICK, (cutime + cstime) / TICK
    return 0.0, 0.0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live descendants and the children they reaped."""
    total, stack, seen = 0.0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        own, reaped = _stat(p)
        total += own + reaped
        stack += _children(p)
    return total


def loadgen_cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class CpuMeter:
    """``pids``: component name → pid (components not running are left out); :meth:`add` one for the
    figures it runs during (an extra replica)."""

    pids: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)

    def sample(self) -> dict[str, float]:
        out = {name: tree_cpu(pid) for name, pid in self.pids.items()}
        out[LOADGEN] = loadgen_cpu()
        return out

    def start(self) -> None:
        self._start = self.sample()

    def add(self, name: str, pid: int) -> None:
        """Measure one more process (from the next :meth:`start`)."""
        self.pids[name] = pid

    def remove(self, name: str) -> None:
        self.pids.pop(name, None)

    def per_op(self, ops: int) -> dict[str, float]:
        """CPU milliseconds per operation per process since :meth:`start`, and ``own`` (PetPro's
        processes summed, extra replicas included)."""
        end = self.sample()
        n = max(ops, 1)
        ms = {name: (end[name] - self._start.get(name, end[name])) * 1e3 / n for name in end}
        ms["own"] = sum(ms.get(name, 0.0) for name in OWN_ALL)
        return ms


def describe(ms: dict[str, float], names: Iterable[str] = (*OWN_ALL, "own", *APART, LOADGEN)) -> str:
    return ", ".join(f"{n} {ms[n]:.2f}" for n in names if n in ms and (ms[n] >= 0.005 or n == "own"))
