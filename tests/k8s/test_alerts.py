"""The chart's alert rules (k8s/helm/petpro/files/alerts.yaml), as code: promtool (Debian's prometheus,
``make test-tools``) checks them and runs their unit tests on synthetic series (tests/k8s/alerts_test.yaml:
each alert firing when it should, silent when it should not), and the chart ships exactly that file as
its PrometheusRule.  That every metric they name is one the services export is checked against the
running rehearsal (tests/k8s/test_multihost.py)."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "k8s" / "helm" / "petpro" / "files" / "alerts.yaml"
UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def rule_metric_names() -> set[str]:
    """Every metric an alert expression selects (each is written ``name{…}``)."""
    names: set[str] = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            names |= set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", rule["expr"]))
    return names


@pytest.fixture(scope="module")
def promtool() -> str:
    if not Path(PROMTOOL).exists():
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: run `make test-tools` (apt-get install prometheus)")
        pytest.skip("promtool is not installed (make test-tools)")
    return PROMTOOL


def test_rules_are_valid(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_rules_fire_on_synthetic_series_and_stay_silent_otherwise(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", str(UNIT_TESTS)], capture_output=True, text=True, cwd=UNIT_TESTS.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_entry() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tested = {
        t["alertname"]
        for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert alerts == tested
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert not [a for a in alerts if f"`{a}`" not in operations], (
        "each alert is explained in docs/operations.md"
    )


def test_the_chart_ships_the_rule_file_as_its_prometheus_rule() -> None:
    spec = importlib.util.spec_from_file_location("k8s_render", ROOT / "k8s" / "render.py")
    assert spec and spec.loader
    render_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_mod)
    values = {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}}}
    rendered = render_mod.render(copy.deepcopy(values), release="shop", namespace="pets")
    (rule,) = [
        d
        for text in rendered.values()
        for d in yaml.safe_load_all(text)
        if d and d["kind"] == "PrometheusRule"
    ]
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # off by default: a cluster without the Prometheus Operator has no such kind
    default = render_mod.render({}, release="shop", namespace="pets")
    assert "PrometheusRule" not in "".join(default.values())


def test_the_rules_name_metrics_from_the_documented_list() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_:]+)` \|", operations, re.M))
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for n in rule_metric_names()}
    assert used <= documented, used - documented
