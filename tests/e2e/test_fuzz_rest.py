"""Fuzzing the REST edge from its own OpenAPI document (schemathesis): every generated request —
valid and invalid, authenticated as an owner, against the seeded catalog — answers without a 5xx,
with the documented content type, and with a body that matches the documented schema.

Bounded and deterministic: a fixed number of examples per operation, derandomized (Hypothesis
derives its choices from the test, not from a clock), no deadline (a slow machine is no failure).
``FUZZ_EXAMPLES`` sizes it (default 25 per operation).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from petpro_dev.devstack import Stack

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="session")
def owner_token(mesh: Stack) -> Callable[[], str]:
    """A fresh owner session per call: fuzzing POST /v1/me/sessions:revokeAll ends the sessions it had."""
    base = f"http://{mesh.ctx.settings.host}:{mesh.ctx.port('envoy')}"
    email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=base, timeout=20) as c:
        r = c.post("/v1/auth/register", json={"email": email, "password": "correct-horse", "name": "Fuzz"})
        assert r.status_code == 201, r.text

    def login() -> str:
        with httpx.Client(base_url=base, timeout=20) as c:
            r = c.post("/v1/auth/login", json={"email": email, "password": "correct-horse"})
            assert r.status_code == 200, r.text
            return str(r.json()["access_token"])

    return login


@pytest.fixture(scope="session")
def rest_schema(mesh: Stack):  # type: ignore[no-untyped-def]
    base = f"http://{mesh.ctx.settings.host}:{mesh.ctx.port('envoy')}"
    doc = httpx.get(f"{base}/openapi.json", timeout=20).raise_for_status().json()
    return schemathesis.openapi.from_dict(doc)


CHECKS = [checks.not_a_server_error, checks.content_type_conformance, checks.response_schema_conformance]


def test_rest_api_never_answers_5xx_or_off_schema(rest_schema, owner_token, mesh):  # type: ignore[no-untyped-def]
    base = f"http://{mesh.ctx.settings.host}:{mesh.ctx.port('envoy')}"
    failures: dict[str, str] = {}
    statuses: dict[int, int] = {}
    operations = [result.ok() for result in rest_schema.get_all_operations()]
    assert len(operations) >= 10

    session = {"token": ""}
    for operation in operations:
        session["token"] = owner_token()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def run(case):  # type: ignore[no-untyped-def]
            headers = {
                "Idempotency-Key": uuid.uuid4().hex,
                **(case.headers or {}),
                "Authorization": f"Bearer {session['token']}",
            }
            response = case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            run()
        except Exception as exc:  # keep going: one report for every operation
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:3000]
    print(f"\nfuzzed {len(operations)} operations: responses by status {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
