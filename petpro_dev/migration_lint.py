"""``python -m petpro_dev.migration_lint``: squawk (PyPI ``squawk-cli``, the dev extra) over every migration's SQL.

Each Alembic revision of each service is rendered to SQL on its own (Alembic's offline mode,
``upgrade <down>:<rev> --sql``; the version-table bookkeeping left out) and linted by squawk, which
flags what takes long locks or breaks the code still running during a rolling upgrade (a NOT NULL
column without a default, a dropped or renamed column, a rewriting type change, a blocking index
build …): migrations are expand/contract (docs/operations.md "Upgrading without loss").

A rule is skipped for one migration only by a line in its file, with the reason::

    # squawk-ignore <rule>: <why this is safe here>

A skip without a reason, or naming a rule squawk did not report for that migration, fails the lint.
``make lint`` runs it; ``--print`` shows the SQL.  Dev tooling: not part of the image.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQUAWK = Path(sys.executable).parent / "squawk"  # the venv's, from the PyPI wheel
CONFIG = ROOT / ".squawk.toml"  # the rules skipped project-wide, with their reasons
PG_VERSION = "15"  # the oldest PostgreSQL the project supports (docs/operations.md)
IGNORE = re.compile(r"^#\s*squawk-ignore\s+([a-z0-9-]+)\s*:\s*(.*)$", re.M)
MIN_REASON = 20  # characters: a reason, not a token


@dataclass
class Revision:
    package: str
    revision: str
    down: str | None
    path: Path
    ignores: dict[str, str]


def revisions() -> list[Revision]:
    """Every service's revisions, oldest first (a merge revision's SQL is empty)."""
    from alembic.script import ScriptDirectory

    from petpro.migrations import MIGRATED, alembic_config

    out: list[Revision] = []
    for pkg in MIGRATED:
        script = ScriptDirectory.from_config(alembic_config(pkg, "postgresql://lint/lint"))
        for rev in reversed(list(script.walk_revisions())):
            path = Path(rev.path)
            ignores = {m.group(1): m.group(2).strip() for m in IGNORE.finditer(path.read_text())}
            down = rev.down_revision
            down_id = down if isinstance(down, str) or down is None else "+".join(down)
            out.append(Revision(pkg, rev.revision, down_id, path, ignores))
    return out


def revision_sql(rev: Revision) -> str:
    """The SQL Alembic would run for this one revision (offline mode), without the version table."""
    from alembic import command

    from petpro.migrations import alembic_config

    cfg = alembic_config(rev.package, "postgresql://lint/lint")
    buf = io.StringIO()
    cfg.output_buffer = buf
    if rev.down is None:
        target = f"base:{rev.revision}"
    elif "+" in rev.down:  # a merge: its SQL is only the version bookkeeping
        return ""
    else:
        target = f"{rev.down}:{rev.revision}"
    with contextlib.redirect_stdout(io.StringIO()):
        command.upgrade(cfg, target, sql=True)
    statements = [s.strip() for s in buf.getvalue().split(";\n")]
    kept = [s for s in statements if s and "alembic_version" not in s]
    return "".join(f"{s};\n\n" for s in kept)


def lint(revs: list[Revision], squawk: Path = SQUAWK) -> list[str]:
    """Problems: squawk's findings not skipped, skips without a reason, skips of nothing."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="petpro-squawk-") as tmp:
        for rev in revs:
            for rule, reason in rev.ignores.items():
                if len(reason) < MIN_REASON:
                    problems.append(
                        f"{rev.path}: squawk-ignore {rule} needs a reason (at least {MIN_REASON} chars)"
                    )
            sql = revision_sql(rev)
            if not sql.strip():
                continue
            path = Path(tmp) / rev.package / f"{rev.revision}.sql"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(sql)
            result = subprocess.run(
                [
                    str(squawk),
                    f"--config={CONFIG}",
                    f"--pg-version={PG_VERSION}",
                    "--reporter=json",
                    str(path),
                ],
                capture_output=True,
                text=True,
            )
            try:
                findings = json.loads(result.stdout or "[]")
            except json.JSONDecodeError:
                problems.append(f"{rev.path}: squawk failed: {result.stdout}{result.stderr}")
                continue
            reported = {f["rule_name"] for f in findings}
            for f in findings:
                if f["rule_name"] not in rev.ignores:
                    problems.append(
                        f"{rev.path}: {f['rule_name']} ({f.get('level', '')}): {f['message']}"
                        f" — in: {_statement(sql, f)}"
                    )
            for rule in set(rev.ignores) - reported:
                problems.append(f"{rev.path}: squawk-ignore {rule} skips nothing squawk reports: remove it")
    return problems


def _statement(sql: str, finding: dict[str, object]) -> str:
    line = int(str(finding.get("line", 0)) or 0)
    lines = sql.splitlines()
    return lines[line].strip()[:160] if 0 <= line < len(lines) else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m petpro_dev.migration_lint", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--print", action="store_true", help="print each revision's SQL and exit")
    parser.add_argument("--squawk", type=Path, default=SQUAWK, help="the squawk binary (default: the venv's)")
    args = parser.parse_args(argv)
    revs = revisions()
    if args.print:
        for rev in revs:
            print(f"-- {rev.package} {rev.revision}\n{revision_sql(rev)}")
        return 0
    if not args.squawk.exists():
        print(
            f"squawk not found at {args.squawk}: `make setup` installs it (squawk-cli in the dev extra)",
            file=sys.stderr,
        )
        return 2
    problems = lint(revs, args.squawk)
    for p in problems:
        print(p, file=sys.stderr)
    print(
        f"squawk: {len(revs)} migrations, {sum(len(r.ignores) for r in revs)} justified skips, {len(problems)} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
