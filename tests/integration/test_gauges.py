"""petpro.gauges.StateAgeGauges against a real PostgreSQL: rows per state among the watched ones, the
age of the oldest one of each, zeros for states without rows, on a schema of its own."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import text

from petpro.db import Database
from petpro.gauges import StateAgeGauges
from petpro_dev.devstack import Stack

pytestmark = pytest.mark.integration


async def test_rows_per_state_and_the_oldest_age(devstack: Stack) -> None:
    schema = f"gauges_{uuid.uuid4().hex[:8]}"
    db = Database(devstack.env()["DATABASE_URL"], schema, app_name="gauges-test", pool_size=1)
    registry = CollectorRegistry()
    count = Gauge("t_open", "", ["state"], registry=registry)
    age = Gauge("t_age", "", ["state"], registry=registry)
    try:
        async with db.unit_of_work() as s:
            await s.execute(text(f"CREATE SCHEMA {schema}"))
            await s.execute(text(f"CREATE TABLE {schema}.things (state text, since timestamptz)"))
            await s.execute(
                text(
                    f"INSERT INTO {schema}.things VALUES ('PENDING', now() - interval '2 hours'),"
                    " ('PENDING', now() - interval '5 minutes'), ('FAILED', now() - interval '1 day'),"
                    " ('DONE', now() - interval '30 days')"
                )
            )
        gauges = StateAgeGauges(
            db, table="things", state="state", since="since", states=["PENDING", "PROCESSING", "FAILED"],
            count=count, age=age,
        )  # fmt: skip
        measured = await gauges.measure()
        assert {s: n for s, (n, _) in measured.items()} == {"PENDING": 2, "PROCESSING": 0, "FAILED": 1}
        assert 7200 <= measured["PENDING"][1] < 7300 and measured["PROCESSING"][1] == 0
        assert 86400 <= measured["FAILED"][1] < 86500
        assert registry.get_sample_value("t_open", {"state": "PROCESSING"}) == 0
        assert registry.get_sample_value("t_open", {"state": "PENDING"}) == 2
        assert 7200 <= (registry.get_sample_value("t_age", {"state": "PENDING"}) or 0) < 7300
        with pytest.raises(ValueError):
            StateAgeGauges(db, table="t; drop", state="s", since="x", states=[], count=count, age=age)
    finally:
        async with db.unit_of_work() as s:
            await s.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await db.close()
