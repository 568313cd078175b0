"""Fixtures of the Kubernetes-stand-in suites."""

from __future__ import annotations

import pytest

from tests.k8s.images import require_engine


@pytest.fixture(scope="session")
def engine() -> list[str]:
    """The container engine (docker or podman) with the image built; skips without (fails in CI)."""
    return require_engine()
