"""Every service's Alembic history ends in exactly one head: two branches that each add a revision on
top of the same parent need a merge revision, or `upgrade head` fails at deploy time."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory

from petpro.migrations import MIGRATED, alembic_config


@pytest.mark.parametrize("pkg", sorted(MIGRATED))
def test_one_head_per_service(pkg: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(pkg, "postgresql://unused/unused"))
    assert len(script.get_heads()) == 1, f"{pkg} has several Alembic heads: {script.get_heads()}"


@pytest.mark.parametrize("pkg", sorted(MIGRATED))
def test_revision_ids_fit_alembic_version(pkg: str) -> None:
    # alembic_version.version_num is VARCHAR(32): a longer id fails the upgrade at its very end
    script = ScriptDirectory.from_config(alembic_config(pkg, "postgresql://unused/unused"))
    assert all(len(rev.revision) <= 32 for rev in script.walk_revisions()), pkg
