"""A token bucket: the one rate limiter (messages, edits, input time, floods)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full.

    Time is passed in (``now``, seconds, monotonic) instead of read here, so the
    tick can charge many buckets with one clock read and tests need no sleeps.
    """

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float | None = None

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def refill(self, now: float) -> float:
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; False (and nothing spent) if not."""
        if self.refill(now) >= cost:
            self.tokens -= cost
            return True
        return False
