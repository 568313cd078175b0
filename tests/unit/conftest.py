"""Unit tests build their services in process from settings read from the environment.  The session's
mesh fixture (tests/conftest.py) puts MESH_ENV into ``os.environ`` for the processes it starts, and the
full suite runs the unit tests after it: each unit test sees the environment without it, as it does when
the unit suite runs alone."""

from __future__ import annotations

import pytest

from tests.conftest import MESH_ENV


@pytest.fixture(autouse=True)
def _without_the_mesh_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in MESH_ENV:
        monkeypatch.delenv(key, raising=False)
