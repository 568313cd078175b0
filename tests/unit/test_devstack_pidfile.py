"""The dev stack's pid files identify a process by its start time in seconds since boot: a step of
the wall clock (the kernel then moves /proc/stat's boot time, as a VM's time sync did under two CPU
burners) must not make the stack disown its own running processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from petpro_dev.devstack import process


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_clock_step_after_the_pid_file_was_written_keeps_the_process_ours(
    tmp_path: Path, child, monkeypatch
) -> None:
    record = process.write_pidfile(tmp_path / "x.pid", child.pid)
    assert process.is_ours(process.read_pidfile(tmp_path / "x.pid"))  # type: ignore[arg-type]

    booted = psutil.boot_time()
    monkeypatch.setattr(psutil._psplatform, "boot_time", lambda: booted + 1.0)  # the clock stepped 1 s
    assert psutil.Process(child.pid).create_time() != pytest.approx(booted + record.start_time, abs=0.5)
    assert process.is_ours(process.read_pidfile(tmp_path / "x.pid"))  # type: ignore[arg-type]


def test_another_process_under_the_same_pid_is_not_ours(tmp_path: Path, child) -> None:
    (tmp_path / "x.pid").write_text(f"{child.pid}\n1.0\n")  # started one second after boot: not this one
    assert not process.is_ours(process.read_pidfile(tmp_path / "x.pid"))  # type: ignore[arg-type]
