"""The migration linter (petpro_dev.migration_lint): squawk over each migration's SQL, skips only with a
reason written in the migration's file.  Needs squawk (PyPI squawk-cli, the dev extra); skipped without it, except in
CI where it fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from petpro_dev import migration_lint
from petpro_dev.migration_lint import Revision, lint, revision_sql, revisions

SQUAWK = Path(os.environ.get("PETPRO_SQUAWK", str(migration_lint.SQUAWK)))


@pytest.fixture(scope="module")
def squawk() -> Path:
    if not SQUAWK.exists():
        if os.environ.get("CI"):
            pytest.fail("squawk is missing in CI: make setup installs squawk-cli (the dev extra)")
        pytest.skip("squawk is not installed (make setup)")
    return SQUAWK


def test_every_migration_lints_clean(squawk: Path) -> None:
    revs = revisions()
    assert {r.package for r in revs} == {"auth_svc", "booking_svc", "payment_svc", "notif_worker"}
    assert lint(revs, squawk) == []


def test_a_revision_is_its_own_sql_without_the_version_table() -> None:
    (rev,) = [r for r in revisions() if r.revision == "0004_refund_rounds"]
    sql = revision_sql(rev)
    assert "ALTER TABLE bookings ADD COLUMN refund_round INTEGER DEFAULT '0' NOT NULL" in sql
    assert "alembic_version" not in sql
    assert sql.index("SET lock_timeout") < sql.index("ALTER TABLE")  # a migration never queues the mesh


def _fake(tmp_path: Path, ignores: dict[str, str], sql: str, monkeypatch: pytest.MonkeyPatch) -> Revision:
    monkeypatch.setattr(migration_lint, "revision_sql", lambda rev: sql)
    return Revision("booking_svc", "9999_test", "0004_refund_rounds", tmp_path / "9999_test.py", ignores)


UNSAFE = (
    "BEGIN;\nSET lock_timeout = '10s';\nSET statement_timeout = '10min';\n"
    "ALTER TABLE bookings ADD COLUMN owner_phone TEXT NOT NULL;\n"  # old code's INSERTs fail
    "ALTER TABLE bookings DROP COLUMN refund_error;\n"  # old code still reads it
    "COMMIT;\n"
)


def test_what_breaks_the_old_code_is_reported(
    squawk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = lint([_fake(tmp_path, {}, UNSAFE, monkeypatch)], squawk)
    rules = {p.split(": ")[1].split(" ")[0] for p in problems}
    assert {"adding-required-field", "ban-drop-column"} <= rules, problems


def test_a_skip_needs_a_reason_and_something_to_skip(
    squawk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ignores = {
        "adding-required-field": "the table is created empty by the previous migration of this release",
        "ban-drop-column": "ok",  # no reason
        "renaming-column": "there is no rename in this migration at all, so this skips nothing",
    }
    problems = lint([_fake(tmp_path, ignores, UNSAFE, monkeypatch)], squawk)
    assert len(problems) == 2, problems
    assert "squawk-ignore ban-drop-column needs a reason" in problems[0]
    assert "squawk-ignore renaming-column skips nothing" in problems[1]
