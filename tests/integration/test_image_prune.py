"""The image leaves out parts of two SDKs that nothing imports at run time (the Dockerfile's TYPING_ONLY and
TWILIO_DOMAINS): stripe's request-parameter TypedDicts and the Twilio REST domains PetPro does not call.
This runs the payment gateway's and the SMS adapter's suites against the Stripe sandbox and the Twilio
stand-in with those parts unimportable, as they are in the image, so an SDK upgrade that starts importing
them at run time fails here rather than in production."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SUITES = [
    "tests/integration/test_contract_payment_gateway.py",
    "tests/integration/test_stripe_sandbox.py",
    "tests/integration/test_sms_provider.py",
]

RUNNER = """
import importlib.abc, sys
PRUNED = {pruned!r}
class Pruned(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if any(name == p or name.startswith(p + ".") for p in PRUNED):
            raise ModuleNotFoundError(f"{{name}} is not in the image (Dockerfile)", name=name)
        return None
sys.meta_path.insert(0, Pruned())
import pytest
sys.exit(pytest.main({args!r}))
"""


def dockerfile_arg(name: str) -> list[str]:
    found = re.search(rf'^ARG {name}="([^"]*)"', (ROOT / "Dockerfile").read_text(), re.M)
    assert found, f"the Dockerfile names ARG {name}"
    return found.group(1).split()


def pruned_modules() -> list[str]:
    import twilio.rest

    kept = set(dockerfile_arg("TWILIO_DOMAINS"))
    domains = [
        p.name for p in Path(twilio.rest.__file__).parent.iterdir() if p.is_dir() and p.name not in kept
    ]
    return [p.replace("/", ".") for p in dockerfile_arg("TYPING_ONLY")] + [
        f"twilio.rest.{d}" for d in domains if d != "__pycache__"
    ]


def test_the_sdks_work_without_what_the_image_leaves_out() -> None:
    pruned = pruned_modules()
    assert "stripe.params" in pruned and "twilio.rest.conversations" in pruned  # the blocker blocks
    result = subprocess.run(
        [sys.executable, "-c", RUNNER.format(pruned=pruned, args=["-q", "-p", "no:cacheprovider", *SUITES])],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)


def test_the_blocker_makes_a_pruned_module_unimportable() -> None:
    """The runner really hides a pruned module (else the test above could not fail)."""
    code = RUNNER.split("import pytest")[0].format(pruned=["stripe.params"]) + (
        "import stripe.params._customer_create_params\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "is not in the image" in result.stderr
