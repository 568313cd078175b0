"""The scheduled hold's statement lives twice: as ``HOLD_SCHEDULED`` in the repository (read, reviewed and
changed there) and as the body of the function ``hold_scheduled`` that migration 0011 creates (what
runs).  They must stay the same statement: a change to the repository's text needs a new migration
replacing the function."""

from __future__ import annotations

import importlib
import re
import textwrap

from booking_svc.adapters.repository.schedule import CALL_HOLD_SCHEDULED, HOLD_ARGS, HOLD_SCHEDULED

MIGRATION = importlib.import_module("booking_svc.migrations.versions.0012_hold_scheduled_fn")


def test_function_arguments_are_the_calls_in_order() -> None:
    signature = MIGRATION.HOLD_SCHEDULED.split("RETURNS", 1)[0]
    assert re.findall(r"\bp_(\w+) ", signature) == HOLD_ARGS
    assert re.findall(r"p_(\w+) => %\((\w+)\)s", CALL_HOLD_SCHEDULED) == [(a, a) for a in HOLD_ARGS]


def test_function_body_is_the_repositorys_statement() -> None:
    body = MIGRATION.HOLD_SCHEDULED.split("RETURN QUERY\n", 1)[1].rsplit(";\nEND $$", 1)[0]
    expected = HOLD_SCHEDULED.strip()
    for n, name in enumerate(HOLD_ARGS, 1):
        expected = expected.replace(f"%({name})s", f"${n}")
    assert "%(" not in expected
    assert textwrap.dedent(body) == expected


def test_function_pins_the_generic_plan() -> None:
    assert "SET plan_cache_mode = force_generic_plan" in MIGRATION.HOLD_SCHEDULED
