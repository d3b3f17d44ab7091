"""Frame-time and bandwidth statistics for the HUD, benchmarks and telemetry.

Windows are short (the last couple of seconds) because what a player sees
and what a scheduler reacts to is *now*, not the session average; the
totals are kept too, for benchmarks that measure a whole run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


def percentile(values: list[float] | np.ndarray, q: float) -> float:
    if len(values) == 0:
        return 0.0
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass
class FrameStats:
    """Intervals between displayed frames over a sliding window."""

    window_s: float = 2.0
    _times: deque[float] = field(default_factory=deque)  # display timestamps
    frames: int = 0
    first: float | None = None
    last: float | None = None

    def frame(self, now: float) -> None:
        self.frames += 1
        if self.first is None:
            self.first = now
        self.last = now
        t = self._times
        t.append(now)
        while t and now - t[0] > self.window_s:
            t.popleft()

    def intervals_ms(self) -> np.ndarray:
        t = np.fromiter(self._times, dtype=np.float64)
        return np.diff(t) * 1000.0 if len(t) > 1 else np.zeros(0)

    def intervals_after(self, t0: float) -> np.ndarray:
        """Intervals (seconds) that ended after ``t0``: what a histogram has not seen yet.

        Only the window is kept, so a caller must ask at least every
        ``window_s`` seconds not to miss any.
        """
        t = np.fromiter(self._times, dtype=np.float64)
        if len(t) < 2:
            return np.zeros(0)
        ends = t[1:]
        return (ends - t[:-1])[ends > t0]

    def percentiles_ms(self, qs: tuple[float, ...] = (50, 95, 99)) -> tuple[float, ...]:
        iv = self.intervals_ms()
        if len(iv) == 0:
            return tuple(0.0 for _ in qs)
        return tuple(float(v) for v in np.percentile(iv, qs))

    @property
    def fps(self) -> float:
        t = self._times
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])

    def p(self, q: float) -> float:
        return percentile(self.intervals_ms(), q)


@dataclass
class RateMeter:
    """Bytes per second of a monotonically growing counter, over a window."""

    window_s: float = 2.0
    _samples: deque[tuple[float, int]] = field(default_factory=deque)

    def sample(self, now: float, total: int) -> None:
        s = self._samples
        s.append((now, total))
        while len(s) > 2 and now - s[0][0] > self.window_s:
            s.popleft()

    @property
    def rate(self) -> float:
        s = self._samples
        if len(s) < 2 or s[-1][0] <= s[0][0]:
            return 0.0
        return (s[-1][1] - s[0][1]) / (s[-1][0] - s[0][0])


@dataclass
class FrameTimes:
    """Every frame time of a measured run (benchmarks)."""

    ms: list[float] = field(default_factory=list)

    def add(self, ms: float) -> None:
        self.ms.append(ms)

    def summary(self) -> dict[str, float]:
        return {
            "frame_p50_ms": round(percentile(self.ms, 50), 3),
            "frame_p99_ms": round(percentile(self.ms, 99), 3),
        }
