"""The docs stay true: README.md and docs/*.md are held to the code they describe.

Checked here, without running anything:
* README.md is one page (at most 15,000 characters);
* every relative link of the repository's Markdown resolves: the file, and for ``#anchors`` a heading;
* every ``make <target>`` named in the docs is a target of the Makefile;
* every ``petpro <command>`` is a command (and, where it takes a choice, a choice) of the CLI's parser;
* the configuration tables of docs/operations.md and the code's settings agree both ways: every
  variable documented is read by a pydantic settings class (or by name in the code), and every setting
  a deployed service reads is documented;
* every repository path named in backticks exists (run-time paths such as ``.petpro/`` excepted), and
  every ``python -m <module>`` is a module of the tree;
* every REST call of the curl walkthroughs is a route of the generated OpenAPI document (method and
  path template), every call to the Stripe sandbox a route of its app, and every grpcurl call names a method of the generated descriptors, at a port that
  serves its service (docs/operations.md's ports table), with a request body the method accepts.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]  # the docs held to the code
README_LIMIT = 15_000

# Paths the docs name for the target layout (docs/architecture.md) that this tree does not have yet:
# other branches build them.  Once they are merged, empty this set; test_pending_paths_are_still_missing
# fails for each entry that exists, so the list can only shrink.
PENDING_PATHS: frozenset[str] = frozenset()
# Paths created at run time (by `petpro up`, `make setup` or a benchmark run), never committed.
RUNTIME_PREFIXES = (".petpro/", "node_modules/")
# Services deployed from this tree: their settings and environment reads must be documented.
DEPLOYED = ("petpro", "auth_svc", "booking_svc", "payment_svc", "notif_worker", "edge")
# Template variables read under a computed name, and the f-string that reads each.
TEMPLATE_READERS = {
    "<SVC>_ADDR": r'f"\{[^}"]+\}_ADDR"',
    "PETPRO_<NAME>_PORT": r'f"PETPRO_\{[^}"]+\}_PORT"',
}


# --------------------------------------------------------------------------------------------------
# Markdown reading
# --------------------------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~)")


def split_fences(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(the text with fenced blocks blanked, [(language, body) of each fenced block])."""
    prose: list[str] = []
    blocks: list[tuple[str, str]] = []
    inside: list[str] | None = None
    lang = ""
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if inside is None:
                inside, lang = [], line.strip()[3:].strip()
            else:
                blocks.append((lang, "\n".join(inside)))
                inside = None
            prose.append("")
        elif inside is not None:
            inside.append(line)
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), blocks


