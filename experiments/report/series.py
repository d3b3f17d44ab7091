"""The quantities a report plots, derived from the raw tidy table of one node.

Each `Quantity` names the metric(s) it is read from (regular expressions
tried in order, first match wins, so the report keeps working if a service
renames a metric within the patterns) and how:

* ``gauge`` — the value as scraped, times ``scale``;
* ``rate`` — a counter's per-second increase between scrapes (a reset gives
  a gap, not a negative rate), times ``scale``;
* ``hist_mean`` — a histogram's mean over each scrape interval,
  Δ``_sum``/Δ``_count`` (NaN when nothing was observed), times ``scale``.
  A gauge that matches is used as it is.

A metric exposed with several label sets (RTT to the sim and to the render
node, bytes per stream) gives one line per label set in plots; statistics
use the lines summed (rates) or averaged (gauges) at each scrape.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np

from experiments.report.data import RunData

Line = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Quantity:
    key: str
    title: str
    unit: str
    patterns: tuple[str, ...]
    how: str  # gauge | rate | hist_mean
    scale: float = 1.0
    combine: str = "mean"  # how label sets combine for statistics: mean | sum
    panel: str = ""  # plot panel ("" = its own, named by key)

    @property
    def panel_key(self) -> str:
        return self.panel or self.key


CLIENT_QUANTITIES: tuple[Quantity, ...] = (
    Quantity("fps", "FPS", "frames/s", (r"^shiftcraft_client_\w*fps$",), "gauge"),
    Quantity(
        "frame_ms", "Frame time", "ms",
        (r"^shiftcraft_client_frame_interval_seconds$", r"^shiftcraft_client_frame\w*_seconds$"),
        "hist_mean", 1000.0,
    ),
    Quantity(
        "rtt_sim_ms", "RTT to sim", "ms", (r"^shiftcraft_client_rtt_sim_seconds$",),
        "gauge", 1000.0, panel="rtt",
    ),
    Quantity(
        "rtt_node_ms", "RTT to render node", "ms", (r"^shiftcraft_client_rtt_node_seconds$",),
        "gauge", 1000.0, panel="rtt",
    ),
    Quantity(
        "memory_mb", "Memory (RSS)", "MB",
        (r"^shiftcraft_client_\w*(resident|rss|memory)\w*_bytes$",),
        "gauge", 1e-6,
    ),
    Quantity(
        "rx_mbit", "Received", "Mbit/s", (r"^shiftcraft_client_received_bytes_total$",),
        "rate", 8e-6, "sum", panel="bandwidth",
    ),
    Quantity(
        "tx_mbit", "Sent", "Mbit/s", (r"^shiftcraft_client_sent_bytes_total$",),
        "rate", 8e-6, "sum", panel="bandwidth",
    ),
    Quantity(
        "battery_pct", "Battery", "%",
        (r"^shiftcraft_client_battery_level_ratio$", r"^shiftcraft_client_battery\w*level\w*$"),
        "gauge", 100.0,
    ),
)  # fmt: skip

# Plot panels: quantities sharing a panel are drawn on one axis (title, unit).
PANELS: dict[str, tuple[str, str]] = {
    "fps": ("FPS", "frames/s"),
    "frame_ms": ("Frame time", "ms"),
    "rtt": ("RTT", "ms"),
    "memory_mb": ("Memory (RSS)", "MB"),
    "bandwidth": ("Bandwidth", "Mbit/s"),
    "battery_pct": ("Battery", "%"),
}

SIM_TICK = Quantity(
    "tick_ms",
    "Sim tick",
    "ms",
    (r"^shiftcraft_server_tick_duration_seconds$",),
    "hist_mean",
    1000.0,
)
SIM_PLAYERS = Quantity("players", "Players", "", (r"^shiftcraft_server_players$",), "gauge")
SIM_SENT = Quantity(
    "sent_mbit", "Sent", "Mbit/s", (r"^shiftcraft_server_sent_bytes_total$",), "rate", 8e-6, "sum"
)
BY_KEY = {q.key: q for q in (*CLIENT_QUANTITIES, SIM_TICK, SIM_PLAYERS, SIM_SENT)}


def _rate(t: np.ndarray, v: np.ndarray) -> Line:
    if t.size < 2:
        return t[:0], v[:0]
    dt, dv = np.diff(t), np.diff(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where((dt > 0) & (dv >= 0), dv / dt, np.nan)
    return t[1:], r


def _hist_mean(s: Line, c: Line) -> Line:
    (ts, vs), (tc, vc) = s, c
    n = min(ts.size, tc.size)
    if n < 2:
        return ts[:0], vs[:0]
    ds, dc = np.diff(vs[:n]), np.diff(vc[:n])
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(dc > 0, ds / dc, np.nan)
    return ts[1:n], m


def lines(run: RunData, node: str, q: Quantity) -> dict[str, Line]:
    """{labels: (t, value)} of ``q`` for ``node`` (empty when no metric matches)."""
    metrics = run.metrics(node)
    names = sorted({m for m, _ in metrics})
    for pattern in q.patterns:
        rx = re.compile(pattern)
        # A histogram's samples are NAME_sum/_count/_bucket: match on the base name.
        bases = sorted({re.sub(r"_(sum|count|bucket)$", "", n) for n in names})
        matched = [b for b in bases if rx.match(b)]
        if not matched:
            continue
        base = matched[0]
        out: dict[str, Line] = {}
        if f"{base}_sum" in names and f"{base}_count" in names:
            for (m, lab), s in metrics.items():
                if m == f"{base}_sum" and (f"{base}_count", lab) in metrics:
                    t, v = _hist_mean(s, metrics[(f"{base}_count", lab)])
                    out[lab] = (t, v * q.scale)
            return out
        for (m, lab), (t, v) in metrics.items():
            if m != base:
                continue
            if q.how == "rate" or base.endswith("_total"):
                t, v = _rate(t, v)
            out[lab] = (t, v * q.scale)
        if out:
            return out
    return {}


def combined(run: RunData, node: str, q: Quantity) -> Line:
    """One line for statistics: label sets summed (``combine: sum``) or averaged per scrape."""
    ls = lines(run, node, q)
    if not ls:
        return np.array([]), np.array([])
    if len(ls) == 1:
        return next(iter(ls.values()))
    ts = np.unique(np.concatenate([t for t, _ in ls.values()]))
    stack = np.full((len(ls), ts.size), np.nan)
    for i, (t, v) in enumerate(ls.values()):
        stack[i, np.searchsorted(ts, t)] = v
    with warnings.catch_warnings():  # an all-NaN column warns; it stays NaN below
        warnings.simplefilter("ignore", RuntimeWarning)
        v = np.nansum(stack, axis=0) if q.combine == "sum" else np.nanmean(stack, axis=0)
    v[np.all(np.isnan(stack), axis=0)] = np.nan
    return ts, v


def window(line: Line, start: float, end: float) -> np.ndarray:
    """Values with ``start <= t < end``."""
    t, v = line
    return v[(t >= start) & (t < end)]
