"""The kit's one-connection-per-task rule (``petpro.db.one_connection``, used by ``Database`` and the
fake unit of work): sequential holds are fine, a nested one raises, other tasks are independent, and a
hold released from another context (an abandoned async generator closed by the loop's finaliser)
does not raise there."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from petpro.db import NestedCheckout, one_connection


async def test_sequential_holds_pass_and_a_nested_one_raises():
    for _ in range(2):
        with one_connection("read"):
            pass
    with one_connection("unit of work"), pytest.raises(NestedCheckout, match="holds a unit of work one"):
        with one_connection("read"):
            pass
    with one_connection("read"):  # the refused one left nothing behind
        pass


async def test_another_task_holds_its_own():
    async def other() -> str:
        with one_connection("read"):
            return "held"

    with one_connection("unit of work"):
        assert await asyncio.create_task(other(), context=contextvars.Context()) == "held"


async def test_a_generator_closed_from_another_context_releases_without_error():
    async def rows():
        with one_connection("read"):
            yield 1
            yield 2

    gen = rows()
    assert await gen.__anext__() == 1
    with pytest.raises(NestedCheckout):  # suspended at a yield, it still holds its connection
        with one_connection("read"):
            pass
    await asyncio.create_task(gen.aclose(), context=contextvars.Context())  # as the loop's finaliser does
