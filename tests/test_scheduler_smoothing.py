"""Smoothing: RFC 6298 RTT estimator, windowed percentiles, staleness, the per-client smoother."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scheduler.messages import Telemetry
from scheduler.smoothing import (
    RttEstimator,
    Staleness,
    TelemetrySmoother,
    Window,
    percentile,
)


def test_rtt_estimator_follows_rfc6298() -> None:
    est = RttEstimator()
    assert est.predict(1.0) is None
    est.update(100.0, 0.0)  # first sample: SRTT = R, RTTVAR = R/2
    assert (est.srtt, est.rttvar) == (100.0, 50.0)
    est.update(60.0, 1.0)
    # RTTVAR = 3/4*50 + 1/4*|100-60| = 47.5 (with the old SRTT); SRTT = 7/8*100 + 1/8*60 = 95
    assert est.rttvar == pytest.approx(47.5)
    assert est.srtt == pytest.approx(95.0)
    assert est.predict(4.0) == pytest.approx(95.0 + 4 * 47.5)  # TCP's RTO shape
    for i in range(200):
        est.update(20.0, 2.0 + i)
    assert est.srtt == pytest.approx(20.0, abs=0.01)
    assert est.rttvar == pytest.approx(0.0, abs=0.01)
    assert est.age(300.0) == pytest.approx(99.0)
    assert RttEstimator().age(5.0) == math.inf


def test_rtt_estimator_damps_a_spike_and_shows_jitter() -> None:
    steady, jittery = RttEstimator(), RttEstimator()
    for i in range(50):
        steady.update(20.0, i)
        jittery.update(20.0 + (15.0 if i % 2 else -15.0), i)
    steady.update(200.0, 50)  # one delayed pong
    assert steady.srtt is not None and steady.srtt < 45  # 1/8 of the spike
    assert jittery.rttvar is not None and jittery.rttvar > 10 > (RttEstimator().rttvar or 0)


@pytest.mark.parametrize("q", [0, 10, 25, 50, 90, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = [31.0, 12.5, 60.0, 29.9, 30.1, 8.0, 45.5]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([7.0], q) == 7.0
    with pytest.raises(ValueError):
        percentile([], q)


def test_window_keeps_the_last_seconds() -> None:
    w = Window(5.0)
    for t in range(10):
        w.add(float(t), float(t))
    assert w.values(9.0) == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert w.count(20.0) == 0  # everything aged out
    assert w.percentile(50, 20.0) is None
    w.add(30.0, 1.0)
    w.add(31.0, 3.0)
    assert w.slope(31.0) == pytest.approx(2.0)
    w.clear()
    assert w.slope(31.0) is None


def test_staleness() -> None:
    s = Staleness()
    assert s.stale(0.0, 3.0) and s.age(1.0) == math.inf
    s.touch(10.0)
    assert not s.stale(12.0, 3.0)
    assert s.stale(13.5, 3.0)


def sample(seq: int, fps: float, node: str = "device", **kw: object) -> Telemetry:
    mode = "local" if node == "device" else "remote"
    return Telemetry(
        seq=seq, t=float(seq), mode=mode, node=node, fps=fps, frame_ms=(30.0, 40.0, 50.0), **kw
    )  # type: ignore[arg-type]


def test_smoother_windows_reset_on_placement_change_and_skip_settling() -> None:
    sm = TelemetrySmoother(window_s=5.0)
    for i in range(1, 6):
        assert sm.add(sample(i, 20.0, rtt_sim_ms=30.0), float(i))
    assert sm.fps_median(5.0) == 20.0 and sm.placement == "device"
    # Now remote: the device's FPS window no longer describes anything.
    sm.add(sample(6, 5.0, node="edge-1", rtt_node_ms=12.0, cpu=0.3), 6.0, settling=True)
    assert sm.placement == "edge-1"
    assert sm.fps.count(6.0) == 0  # cleared, and the settling sample not added
    assert sm.rtt_sim.samples == 5  # placement-independent series carry on
    assert sm.rtt_nodes["edge-1"].srtt == 12.0 and sm.cpu.value == 0.3
    sm.add(sample(7, 30.0, node="edge-1"), 7.0)
    assert sm.fps.values(7.0) == [30.0]
    # The device's long-run FPS is remembered for policies.
    assert sm.local_fps is not None and sm.local_fps.value == pytest.approx(20.0)
    assert sm.local_fps.age(7.0) == pytest.approx(2.0)


def test_smoother_drops_duplicates_and_counts_lost_samples() -> None:
    sm = TelemetrySmoother()
    assert sm.add(sample(1, 30.0), 1.0)
    assert not sm.add(sample(1, 30.0), 1.1)  # duplicate
    assert sm.add(sample(5, 30.0), 5.0)
    assert not sm.add(sample(4, 30.0), 5.1)  # late
    assert (sm.samples, sm.lost) == (2, 3)
    sm.new_connection()  # a reconnected client counts from 1 again
    assert sm.add(sample(1, 30.0), 6.0)


def test_battery_is_median_filtered_and_draining_is_inferred() -> None:
    sm = TelemetrySmoother()
    levels = [0.20, 0.199, 0.05, 0.197, 0.196]  # one gauge glitch
    for i, lv in enumerate(levels, 1):
        sm.add(sample(i, 30.0, battery_level=lv), float(i))
    assert sm.battery_level(5.0) == pytest.approx(0.197)
    assert sm.battery_draining(5.0) is True  # no charging flag: the trend says so
    sm.add(sample(6, 30.0, battery_level=0.2, battery_charging=True), 6.0)
    assert sm.battery_draining(6.0) is False
    unknown = TelemetrySmoother()
    unknown.add(sample(1, 30.0), 1.0)
    assert unknown.battery_level(1.0) is None and unknown.battery_draining(1.0) is None
    snap = unknown.snapshot(1.0)
    assert snap["battery_level"] is None and snap["fps_median"] == 30.0
