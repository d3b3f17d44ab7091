"""Statistics of the experiment reports on known numbers: summaries, t quantiles, CIs,
counter rates, histogram means and per-phase splits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from experiments.report.data import RunData
from experiments.report.phases import phase_stats, phases
from experiments.report.series import BY_KEY, combined, lines
from experiments.runner.stats import mean_ci, summarize, t_cdf, t_quantile


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452), (120, 1.9799)],
)
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-4)
    assert t_cdf(t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-9)


def test_summary_of_known_values() -> None:
    s = summarize([1, 2, 3, 4, 5, float("nan"), None])  # type: ignore[list-item]
    assert (s.n, s.mean, s.median, s.min, s.max) == (5, 3.0, 3.0, 1.0, 5.0)
    assert s.p5 == pytest.approx(1.2) and s.p95 == pytest.approx(4.8)
    assert s.range == 4.0
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)


def test_mean_ci_t_interval() -> None:
    ci = mean_ci([10.0, 12.0, 14.0])  # mean 12, s = 2, t(0.975, 2) = 4.3027
    assert ci.n == 3 and ci.mean == 12.0 and ci.std == pytest.approx(2.0)
    assert ci.half_width == pytest.approx(4.302653 * 2.0 / math.sqrt(3), rel=1e-6)
    assert ci.low < 12.0 < ci.high
    assert ci.format(1) == "12.0 ± 5.0"
    one = mean_ci([7.0])
    assert one.n == 1 and math.isnan(one.half_width) and "no CI" in one.format()
    assert mean_ci([]).format() == "n/a"


def _run(series: dict, events: list, duration: float = 20.0) -> RunData:
    manifest = {
        "duration_s": duration,
        "t0": 1000.0,
        "services": {"alice": {"kind": "client"}},
        "variant": {"name": "v"},
    }
    data = {k: (np.asarray(t, float), np.asarray(v, float)) for k, (t, v) in series.items()}
    return RunData("v-r1", Path("."), manifest, events, data)


def test_counter_rate_histogram_mean_and_label_sums() -> None:
    t = np.arange(0, 5, dtype=float)
    run = _run(
        {
            ("alice", "shiftcraft_client_received_bytes_total", "link=sim"): (t, 1000 * t),
            ("alice", "shiftcraft_client_received_bytes_total", "link=stream"): (t, 3000 * t),
            ("alice", "shiftcraft_client_frame_interval_seconds_sum", ""): (t, 0.5 * t),
            ("alice", "shiftcraft_client_frame_interval_seconds_count", ""): (t, 10 * t),
        },
        [],
    )
    per_link = lines(run, "alice", BY_KEY["rx_mbit"])
    assert set(per_link) == {"link=sim", "link=stream"}
    assert per_link["link=sim"][1] == pytest.approx([0.008] * 4)  # 1000 B/s = 0.008 Mbit/s
    _, total = combined(run, "alice", BY_KEY["rx_mbit"])
    assert total == pytest.approx([0.032] * 4)
    _, frame = combined(run, "alice", BY_KEY["frame_ms"])
    assert frame == pytest.approx([50.0] * 4)  # 0.5 s over 10 frames each second


def test_counter_reset_is_a_gap_not_a_negative_rate() -> None:
    t = np.arange(0, 4, dtype=float)
    run = _run({("alice", "shiftcraft_client_sent_bytes_total", ""): (t, [0, 100, 5, 105])}, [])
    _, v = combined(run, "alice", BY_KEY["tx_mbit"])
    assert v[0] == pytest.approx(0.0008) and math.isnan(v[1]) and v[2] == pytest.approx(0.0008)


def test_phases_split_at_completed_migrations_only() -> None:
    t = np.arange(0, 20, dtype=float)
    fps = np.where(t < 10, np.where(t % 2 == 0, 15.0, 25.0), 50.0)
    events = [
        {"kind": "migration", "t": 4.0, "client": "alice", "from": "device", "to": "edge-1",
         "outcome": "rollback", "time": 1004.0},
        {"kind": "migration", "t": 10.0, "client": "alice", "from": "device", "to": "edge-1",
         "outcome": "ok", "gap_ms": 12.0, "time": 1010.0},
    ]  # fmt: skip
    run = _run({("alice", "shiftcraft_client_fps", ""): (t, fps)}, events)
    ps = phases(run, "alice")
    assert [(p.start, p.end, p.placement) for p in ps] == [(0, 10, "device"), (10, 20, "edge-1")]
    stats = {(p.index, q.key): s for p, q, s in phase_stats(run, "alice")}
    before, after = stats[(0, "fps")], stats[(1, "fps")]
    assert (before.n, before.mean, before.min, before.max) == (10, 20.0, 15.0, 25.0)
    assert (after.n, after.mean, after.range) == (10, 50.0, 0.0)
