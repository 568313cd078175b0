"""The image under test (built by `make image`) and its engine, for the container tests
(tests/k8s/test_image.py, the rehearsal in tests/k8s/test_multihost.py)."""

from __future__ import annotations

import os

import pytest


def image_ref() -> str:
    """``PETPRO_IMAGE``, else what `make image` tags: ``petpro:<version>``."""
    from petpro_dev.image import version

    return os.environ.get("PETPRO_IMAGE") or f"petpro:{version()}"


def require_engine() -> list[str]:
    """The engine's command with the image present; a skip without them (a failure in CI)."""
    from petpro_dev.image import ImageError, ensure_engine, has_image

    try:
        cmd = ensure_engine()
    except ImageError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no container engine in CI: {exc}")
        pytest.skip(f"no container engine: {exc}")
    if not has_image(cmd, image_ref()):
        if os.environ.get("CI"):
            pytest.fail(f"{image_ref()} is not built: `make test` runs `make image` first")
        pytest.skip(f"{image_ref()} is not built (make image)")
    return cmd