def inline_code(prose: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", prose)


def shell_commands(body: str) -> Iterator[str]:
    """The commands of a shell block: continuation lines joined, comments cut."""
    joined = re.sub(r"\\\n\s*", " ", body)
    for line in joined.splitlines():
        line = re.split(r"\s#\s|\s#$|^#", line, maxsplit=1)[0].strip()
        if line:
            yield line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def markdown_files() -> list[Path]:
    skip = {".git", ".venv", "node_modules", ".petpro", "gen", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in skip]
        found += [Path(dirpath) / f for f in filenames if f.endswith(".md")]
    return sorted(found)


def doc_code(pages: list[Path] = PAGES) -> Iterator[tuple[Path, str, str]]:
    """(page, kind, text): each inline code span ("inline") and each fenced block ("fence:<lang>")."""
    for page in pages:
        prose, blocks = split_fences(page.read_text(encoding="utf-8"))
        for span in inline_code(prose):
            yield page, "inline", span
        for lang, body in blocks:
            yield page, f"fence:{lang}", body


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --------------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------------


def test_readme_is_one_page() -> None:
    size = len(README.read_text(encoding="utf-8"))
    assert size <= README_LIMIT, f"README.md has {size} characters; move detail into docs/"


def test_slug_follows_github() -> None:
    assert slug("Payments never without a booking") == "payments-never-without-a-booking"
    assert slug("2026-12-02: what limits the figures") == "2026-12-02-what-limits-the-figures"
    assert slug("The kit: `petpro/`") == "the-kit-petpro"


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in markdown_files():
        prose, _ = split_fences(page.read_text(encoding="utf-8"))
        prose = re.sub(r"`[^`\n]*`", "", prose)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: …
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists():
                broken.append(f"{rel(page)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{rel(page)}: {target} (no heading #{anchor} in {rel(dest)})")
    assert broken == []


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return frozenset(
        t for line in re.findall(r"^([\w. -]+?)\s*:(?!=)", text, re.M) for t in line.split() if t
    )


def test_every_make_target_mentioned_exists() -> None:
    mentioned = {
        (rel(page), target)
        for page, _, code in doc_code()
        for target in re.findall(r"(?:^|[\s`(])make\s+([a-z][\w-]*)", code, re.M)
    }
    assert len(mentioned) > 10
    assert sorted(m for m in mentioned if m[1] not in make_targets()) == []


def petpro_invocations() -> Iterator[tuple[Path, list[str]]]:
    """The argument lists of every `petpro …` command in the docs (inline spans and shell blocks)."""
    start = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?petpro\s+(.*)$")
    for page, kind, code in doc_code():
        lines = [code] if kind == "inline" else list(shell_commands(code)) if kind == "fence:sh" else []
        for line in lines:
            m = start.match(line.strip())
            if m:
                yield page, m.group(1).split()


def test_every_petpro_command_exists_in_the_cli() -> None:
    import argparse

    from petpro_dev.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    wrong = []
    seen = 0
    for page, args in petpro_invocations():
        seen += 1
        command = args[0] if args else ""
        if command in ("-h", "--help"):
            continue
        if command not in sub.choices:
            wrong.append(f"{rel(page)}: petpro {' '.join(args)}")
            continue
        rest = [a for a in args[1:] if not a.startswith(("-", "<", '"'))]
        positional = [a for a in sub.choices[command]._actions if not a.option_strings and a.choices]
        if positional and rest and not args[1].startswith("-") and rest[0] not in positional[0].choices:
            wrong.append(f"{rel(page)}: petpro {' '.join(args)} ({rest[0]!r} is not a choice)")
    assert seen > 10
    assert wrong == []


# -- configuration ---------------------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def deployed_sources() -> Iterator[Path]:
    for pkg in DEPLOYED:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                yield path


@cache
def settings_classes() -> tuple[type, ...]:
    """Every pydantic settings class of the deployed code, wherever it lives."""
    from pydantic_settings import BaseSettings

    found: list[type] = []
    for path in deployed_sources():
        if "SettingsConfigDict(" not in path.read_text(encoding="utf-8"):
            continue
        module = importlib.import_module(module_name(path))
        found += [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj.__module__ == module.__name__
        ]
    return tuple(found)


@cache
def settings_variables() -> dict[str, str]:
    """{documented name: class} of every setting: ``<PREFIX><FIELD>``, and ``<SVC>_<FIELD>`` for the
    fields every service inherits from ServiceSettings."""
    from petpro.settings import ServiceSettings

    base = set(ServiceSettings.model_fields)
    out: dict[str, str] = {}
    for cls in settings_classes():
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        for field in cls.model_fields:  # type: ignore[attr-defined]
            if issubclass(cls, ServiceSettings) and field in base:
                out[f"<SVC>_{field.upper()}"] = cls.__name__
            elif cls is not ServiceSettings:
                out[f"{prefix}{field.upper()}"] = cls.__name__
    return out


def configuration_section() -> str:
    text = OPERATIONS.read_text(encoding="utf-8")
    return text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]


def documented_variables() -> tuple[set[str], set[str]]:
    """(the variables of the tables' first column, every variable named anywhere in the section)."""
    section = configuration_section()
    first = {
        v
        for cell in re.findall(r"^\| ([^|]+) \|", section, re.M)
        for v in re.findall(r"`([A-Z<][A-Z0-9_<>]*)`", cell)
    }
    named = set(re.findall(r"`([A-Z<][A-Z0-9_<>]*)(?:=[^`]*)?`", section))
    return first, named


def source_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in deployed_sources())


def test_every_documented_setting_is_read_by_the_code() -> None:
    from petpro.settings import ServiceSettings

    first, _ = documented_variables()
    assert len(first) > 60
    variables = settings_variables()
    service_fields = {
        f.upper()
        for cls in settings_classes()
        if issubclass(cls, ServiceSettings)
        for f in cls.model_fields  # type: ignore[attr-defined]
    }
    code = source_text()
    unknown = []
    for name in sorted(first):
        if name in TEMPLATE_READERS:
            ok = re.search(TEMPLATE_READERS[name], code) is not None
        elif name.startswith("<SVC>_"):
            ok = name.removeprefix("<SVC>_") in service_fields
        else:
            ok = name in variables or f'"{name}"' in code
        if not ok:
            unknown.append(name)
    assert unknown == [], "documented in docs/operations.md but read by no settings class or code"


