"""Smoothing of noisy telemetry: RTT estimators, windowed percentiles, staleness.

Policies never look at a raw sample. A single slow frame, one delayed pong
or one battery-gauge glitch must not move a player, so:

* RTT goes through the RFC 6298 estimator (SRTT with gain 1/8, RTTVAR with
  gain 1/4): the same filter TCP trusts for its retransmission timer, cheap,
  and its variance term tells a jittery link from a slow one;
* FPS and frame times are kept as a window of the last few seconds and read
  as percentiles (median for "how it usually is", p10 for "how bad the dips
  are"): robust to outliers, and a window can be emptied when the placement
  changes, which an EWMA's memory cannot;
* every stream remembers when it last got a sample, so a silent client is
  recognised as *stale* rather than as "still fine" or "suddenly zero".

All times are seconds on the caller's clock (the service's monotonic clock,
or a trace's own time when replaying).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from scheduler.messages import DEVICE, Telemetry

RTT_ALPHA = 1 / 8  # RFC 6298 §2.3
RTT_BETA = 1 / 4
FPS_MEMORY_ALPHA = 0.1


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation (numpy's default).

    Pure Python: windows hold a handful of values, where numpy's call
    overhead would be most of the cost.
    """
    if not values:
        raise ValueError("percentile of nothing")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass(slots=True)
class RttEstimator:
    """RFC 6298 SRTT/RTTVAR over RTT samples in milliseconds."""

    alpha: float = RTT_ALPHA
    beta: float = RTT_BETA
    srtt: float | None = None
    rttvar: float | None = None
    samples: int = 0
    last_t: float | None = None

    def update(self, rtt_ms: float, now: float) -> None:
        if self.srtt is None or self.rttvar is None:
            # §2.2: the first measurement R sets SRTT = R, RTTVAR = R/2.
            self.srtt = rtt_ms
            self.rttvar = rtt_ms / 2.0
        else:
            # §2.3: RTTVAR first, with the *old* SRTT.
            self.rttvar = (1 - self.beta) * self.rttvar + self.beta * abs(self.srtt - rtt_ms)
            self.srtt = (1 - self.alpha) * self.srtt + self.alpha * rtt_ms
        self.samples += 1
        self.last_t = now

    def predict(self, k: float) -> float | None:
        """A pessimistic RTT: SRTT + k·RTTVAR (None before any sample)."""
        if self.srtt is None or self.rttvar is None:
            return None
        return self.srtt + k * self.rttvar

    def age(self, now: float) -> float:
        return math.inf if self.last_t is None else now - self.last_t

    def as_dict(self) -> dict[str, Any]:
        return {"srtt_ms": _r(self.srtt), "rttvar_ms": _r(self.rttvar), "samples": self.samples}


@dataclass(slots=True)
class Ewma:
    """Exponentially weighted moving average; the first sample initialises it."""

    alpha: float = 0.25
    value: float | None = None

    def update(self, x: float) -> float:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)
        return self.value

    def reset(self) -> None:
        self.value = None


@dataclass(slots=True)
class Window:
    """(time, value) samples of the last ``window_s`` seconds."""

    window_s: float
    _items: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, now: float, value: float) -> None:
        self._items.append((now, value))
        self.prune(now)

    def prune(self, now: float) -> None:
        items = self._items
        while items and now - items[0][0] > self.window_s:
            items.popleft()

    def clear(self) -> None:
        self._items.clear()

    def values(self, now: float) -> list[float]:
        self.prune(now)
        return [v for _, v in self._items]

    def count(self, now: float) -> int:
        self.prune(now)
        return len(self._items)

    def percentile(self, q: float, now: float) -> float | None:
        v = self.values(now)
        return percentile(v, q) if v else None

    def slope(self, now: float) -> float | None:
        """Least-squares slope (value per second), None with < 2 samples or no time span."""
        self.prune(now)
        n = len(self._items)
        if n < 2:
            return None
        mt = sum(t for t, _ in self._items) / n
        mv = sum(v for _, v in self._items) / n
        var = sum((t - mt) ** 2 for t, _ in self._items)
        if var <= 0:
            return None
        return sum((t - mt) * (v - mv) for t, v in self._items) / var


