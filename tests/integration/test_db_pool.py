"""One pooled connection per task, against a real PostgreSQL: a second checkout inside a unit of work
or a read raises ``NestedCheckout`` at once (under load it would deadlock the pool: every caller holding
one connection and waiting for a second), while separate tasks each hold their own."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from petpro.db import Database, NestedCheckout
from petpro_dev.devstack import Stack

pytestmark = pytest.mark.integration


async def test_a_second_connection_inside_one_is_refused_at_once(mesh: Stack):
    db = Database(mesh.env()["DATABASE_URL"], "public", app_name="pool-test", pool_size=1)
    try:
        for outer, inner in (
            (db.unit_of_work, db.reader),
            (db.reader, db.unit_of_work),
            (db.unit_of_work, db.unit_of_work),
            (db.reader, db.reader),
        ):
            with pytest.raises(NestedCheckout):
                async with outer():
                    async with inner():
                        pass
        # the connections went back: the pool (1 + 1 overflow) serves the next callers as before
        async with db.unit_of_work() as s:
            assert (await s.execute(text("SELECT 1"))).scalar() == 1
        async with db.reader() as c:
            assert (await c.execute(text("SELECT 2"))).scalar() == 2
    finally:
        await db.close()


async def test_separate_tasks_each_hold_their_own(mesh: Stack):
    db = Database(mesh.env()["DATABASE_URL"], "public", app_name="pool-test", pool_size=1)
    both_in = asyncio.Barrier(2)
    try:

        async def one(n: int) -> int:
            async with db.reader() as c:
                await both_in.wait()  # both hold a connection at the same time
                return int((await c.execute(text("SELECT :n"), {"n": n})).scalar_one())

        assert await asyncio.gather(one(1), one(2)) == [1, 2]
    finally:
        await db.close()