def test_every_setting_the_code_reads_is_documented() -> None:
    from petpro.settings import ServiceSettings

    first, named = documented_variables()
    by_name = {c.__name__: c for c in settings_classes()}
    missing = []
    for var, cls_name in sorted(settings_variables().items()):
        cls = by_name[cls_name]
        template = "<SVC>_" + var.split("_", 1)[1] if issubclass(cls, ServiceSettings) else ""
        if var not in first and template not in first:
            missing.append(f"{var} ({cls_name})")
    reads = set(
        re.findall(r'(?:environ(?:\.get)?\(\s*|environ\[|getenv\(\s*)"([A-Z][A-Z0-9_]+)"', source_text())
    )
    missing += sorted(f"{var} (os.environ)" for var in reads if var not in named)
    assert missing == [], "read by the code but not in docs/operations.md's configuration tables"


def test_settings_discovery_sees_every_deployable() -> None:
    names = {c.__name__ for c in settings_classes()}
    assert {"StackSettings", "BackingSettings", "ServiceSettings"} <= names
    assert len([n for n in names if n not in {"StackSettings", "BackingSettings", "ServiceSettings"}]) >= 6


# -- paths and modules -----------------------------------------------------------------------------

PATHLIKE = re.compile(r"^\.?[\w-]+(?:/[\w.*-]*)+$")


def mentioned_paths() -> set[tuple[str, str]]:
    """(page, path) of every backticked token that looks like a path of this repository."""
    tops = {p.name for p in ROOT.iterdir()} | {".petpro"}
    out = set()
    for page, kind, code in doc_code():
        if kind != "inline":
            continue
        for token in code.split():
            token = token.split("::", 1)[0].rstrip(",.:;)")
            if "/" not in token or "://" in token or not PATHLIKE.match(token) or "*" in token:
                continue
            if token.split("/", 1)[0] in tops and "foo" not in token:  # foo: adding-a-service's example
                out.add((rel(page), token))
    return out


def test_every_path_named_in_the_docs_exists() -> None:
    paths = mentioned_paths()
    assert len(paths) > 40
    missing = sorted(
        (page, path)
        for page, path in paths
        if not (ROOT / path).exists() and path not in PENDING_PATHS and not path.startswith(RUNTIME_PREFIXES)
    )
    assert missing == []


def test_pending_paths_are_still_missing() -> None:
    """Each pending path is named by the docs and does not exist yet; drop it once it does."""
    named = {path for _, path in mentioned_paths()}
    assert sorted(p for p in PENDING_PATHS if p not in named) == []
    assert sorted(p for p in PENDING_PATHS if (ROOT / p).exists()) == [], "merged: remove from PENDING_PATHS"


def test_every_python_module_run_exists() -> None:
    modules = set()
    for page, _, code in doc_code():
        modules |= {(rel(page), m) for m in re.findall(r"python3? -m ([\w.]+)", code) if "foo" not in m}
    assert len(modules) > 5
    missing = []
    for page, mod in sorted(modules):
        path = ROOT / mod.replace(".", "/")
        if not (path.with_suffix(".py").exists() or (path / "__main__.py").exists()):
            missing.append((page, mod))
    assert missing == []


# -- REST and gRPC examples ------------------------------------------------------------------------


@cache
def openapi_routes() -> dict[str, set[str]]:
    doc = json.loads((ROOT / "gen" / "petpro_api" / "openapi.json").read_text(encoding="utf-8"))
    return {path: {m.upper() for m in ops} for path, ops in doc["paths"].items()}


def route_of(path: str) -> str | None:
    """The OpenAPI path template that a concrete path (shell variables, <placeholders>) matches."""
    concrete = re.sub(r"\$\{?\w+\}?|<[^>]+>", "X", path)
    for template in openapi_routes():
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/:]+", re.escape(template))
        if re.fullmatch(pattern, concrete):
            return template
    return None


def curl_calls(base: str = r"\$API") -> Iterator[tuple[Path, str, str]]:
    """(page, method, path) of every curl call to ``base`` (the REST edge: $API) in the docs' shell blocks."""
    for page, kind, code in doc_code():
        if kind != "fence:sh":
            continue
        for line in shell_commands(code):
            for call in re.findall(r"curl\s[^|;]*", line):
                m = re.search(base + r"(/[^\s\"'?]*)", call)
                if not m:
                    continue
                method = re.search(r"-X\s+([A-Z]+)", call)
                verb = method.group(1) if method else "POST" if re.search(r"\s(-d|--data)\s", call) else "GET"
                yield page, verb, m.group(1)


def test_every_curl_call_is_a_route_of_the_api() -> None:
    calls = list(curl_calls())
    assert len(calls) > 30
    wrong = []
    for page, verb, path in calls:
        template = route_of(path)
        if template is None or verb not in openapi_routes()[template]:
            wrong.append(f"{rel(page)}: {verb} {path}")
    assert wrong == []


