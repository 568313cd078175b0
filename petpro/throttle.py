"""Exponential back-off after failures, kept in Redis so every replica sees the same counts.

A :class:`Rule` names what is counted (e.g. failed logins per client address) and how it backs off:
the first ``free`` failures within ``window`` cost nothing; failure number ``free + n`` locks the key
for ``base * 2^(n-1)`` seconds, at most ``max``.  ``check()`` raises :class:`TooManyAttempts`
(RESOURCE_EXHAUSTED, reason THROTTLED, ``retry_after_seconds`` in the ErrorInfo metadata, which the
edge turns into HTTP 429 + ``Retry-After``) while any of the given keys is locked.

Keys are hashed (no emails or addresses in Redis key names).  Redis being down fails open: a
throttle must never turn an outage of Redis into an outage of login.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

from petpro.backoff import Rule, TooManyAttempts

log = logging.getLogger("petpro.throttle")


def _key(rule: Rule, subject: str) -> str:
    return f"petpro:throttle:{rule.name}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"


class Throttle:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def check(self, *subjects: tuple[Rule, str]) -> None:
        """Raise TooManyAttempts while any ``(rule, subject)`` is locked."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for rule, subject in subjects:
                pipe.pttl(_key(rule, subject) + ":lock")
            ttls = await pipe.execute()
        except Exception:
            log.warning("throttle unavailable (Redis); not throttling", exc_info=True)
            return
        longest = max((t for t in ttls if isinstance(t, int) and t > 0), default=0)
        if longest > 0:
            raise TooManyAttempts(max(1, math.ceil(longest / 1000)))

    async def failed(self, *subjects: tuple[Rule, str]) -> None:
        """Count one failure for each ``(rule, subject)``, locking those past their free failures."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for rule, subject in subjects:
                k = _key(rule, subject)
                pipe.set(k, 0, ex=int(rule.window), nx=True)  # the window starts at the first failure
                pipe.incr(k)
            counts = (await pipe.execute())[1::2]
            pipe = self.redis.pipeline(transaction=False)
            for (rule, subject), n in zip(subjects, counts, strict=True):
                lock = rule.lock_seconds(int(n))
                if lock > 0:
                    pipe.set(_key(rule, subject) + ":lock", b"1", px=int(lock * 1000))
            await pipe.execute()
        except Exception:
            log.warning("throttle unavailable (Redis); failure not counted", exc_info=True)

    async def succeeded(self, *subjects: tuple[Rule, str]) -> None:
        """Forget the failures of ``(rule, subject)`` (e.g. the account from this address logged in)."""
        try:
            await self.redis.delete(
                *(_key(r, s) for r, s in subjects), *(_key(r, s) + ":lock" for r, s in subjects)
            )
        except Exception:
            log.warning("throttle unavailable (Redis)", exc_info=True)


__all__ = ["Rule", "Throttle", "TooManyAttempts"]
