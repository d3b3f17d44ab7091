"""Bitrate that follows the receiver's estimate, in steps worth an encoder rebuild.

x264 cannot change its bitrate through PyAV once open, so every change is
a new encoder and a new keyframe (a burst of bits). The receiver's REMB
estimate moves on every RTCP report; following it closely would rebuild
the encoder several times a second. `BitrateController` only moves the
target when the estimate has differed from it by more than `STEP` (25 %)
for `HOLD_S` (1 s) without interruption, and then jumps straight to the
new value (times `HEADROOM`).

A delay-based estimate also stays near what it actually receives (Chrome
caps REMB at ~1.5x the incoming rate): a calm scene that encodes to
300 kbit/s would talk the target down although the network could carry
more. So a *decrease* is only taken when the estimate is also below what
we actually sent recently — the network, not the scene, is the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

STEP = 0.25
HOLD_S = 1.0
HEADROOM = 0.9  # aim a little under the estimate: it is a maximum


@dataclass(slots=True)
class BitrateController:
    ceiling: int  # the session's maximum (what the client asked for)
    floor: int = 150_000
    target: int = 0  # the encoder's bitrate now; 0: the ceiling
    estimate: int | None = None  # latest REMB, bits/s
    steps: int = 0
    _since: float | None = None

    def __post_init__(self) -> None:
        if self.target <= 0:
            self.target = self.ceiling

    def on_estimate(self, bps: int, sent_bps: float, now: float) -> int | None:
        """A receiver estimate; returns the new target when a step is due."""
        self.estimate = int(bps)
        wanted = max(self.floor, min(self.ceiling, int(bps * HEADROOM)))
        off = abs(wanted - self.target) / self.target
        limited = wanted > self.target or bps < 1.2 * max(sent_bps, 1.0)
        if off <= STEP or not limited:
            self._since = None
            return None
        if self._since is None:
            self._since = now
            return None
        if now - self._since < HOLD_S:
            return None
        self._since = None
        self.target = wanted
        self.steps += 1
        return wanted

    def set_ceiling(self, ceiling: int) -> int | None:
        """The client changed its maximum; returns the new target if it moved."""
        self.ceiling = int(ceiling)
        new = min(self.ceiling, max(self.floor, self.target))
        if self.estimate is None:
            new = self.ceiling  # no estimate yet: use what was asked for
        if new != self.target:
            self.target = new
            return new
        return None