@cache
def sandbox_routes() -> dict[str, set[str]]:
    """The Stripe sandbox's routes (Starlette templates) and their methods, from its app module."""
    text = (ROOT / "petpro_dev" / "stripe_sandbox" / "app.py").read_text(encoding="utf-8")
    routes: dict[str, set[str]] = {}
    for path, methods in re.findall(r'Route\("([^"]+)",[^)]*?methods=\[([^\]]*)\]', text):
        routes.setdefault(path, set()).update(re.findall(r'"([A-Z]+)"', methods))
    return routes


def test_every_sandbox_call_is_a_route_of_the_sandbox() -> None:
    calls = list(curl_calls(r"(?:\$STRIPE|http://127\.0\.0\.1:7411)"))
    assert len(calls) >= 6
    wrong = []
    for page, verb, path in calls:
        concrete = re.sub(r"\$\{?\w+\}?|<[^>]+>", "X", path)
        if not any(
            re.fullmatch(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(t)), concrete) and verb in methods
            for t, methods in sandbox_routes().items()
        ):
            wrong.append(f"{rel(page)}: {verb} {path}")
    assert wrong == []


@cache
def descriptor_pool() -> Any:
    """The default pool with every generated module of petpro_api (and gRPC health) loaded."""
    import grpc_health.v1.health_pb2  # noqa: F401
    from google.protobuf import descriptor_pool as pools

    import petpro_api

    for info in pkgutil.walk_packages(petpro_api.__path__, "petpro_api."):
        if info.name.endswith("_pb2"):
            importlib.import_module(info.name)
    return pools.Default()


@cache
def services_by_port() -> dict[int, set[str]]:
    """docs/operations.md's ports table: port → the gRPC services it names (``petpro.x.v1.S``, and bare
    names after one of the same package)."""
    text = OPERATIONS.read_text(encoding="utf-8").split("\n## Ports", 1)[1].split("\n## ", 1)[0]
    out: dict[int, set[str]] = {}
    for port, what in re.findall(r"^\| \S+ \| (\d+) \| (.+) \|$", text, re.M):
        names: set[str] = set()
        package = ""
        for name in re.findall(r"`([\w.]+Service)`", what):
            if "." in name:
                package = name.rsplit(".", 1)[0]
                names.add(name)
            elif package:
                names.add(f"{package}.{name}")
        out[int(port)] = names
    return out


def grpcurl_calls() -> Iterator[tuple[Path, list[str]]]:
    for page, kind, code in doc_code():
        if kind == "fence:sh":
            for line in shell_commands(code):
                if line.startswith("grpcurl "):
                    yield page, shlex.split(line)
        elif kind == "inline" and code.startswith("grpcurl "):
            yield page, shlex.split(code)


def test_every_grpcurl_call_names_a_served_method_and_a_valid_request() -> None:
    from google.protobuf import json_format, message_factory

    pool = descriptor_pool()
    calls = list(grpcurl_calls())
    assert len(calls) >= 5
    wrong = []
    for page, args in calls:
        where = f"{rel(page)}: {' '.join(args)}"
        address = next((a for a in args if re.fullmatch(r"[\w.-]+:\d+", a)), "")
        rest = args[args.index(address) + 1 :] if address else []
        if not address or not rest:
            wrong.append(f"{where} (no address or no method)")
            continue
        port = int(address.rsplit(":", 1)[1])
        if rest[0] in ("list", "describe"):
            if rest[0] == "describe":
                try:
                    pool.FindMethodByName(rest[1])
                except KeyError:
                    wrong.append(f"{where} (no method {rest[1]})")
            continue
        service, _, method = rest[0].partition("/")
        try:
            desc = pool.FindMethodByName(f"{service}.{method}")
        except KeyError:
            wrong.append(f"{where} (no method)")
            continue
        if not service.startswith("grpc.health.") and service not in services_by_port().get(port, set()):
            wrong.append(f"{where} (port {port} does not serve {service})")
        if "-d" in args:
            body = args[args.index("-d") + 1]
            try:
                json_format.Parse(body, message_factory.GetMessageClass(desc.input_type)())
            except json_format.ParseError as exc:
                wrong.append(f"{where} ({exc})")
    assert wrong == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/bookings/$BOOKING:cancel", "/v1/bookings/{booking_id}:cancel"),
        ("/v1/services/<service_id>", "/v1/services/{service_id}"),
        ("/v1/clinics/7b0c1f0e-2a57-4e0c-9a55-1c1f3b0d5e01/services", "/v1/clinics/{clinic_id}/services"),
        ("/v1/nowhere", None),
    ],
)
def test_route_matching(path: str, expected: str | None) -> None:
    assert route_of(path) == expected
