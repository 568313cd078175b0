"""The repository files that list the mesh's packages, written from the mesh manifest (``petpro/mesh.py``).

Usage::

    python -m petpro_dev.meshgen            # rewrite the lists (``make gen`` runs it too)
    python -m petpro_dev.meshgen --check    # exit 1 naming each stale list (``make gen-check`` too)

Only the listed lines change; everything else in those files is left as it is:

* ``pyproject.toml`` — import-linter's ``root_packages`` and every contract's module list that names
  the services, setuptools' ``packages.find.include``, ruff's ``known-first-party``, mypy's ``files``;
* ``Dockerfile`` — the ``COPY <package> ./<package>`` block after ``COPY petpro ./petpro``, and ``EXPOSE``
  (every service's gRPC and HTTP port, and Envoy's listener);
* ``.dockerignore`` — the ``!<package>/`` lines after ``!petpro/``.

A list keeps its layout: one line stays one line, a wrapped array is wrapped again.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from petpro.mesh import MESH, Mesh

ROOT = Path(__file__).resolve().parent.parent
KIT, API, DEV = "petpro", "petpro_api", "petpro_dev"  # the roots besides the services
LINE_LENGTH = 110


@dataclass(frozen=True)
class Array:
    """A TOML array in ``table`` (for an array of tables: the one whose ``id`` is ``table_id``)."""

    table: str
    key: str
    table_id: str | None = None


def pyproject_arrays(mesh: Mesh) -> dict[Array, list[str]]:
    pkgs = [s.package for s in mesh.services]
    contract = "tool.importlinter.contracts"
    return {
        Array("tool.importlinter", "root_packages"): [KIT, API, DEV, *pkgs],
        Array(contract, "forbidden_modules", "kit"): [*pkgs, DEV],
        Array(contract, "source_modules", "services"): pkgs,
        Array(contract, "modules", "independent"): pkgs,
        Array(contract, "forbidden_modules", "gen"): [KIT, DEV, *pkgs],
        Array(contract, "source_modules", "distributions"): [KIT, API, *pkgs],
        Array("tool.setuptools.packages.find", "include"): [
            KIT,
            f"{KIT}.*",
            f"{DEV}*",
            *(f"{p}*" for p in pkgs),
            f"{API}*",
            "buf",
            "buf.validate",
        ],
        Array("tool.ruff.lint.isort", "known-first-party"): [KIT, API, DEV, *pkgs, "buf"],
        Array("tool.mypy", "files"): [KIT, *pkgs, "tests/unit/fakes"],
    }


_HEADER = re.compile(r"^\[\[?([^\]]+)\]\]?\s*$")
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_-]+)\s*=\s*(.*)$")
_ID = re.compile(r'^\s*id\s*=\s*"([^"]*)"')


def _brackets(text: str) -> int:
    text = re.sub(r'"[^"]*"', "", text)  # brackets inside strings do not count
    return text.count("[") - text.count("]")


def _format_array(indent: str, key: str, items: Sequence[str], wrapped: bool) -> list[str]:
    quoted = [json.dumps(i) + "," for i in items]
    if not wrapped:
        return [f"{indent}{key} = [{' '.join(quoted).removesuffix(',')}]"]
    lines, line = [f"{indent}{key} = ["], ""
    for q in quoted:
        if line and len(indent) + 2 + len(line) + 1 + len(q) > LINE_LENGTH:
            lines.append(f"{indent}  {line}")
            line = ""
        line = f"{line} {q}" if line else q
    return [*lines, f"{indent}  {line}", f"{indent}]"]


def rewrite_pyproject(text: str, arrays: dict[Array, list[str]]) -> str:
    """``text`` with each of ``arrays`` replaced (same layout: one line, or wrapped)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    out: list[str] = []
    found: set[Array] = set()
    for start, end in zip([0, *starts], [*starts, len(lines)], strict=True):
        section = lines[start:end]
        header = _HEADER.match(section[0]) if section else None
        table = header.group(1).strip() if header else ""
        ids = [m.group(1) for line in section if (m := _ID.match(line))]
        entry_id = ids[0] if ids else None
        wanted = {a.key: a for a in arrays if a.table == table and a.table_id == entry_id}
        j = 0
        while j < len(section):
            m = _KEY.match(section[j])
            if not m or m.group(2) not in wanted:
                out.append(section[j])
                j += 1
                continue
            last, depth = j, _brackets(m.group(3))
            while depth > 0:
                last += 1
                depth += _brackets(section[last])
            array = wanted[m.group(2)]
            out += _format_array(m.group(1), array.key, arrays[array], wrapped=last > j)
            found.add(array)
            j = last + 1
    missing = [a for a in arrays if a not in found]
    if missing:
        raise ValueError("pyproject.toml lacks " + ", ".join(_where(a) for a in missing))
    return "\n".join(out) + "\n"


