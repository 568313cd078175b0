"""Back-off rules and the error they raise: pure values (the Redis-backed counting is petpro.throttle).

A :class:`Rule` names what is counted (e.g. failed logins per client address) and how it backs off:
the first ``free`` failures within ``window`` cost nothing; failure number ``free + n`` locks the key
for ``base * 2^(n-1)`` seconds, at most ``max``.
"""

from __future__ import annotations

from dataclasses import dataclass

from petpro.errors import ResourceExhausted


class TooManyAttempts(ResourceExhausted):
    reason = "THROTTLED"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many attempts; retry in {retry_after} s", metadata={"retry_after_seconds": str(retry_after)}
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class Rule:
    name: str
    free: int  # failures within the window that cost nothing
    base: float = 1.0  # seconds locked after the first failure beyond ``free``; doubles each time
    max: float = 900.0
    window: float = 900.0  # failures older than this are forgotten

    def lock_seconds(self, failures: int) -> float:
        over = failures - self.free
        return 0.0 if over <= 0 else min(self.max, self.base * 2 ** (over - 1))
