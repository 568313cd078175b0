"""petpro.throttle against the real (embedded) Redis: free failures, then exponential back-off per
subject; success forgets; other subjects unaffected; Redis down fails open."""

from __future__ import annotations

import uuid

import pytest

from petpro import cache
from petpro.backoff import Rule, TooManyAttempts
from petpro.throttle import Throttle

pytestmark = pytest.mark.integration

# back-offs long enough that no test depends on how fast it runs
RULE = Rule("test", free=3, base=100, max=350)


@pytest.fixture
async def throttle(devstack):
    redis = cache.make_redis(devstack.env()["REDIS_URL"])
    yield Throttle(redis)
    await redis.aclose()


async def _retry_after(throttle: Throttle, subject: str) -> int | None:
    try:
        await throttle.check((RULE, subject))
    except TooManyAttempts as exc:
        assert exc.metadata == {"retry_after_seconds": str(exc.retry_after)}
        return exc.retry_after
    return None


async def test_free_failures_then_exponential_back_off_capped(throttle):
    subject = uuid.uuid4().hex
    for _ in range(RULE.free):
        await throttle.failed((RULE, subject))
        assert await _retry_after(throttle, subject) is None
    seen = []
    for _ in range(4):
        await throttle.failed((RULE, subject))
        seen.append(await _retry_after(throttle, subject))
    lows = [90, 190, 340, 340]  # 100, 200, 400→350 (cap), 350
    highs = [100, 200, 350, 350]
    assert all(lo < s <= hi for s, lo, hi in zip(seen, lows, highs, strict=True)), seen


async def test_other_subjects_are_not_slowed_and_success_forgets(throttle):
    attacker, victim = uuid.uuid4().hex, uuid.uuid4().hex
    for _ in range(RULE.free + 1):
        await throttle.failed((RULE, attacker))
    assert await _retry_after(throttle, attacker) is not None
    assert await _retry_after(throttle, victim) is None
    with pytest.raises(TooManyAttempts):  # any locked subject of a check locks the call
        await throttle.check((RULE, victim), (RULE, attacker))
    await throttle.succeeded((RULE, attacker))
    assert await _retry_after(throttle, attacker) is None


async def test_redis_down_fails_open():
    redis = cache.make_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    throttle = Throttle(redis)
    for _ in range(RULE.free + 2):
        await throttle.failed((RULE, "x"))
    await throttle.check((RULE, "x"))
    await redis.aclose()


def test_rule_back_off_doubles_from_the_first_failure_past_the_free_ones():
    rule = Rule("r", free=2, base=1.5, max=10)
    assert [rule.lock_seconds(n) for n in range(1, 8)] == [0, 0, 1.5, 3, 6, 10, 10]