@dataclass(slots=True)
class Staleness:
    """When a stream last produced a sample."""

    last: float | None = None

    def touch(self, now: float) -> None:
        self.last = now

    def age(self, now: float) -> float:
        return math.inf if self.last is None else now - self.last

    def stale(self, now: float, max_age_s: float) -> bool:
        return self.age(now) > max_age_s


@dataclass(slots=True)
class Memory:
    """A value measured at some time (e.g. the local FPS before going remote)."""

    value: float
    t: float

    def age(self, now: float) -> float:
        return now - self.t


class TelemetrySmoother:
    """One client's telemetry, smoothed: what policies read.

    Placement-dependent series (FPS, frame times, stream bitrate, power in
    this mode) are emptied when the placement changes, because they describe
    the old placement; the engine also stops feeding them for a settle
    window after a switch (`add(..., settling=True)`). Placement-independent
    ones (RTT to the sim, battery, CPU, bandwidth) carry on.
    """

    def __init__(self, window_s: float = 5.0, battery_window_s: float = 10.0) -> None:
        self.window_s = window_s
        self.fps = Window(window_s)
        self.frame_p95 = Window(window_s)
        self.frame_p99 = Window(window_s)
        self.rtt_sim = RttEstimator()
        self.rtt_nodes: dict[str, RttEstimator] = {}  # data channel + probes, by node
        self.battery = Window(battery_window_s)
        self.battery_charging: bool | None = None
        self.battery_power_w: float | None = None
        self.power_by_placement: dict[str, Ewma] = {}  # "local" / "remote"
        self.cpu = Ewma()
        self.rx = Ewma()
        self.tx = Ewma()
        self.downlink = Ewma()
        self.stream_bitrate = Ewma()
        self.rss_bytes: int | None = None
        self.staleness = Staleness()
        self.placement: str | None = None
        # This client's own FPS at each placement, a slow EWMA (time constant
        # ~10 samples) with the time it was last fed: what it got there over
        # a while, not the unlucky window that made it leave (regression to
        # the mean would make a window median flap).
        self.fps_long: dict[str, Ewma] = {}
        self.fps_long_at: dict[str, float] = {}
        self.last_seq = 0
        self.samples = 0
        self.lost = 0  # samples never received (gaps in seq)
        self.last_sample: Telemetry | None = None

    # -- ingest ----------------------------------------------------------------------
    def add(self, s: Telemetry, now: float, *, settling: bool = False) -> bool:
        """Take one sample; returns False for a duplicate or reordered one (ignored)."""
        if s.seq <= self.last_seq:
            return False  # duplicate or late: newer data is already in
        if self.last_seq and s.seq > self.last_seq + 1:
            self.lost += s.seq - self.last_seq - 1
        self.last_seq = s.seq
        self.samples += 1
        self.last_sample = s
        self.staleness.touch(now)
        if s.node != self.placement:
            self.placement_changed(s.node, now)
        # Placement-independent series.
        if s.rtt_sim_ms is not None:
            self.rtt_sim.update(s.rtt_sim_ms, now)
        for node, rtt in s.probes:
            self._rtt_node(node).update(rtt, now)
        if s.rtt_node_ms is not None and s.node != DEVICE:
            self._rtt_node(s.node).update(s.rtt_node_ms, now)
        if s.battery_level is not None:
            self.battery.add(now, s.battery_level)
        self.battery_charging = s.battery_charging
        self.battery_power_w = s.battery_power_w
        if s.cpu is not None:
            self.cpu.update(s.cpu)
        if s.rx_bytes_per_s is not None:
            self.rx.update(s.rx_bytes_per_s)
        if s.tx_bytes_per_s is not None:
            self.tx.update(s.tx_bytes_per_s)
        if s.downlink_bps is not None:
            self.downlink.update(s.downlink_bps)
        if s.rss_bytes is not None:
            self.rss_bytes = s.rss_bytes
        if settling:
            return True  # the window statistics still describe the switch itself
        # Placement-dependent series.
        self.fps.add(now, s.fps)
        self.frame_p95.add(now, s.frame_ms[1])
        self.frame_p99.add(now, s.frame_ms[2])
        if s.stream_bitrate_bps is not None:
            self.stream_bitrate.update(s.stream_bitrate_bps)
        if s.battery_power_w is not None and s.battery_charging is not True:
            self.power_by_placement.setdefault(s.mode, Ewma()).update(s.battery_power_w)
        long = self.fps_long.setdefault(s.node, Ewma(FPS_MEMORY_ALPHA))
        if now - self.fps_long_at.get(s.node, now) > self.window_s:
            long.reset()  # a new stay (or a gap): the old average says nothing about now
        long.update(s.fps)
        self.fps_long_at[s.node] = now
        return True

    def new_connection(self) -> None:
        """The client reconnected: its sample numbers start again from 1."""
        self.last_seq = 0

    def placement_changed(self, placement: str, now: float) -> None:
        """The client renders somewhere else now: forget what described the old place."""
        self.placement = placement
        self.fps.clear()
        self.frame_p95.clear()
        self.frame_p99.clear()
        self.stream_bitrate.reset()

    def _rtt_node(self, node: str) -> RttEstimator:
        est = self.rtt_nodes.get(node)
        if est is None:
            est = self.rtt_nodes[node] = RttEstimator()
        return est

    # -- read ------------------------------------------------------------------------
    @property
    def fps_memory(self) -> dict[str, Memory]:
        """This client's long-run FPS at every placement it has rendered from."""
        return {
            p: Memory(e.value, self.fps_long_at[p])
            for p, e in self.fps_long.items()
            if e.value is not None
        }

    @property
    def local_fps(self) -> Memory | None:
        """The device's own FPS when it last rendered."""
        return self.fps_memory.get(DEVICE)

    def fps_median(self, now: float) -> float | None:
        return self.fps.percentile(50, now)

    def fps_p10(self, now: float) -> float | None:
        return self.fps.percentile(10, now)

    def battery_level(self, now: float) -> float | None:
        # The median of the last few readings: one gauge glitch moves nothing.
        return self.battery.percentile(50, now)

    def battery_draining(self, now: float) -> bool | None:
        """True on battery, False on a charger, None when nothing says."""
        if self.battery_charging is not None:
            return not self.battery_charging
        slope = self.battery.slope(now)
        if slope is None:
            return None
        return slope < 0

    def snapshot(self, now: float) -> dict[str, Any]:
        """The smoothed view, JSON-ready (for /state and the decision log)."""
        return {
            "placement": self.placement,
            "age_s": _r(self.staleness.age(now)),
            "samples": self.samples,
            "lost": self.lost,
            "window_samples": self.fps.count(now),
            "fps_median": _r(self.fps_median(now)),
            "fps_p10": _r(self.fps_p10(now)),
            "frame_p95_ms": _r(self.frame_p95.percentile(50, now)),
            "rtt_sim": self.rtt_sim.as_dict(),
            "rtt_nodes": {n: e.as_dict() for n, e in sorted(self.rtt_nodes.items())},
            "battery_level": _r(self.battery_level(now), 4),
            "battery_charging": self.battery_charging,
            "battery_draining": self.battery_draining(now),
            "battery_power_w": _r(self.battery_power_w),
            "cpu": _r(self.cpu.value, 4),
            "rss_bytes": self.rss_bytes,
            "rx_bytes_per_s": _r(self.rx.value),
            "tx_bytes_per_s": _r(self.tx.value),
            "downlink_bps": _r(self.downlink.value),
            "stream_bitrate_bps": _r(self.stream_bitrate.value),
            "fps_memory": {
                p: {"fps": _r(m.value), "age_s": _r(m.age(now))}
                for p, m in sorted(self.fps_memory.items())
            },
        }


def _r(v: float | None, digits: int = 2) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(v, digits)