def _where(a: Array) -> str:
    return f"[{a.table}] {a.key}" + (f" (id = {a.table_id!r})" if a.table_id else "")


def _replace_block(lines: list[str], after: str, pattern: re.Pattern[str], block: list[str]) -> list[str]:
    """``lines`` with the run of lines matching ``pattern`` right after the line ``after`` replaced."""
    if after not in lines:
        raise ValueError(f"no line {after!r}")
    start = lines.index(after) + 1
    end = start
    while end < len(lines) and pattern.match(lines[end]):
        end += 1
    return [*lines[:start], *block, *lines[end:]]


def rewrite_dockerfile(text: str, mesh: Mesh) -> str:
    pkgs = [s.package for s in mesh.services]
    lines = _replace_block(
        text.splitlines(),
        f"COPY {KIT} ./{KIT}",
        re.compile(r"^COPY (\w+) \./\1$"),
        [f"COPY {p} ./{p}" for p in pkgs],
    )
    ports = [mesh.port(s.name) for s in mesh.services]
    ports += [mesh.port(f"{s.name}_http") for s in mesh.services if s.http_offset is not None]
    expose = "EXPOSE " + " ".join(str(p) for p in [*sorted(ports), mesh.gateway.pod_port])
    exposed = [i for i, line in enumerate(lines) if line.startswith("EXPOSE ")]
    if len(exposed) != 1:
        raise ValueError("the Dockerfile needs exactly one EXPOSE line")
    lines[exposed[0]] = expose
    return "\n".join(lines) + "\n"


def rewrite_dockerignore(text: str, mesh: Mesh) -> str:
    lines = _replace_block(
        text.splitlines(), f"!{KIT}/", re.compile(r"^!\w+/$"), [f"!{s.package}/" for s in mesh.services]
    )
    return "\n".join(lines) + "\n"


def outputs(root: Path = ROOT, mesh: Mesh = MESH) -> dict[Path, str]:
    """Each file this writes, with its fresh text."""
    rewrites: dict[str, Callable[[str], str]] = {
        "pyproject.toml": lambda t: rewrite_pyproject(t, pyproject_arrays(mesh)),
        "Dockerfile": lambda t: rewrite_dockerfile(t, mesh),
        ".dockerignore": lambda t: rewrite_dockerignore(t, mesh),
    }
    return {root / name: fn((root / name).read_text(encoding="utf-8")) for name, fn in rewrites.items()}


def stale(root: Path = ROOT, mesh: Mesh = MESH) -> list[str]:
    """The files whose lists differ from the manifest (relative paths)."""
    return [
        str(path.relative_to(root))
        for path, text in outputs(root, mesh).items()
        if path.read_text(encoding="utf-8") != text
    ]


def write(root: Path = ROOT, mesh: Mesh = MESH) -> list[str]:
    """Rewrite the stale files; returns them."""
    changed = []
    for path, text in outputs(root, mesh).items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(str(path.relative_to(root)))
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m petpro_dev.meshgen", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a list differs from the manifest")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        if old:
            print(
                "stale package lists (run `make gen` and commit): " + ", ".join(old),
                file=sys.stderr,
            )
            return 1
        print("meshgen: pyproject.toml, Dockerfile and .dockerignore list the manifest's services")
        return 0
    changed = write()
    print("meshgen: " + (f"rewrote {', '.join(changed)}" if changed else "nothing to change"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
