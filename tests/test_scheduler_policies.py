"""Policies and the engine's safeguards on telemetry traces (tests/data/traces).

Every test replays a trace through the real engine (`scheduler.replay`): the
same code the service runs, with the trace's clock. Closed-loop traces say
what the client would measure at each placement; the replayer feeds the
sample of wherever the policy has put the client.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest
from test_scheduler_traces import (
    CLOUD,
    EDGE,
    TRACES,
    Event,
    client,
    nodes,
    telemetry,
)

from scheduler.config import EngineConfig, build_config
from scheduler.decisions import DecisionLog, read_log
from scheduler.engine import Engine
from scheduler.messages import DEVICE, NodeStatus, Register, Telemetry
from scheduler.policies import parse_policy
from scheduler.replay import ReplayResult, load_trace, replay


def run(
    trace: str | list[Event],
    policy: str,
    params: dict[str, Any] | None = None,
    log: DecisionLog | None = None,
    **engine: Any,
) -> ReplayResult:
    """Replay a committed trace (by name) or in-memory events through ``policy``."""
    events = load_trace(TRACES / f"{trace}.jsonl") if isinstance(trace, str) else trace
    cfg = dataclasses.replace(EngineConfig(), **engine)
    return replay(events, parse_policy(policy, params or {}), cfg, log)


def switch_times(r: ReplayResult) -> list[float]:
    return [s.t for s in r.switches]


def min_gap(times: list[float]) -> float:
    return min((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


def fps_trace(
    device: list[float],
    edge: list[float] | float = 30.0,
    *,
    edge_rtt: float = 15.0,
    duration: int | None = None,
    **node_kw: Any,
) -> list[Event]:
    """Per-second device and edge FPS (noise-free), edge and cloud nodes alive."""
    n = duration or len(device)
    ev = nodes(n, **node_kw)
    ev.append(client())
    for t in range(1, n + 1):
        d = device[min(t - 1, len(device) - 1)]
        e = edge if isinstance(edge, float | int) else edge[min(t - 1, len(edge) - 1)]
        ev.append(telemetry(t, DEVICE, {"fps": d, "frame_ms": [1000 / d, 1100 / d, 1200 / d]}))
        ev.append(
            telemetry(
                t,
                EDGE,
                {"fps": e, "frame_ms": [1000 / e, 1100 / e, 1200 / e], "rtt_node_ms": edge_rtt},
            )
        )
    return ev


# Instant windows: one sample decides, so tests can count evaluations exactly.
INSTANT = {"window_s": 0.5, "min_samples": 1, "settle_s": 0.0}


# -- each policy on the recorded traces ------------------------------------------------------
def test_threshold_leaves_a_throttled_device_once_for_the_edge() -> None:
    r = run("threshold_low_fps", "threshold")
    assert r.switch_count() == 1
    s = r.switches[0]
    assert (s.frm, s.to, s.reason) == (DEVICE, EDGE, "low_fps")
    assert 30 < s.t <= 40  # throttled at t=30: 3 bad evaluations once the window turns
    assert r.final("alice") == EDGE


def test_static_policies_are_fixed_baselines() -> None:
    local = run("threshold_low_fps", "static-local")
    assert local.switch_count() == 0 and local.final("alice") == DEVICE
    cloud = run("threshold_low_fps", f"static:{CLOUD}")
    assert [(s.to, s.reason) for s in cloud.switches] == [(CLOUD, "static")]
    assert cloud.switches[0].t < 6  # as soon as the window has min_samples


def test_score_moves_a_weak_device_to_the_edge_over_the_cloud() -> None:
    r = run("score_weak_device", "score")
    assert [(s.frm, s.to, s.reason) for s in r.switches] == [(DEVICE, EDGE, "better_score")]


def test_noisy_fps_does_not_flap_and_hysteresis_is_why() -> None:
    # Device and edge both hover around the threshold (26 ± 6 FPS, dips to 8).
    held = run("noisy_fps", "threshold")
    assert held.switch_count() <= 3, [(s.t, s.to) for s in held.switches]
    assert min_gap(switch_times(held)) >= 60  # memory_s: a placement left as bad rests

    # The same trace without hysteresis, memory or dwell flaps many times more.
    eager = run(
        "noisy_fps",
        "threshold",
        {"threshold": {"k_leave": 1, "k_return": 1, "memory_s": 0, "max_backoff": 1}},
        min_dwell_s=0.0,
        settle_s=0.0,
    )
    assert eager.switch_count() >= 4 * max(1, held.switch_count())


def test_score_does_not_flap_on_noise() -> None:
    held = run("noisy_fps", "score")
    assert held.switch_count() <= 6
    assert min_gap(switch_times(held)) >= EngineConfig().min_dwell_s
    eager = run(
        "noisy_fps",
        "score",
        {"score": {"margin": 0.0, "k_switch": 1, "margin_window_s": 0.0, "memory_s": 0.0}},
        min_dwell_s=0.0,
        settle_s=0.0,
    )
    assert eager.switch_count() >= 3 * held.switch_count()


@pytest.mark.parametrize("policy", ["threshold", "battery", "score", "static-local"])
def test_missing_and_stale_telemetry_never_switch(policy: str) -> None:
    # 10 FPS throughout t < 130, but one sample in 4 s, bursts, then silence.
    r = run("missing_stale", policy)
    assert r.switch_count() == 0
    assert r.engine is not None
    assert r.engine.stats.holds["stale"] >= 3  # each silence logged once, on entry
    assert r.engine.stats.evaluations == 0 or all(t >= 130 for t, *_ in r.commands)


def test_stale_data_does_not_delay_a_fresh_decision() -> None:
    # The static baseline waits for fresh data (t >= 130) and then acts at once.
    r = run("missing_stale", f"static:{CLOUD}")
    assert [s.to for s in r.switches] == [CLOUD]
    assert 130 <= r.switches[0].t <= 136


def test_battery_offloads_at_15_percent_and_returns_on_the_charger() -> None:
    with DecisionLog() as log:
        r = run("battery", "battery", log=log)
        records = list(log.recent)
    assert [(s.frm, s.to, s.reason) for s in r.switches] == [
        (DEVICE, EDGE, "battery_low"),
        (EDGE, DEVICE, "on_charger"),
    ]
    off, back = r.switches
    assert 60 <= off.t <= 72  # 15 % at t=60 (a median over 10 s and k_on=2 later)
    assert 150 <= back.t <= 156  # charger at t=150, k_off=3
    migrate = next(x for x in records if x["event"] == "migrate")
    assert migrate["detail"]["level"] <= 0.15 and migrate["detail"]["draining"] is True
    # The charger glitch (unplugged for 1 s at t=200, level ~15 %) and the unplug
    # at 17.5 % (t=250) move nothing: hysteresis and the 15-20 % band hold.
    glitch = [x for x in records if x["event"] == "hold" and 199 <= x["t"] <= 203]
    assert glitch and glitch[0]["reason"] == "hysteresis"
    assert r.final("alice") == DEVICE


def battery_trace(levels: list[tuple[float, bool | None]]) -> list[Event]:
    ev = nodes(len(levels))
    ev.append(client())
    for t, (level, charging) in enumerate(levels, 1):
        base = {"fps": 40.0, "frame_ms": [25.0, 30.0, 35.0], "battery_level": level}
        if charging is not None:
            base["battery_charging"] = charging
        ev.append(telemetry(t, DEVICE, dict(base)))
        ev.append(telemetry(t, EDGE, {**base, "fps": 30.0, "rtt_node_ms": 15.0}))
    return ev


def test_battery_band_between_15_and_20_percent_holds() -> None:
    # Offload at 14 %, then the gauge climbs through the band without a charger
    # (a recalibrating gauge): no return until 20 %.
    levels = [(0.14, False)] * 30 + [(0.17, False)] * 30 + [(0.21, False)] * 30
    r = run(battery_trace(levels), "battery")
    assert [(s.to, s.reason) for s in r.switches] == [(EDGE, "battery_low"), (DEVICE, "battery_ok")]
    assert r.switches[1].t > 60


def test_battery_unknown_never_switches() -> None:
    # Level known but charging unknown and flat: draining unknown -> nothing.
    r = run(battery_trace([(0.10, None)] * 60), "battery")
    assert r.switch_count() == 0
    # No battery at all (a desktop): nothing.
    ev = [e for e in fps_trace([40.0] * 60)]
    assert run(ev, "battery").switch_count() == 0


# -- score feasibility: RTT budget, capacity, bandwidth -----------------------------------------
def with_edge_status(events: list[Event], **status: Any) -> list[Event]:
    out = []
    for e in events:
        if e["event"] == "node_status" and e["node"] == EDGE:
            e = {**e, "status": {**e["status"], **status}}
        out.append(e)
    return out


def test_score_respects_rtt_budget_capacity_and_bandwidth() -> None:
    base = load_trace(TRACES / "score_weak_device.jsonl")
    # Edge full: the cloud (70 ms, within 100) is the best feasible node.
    full = run(with_edge_status(base, sessions=4, capacity=4), "score")
    assert [s.to for s in full.switches] == [CLOUD]
    # Edge short of bandwidth (2 Mbit/s spare < 1.3 x 2 Mbit/s stream).
    thin = run(with_edge_status(base, uplink_bps=2.0e6), "score")
    assert [s.to for s in thin.switches] == [CLOUD]
    # A 50 ms budget rules the cloud out: with the edge full, nowhere to go.
    tight = run(
        with_edge_status(base, sessions=4, capacity=4), "score", {"score": {"rtt_budget_ms": 50}}
    )
    assert tight.switch_count() == 0
    # ... and with room at the edge, the edge it is.
    edge = run(base, "score", {"score": {"rtt_budget_ms": 50}})
    assert [s.to for s in edge.switches] == [EDGE]


def test_score_keeps_a_capable_device_local() -> None:
    r = run(fps_trace([40.0] * 60), "score")
    assert r.switch_count() == 0


# -- safeguards ----------------------------------------------------------------------------------
def test_dwell_time_holds_a_second_switch() -> None:
    # Bad everywhere: the policy wants to leave every placement at once.
    params = {"threshold": {"k_leave": 1, "k_return": 1, "memory_s": 0}}
    with DecisionLog() as log:
        r = run(fps_trace([10.0] * 60, 10.0), "threshold", params, log, **INSTANT)
        holds = [x for x in log.recent if x["reason"] == "dwell"]
    times = switch_times(r)
    assert len(times) >= 2
    assert min_gap(times) >= EngineConfig().min_dwell_s
    assert holds, "a proposal inside the dwell time is logged as a hold"
    h = holds[0]
    assert h["event"] == "hold" and h["to"] is not None
    assert 0 < h["detail"]["dwell_left_s"] <= EngineConfig().min_dwell_s
    assert h["detail"]["proposed_reason"] == "low_fps"
    assert h["inputs"]["fps_median"] == 10.0


def test_leave_hysteresis_needs_k_consecutive_bad_evaluations() -> None:
    # Bad, bad, good repeated: never 3 in a row.
    pattern = [10.0, 10.0, 40.0] * 20
    with DecisionLog() as log:
        r = run(fps_trace(pattern), "threshold", log=log, **INSTANT)
        holds = [x for x in log.recent if x["event"] == "hold"]
    assert r.switch_count() == 0
    assert {h["reason"] for h in holds} == {"hysteresis"}
    assert {h["detail"]["streak"] for h in holds} == {1, 2}
    # Three in a row: leave.
    r = run(fps_trace([40.0] * 10 + [10.0] * 10), "threshold", **INSTANT)
    assert [s.to for s in r.switches] == [EDGE]
    assert 12 <= r.switches[0].t <= 14


def test_return_needs_the_longer_window() -> None:
    # The device is bad from t=1 to 10 (-> edge), recovers; the edge turns bad at t=40.
    device = [10.0] * 10 + [40.0] * 110
    edge = [30.0] * 40 + [10.0] * 80
    params = {"threshold": {"memory_s": 5.0, "rtt_max_ms": 60.0}}  # the cloud is too far
    with DecisionLog() as log:
        r = run(fps_trace(device, edge), "threshold", params, log, **INSTANT)
        waiting = [x for x in log.recent if x["reason"] == "return_hysteresis"]
    assert [s.to for s in r.switches] == [EDGE, DEVICE]
    back = r.switches[1].t
    # Bad from t=40: leaving would take k_leave=3; returning takes k_return=10.
    assert back >= 40 + 10
    assert waiting and "device" in waiting[0]["detail"]["waiting"]


def test_samples_right_after_a_switch_are_ignored() -> None:
    # The edge shows 5 FPS for its first 2 s (the switch itself), then 30.
    def trace() -> list[Event]:
        ev = nodes(60)
        ev.append(client())
        for t in range(1, 61):
            ev.append(telemetry(t, DEVICE, {"fps": 10.0, "frame_ms": [100.0, 110.0, 120.0]}))
        return ev

    def edge_after(ev: list[Event], switch_t: float) -> list[Event]:
        out = list(ev)
        for t in range(1, 61):
            fps = 5.0 if switch_t < t <= switch_t + 2 else 30.0
            out.append(
                telemetry(
                    t, EDGE, {"fps": fps, "frame_ms": [33.0, 40.0, 50.0], "rtt_node_ms": 15.0}
                )
            )
        return sorted(out, key=lambda e: e["t"])

    params = {"threshold": {"k_leave": 1, "k_return": 1, "memory_s": 0}}
    first = run(trace(), "threshold", params, **{**INSTANT, "min_dwell_s": 0.0})
    switch_t = first.switches[0].t  # when it reaches the edge
    settled = run(
        edge_after(trace(), switch_t),
        "threshold",
        params,
        **{**INSTANT, "min_dwell_s": 0.0, "settle_s": 3.0},
    )
    assert [s.to for s in settled.switches] == [EDGE]
    unsettled = run(
        edge_after(trace(), switch_t),
        "threshold",
        params,
        **{**INSTANT, "min_dwell_s": 0.0, "settle_s": 0.0},
    )
    assert unsettled.switch_count() > 1  # without the settle window it bounces


def test_dead_or_full_targets_are_never_chosen() -> None:
    base = fps_trace([40.0] * 40, edge_capacity=2, edge_sessions=2)
    with DecisionLog() as log:
        r = run(base, f"static:{EDGE}", log=log)
        problems = {x["detail"].get("problem") for x in log.recent if x["event"] == "hold"}
    assert r.switch_count() == 0
    assert "node is full (2/2)" in problems
    # Room appears at t=20: then it goes.
    freed = [
        {**e, "status": {**e["status"], "sessions": 1}}
        if e["event"] == "node_status" and e["node"] == EDGE and e["t"] >= 20
        else e
        for e in base
    ]
    r = run(freed, f"static:{EDGE}")
    assert [s.to for s in r.switches] == [EDGE] and r.switches[0].t >= 20
    # A node that loses its connection, or stops beating, is dead.
    gone = [*fps_trace([40.0] * 40), {"t": 0.5, "event": "node_down", "node": EDGE}]
    assert run(gone, f"static:{EDGE}").switch_count() == 0
    silent = [
        e
        for e in fps_trace([40.0] * 40)
        if not (e["event"] == "node_status" and e["node"] == EDGE and e["t"] > 2)
    ]
    with DecisionLog() as log:
        r = run(silent, f"static:{EDGE}", log=log)
        events = [(x["event"], x.get("node"), x["reason"]) for x in log.recent]
    assert r.switch_count() <= 1 and all(s.t < 8 for s in r.switches)
    assert ("node_down", EDGE, "heartbeat_timeout") in events


def test_a_failed_target_is_avoided_for_a_while() -> None:
    ev = fps_trace([10.0] * 120)
    ev.insert(0, {"t": 0, "event": "fail", "client": "alice", "node": EDGE, "outcome": "rollback"})
    r = run(ev, "threshold")
    assert [c[2].node for c in r.commands][:2] == [EDGE, CLOUD]
    outcomes = [rep.outcome for _, _, rep in r.reports]
    assert outcomes[:2] == ["rollback", "ok"]
    assert r.final("alice") == CLOUD


def test_decision_log_lines_carry_inputs_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(path) as log:
        run("threshold_low_fps", "threshold", log=log)
    records = read_log(path)
    kinds = {r["event"] for r in records}
    assert {"node_up", "hold", "migrate", "report"} <= kinds
    m = next(r for r in records if r["event"] == "migrate")
    for key in (
        "ts",
        "t",
        "decision",
        "client",
        "policy",
        "reason",
        "from",
        "to",
        "from_location",
        "to_location",
        "detail",
        "inputs",
    ):
        assert key in m, key
    assert (m["from"], m["to"], m["from_location"], m["to_location"]) == (
        DEVICE,
        EDGE,
        "device",
        "edge",
    )
    assert m["reason"] == "low_fps" and m["policy"] == "threshold"
    assert m["detail"]["streak"] >= 3 and m["detail"]["fps_min"] == 25.0
    inputs = m["inputs"]
    assert inputs["fps_median"] < 25 and inputs["samples"] >= 3
    cands = {c["node"]: c for c in inputs["candidates"]}
    assert set(cands) == {DEVICE, EDGE, CLOUD}
    assert cands[EDGE]["rtt_source"] == "measured" and 5 < cands[EDGE]["rtt_ms"] < 40
    report = next(r for r in records if r["event"] == "report")
    assert report["decision"] == m["decision"] and report["reason"] == "ok"
    assert report["detail"]["gap_ms"] is not None


def test_config_file_parameters_reach_the_policy(tmp_path: Path) -> None:
    cfg = build_config(
        {"policy": "threshold", "threshold": {"fps_min": 50}, "engine": {"min_dwell_s": 5}}
    )
    assert cfg.engine.min_dwell_s == 5.0
    with DecisionLog() as log:
        replay(load_trace(TRACES / "threshold_low_fps.jsonl"), cfg.policy_spec(), cfg.engine, log)
        holds = [x for x in log.recent if x["event"] == "hold"]
    # 45 FPS is bad at fps_min 50, and so are the 30 FPS nodes: nowhere to go.
    assert holds[0]["t"] < 10 and holds[-1]["reason"] == "no_target"
    assert holds[-1]["detail"]["fps_min"] == 50
    with pytest.raises(ValueError, match="unknown parameter"):
        build_config({"threshold": {"fps_minimum": 50}})
    with pytest.raises(ValueError, match="expected float"):
        build_config({"threshold": {"fps_min": "fast"}})
    with pytest.raises(ValueError, match="unknown policy"):
        parse_policy("random")
    with pytest.raises(ValueError, match="on_level < off_level"):
        build_config({"policy": "battery", "battery": {"on_level": 0.3}})


# -- the engine directly -----------------------------------------------------------------------
def engine_with_edge(capacity: int, sessions: int) -> Engine:
    eng = Engine(EngineConfig(), parse_policy("threshold"))
    reg = {"version": 1, "role": "render-node", "name": EDGE, "location": "edge"}
    eng.register(Register(**reg, capacity=capacity, url="ws://e/session"), 0.0)
    eng.node_status(EDGE, NodeStatus(t=0.0, sessions=sessions, capacity=capacity), 0.0)
    return eng


def feed_bad_fps(eng: Engine, name: str, start: int, n: int) -> None:
    for i in range(start, start + n):
        s = Telemetry(
            seq=i, t=float(i), mode="local", node=DEVICE, fps=10.0, frame_ms=(100.0, 120.0, 150.0)
        )
        eng.telemetry(name, s, float(i))


def test_the_last_free_session_goes_to_one_client_only() -> None:
    eng = engine_with_edge(capacity=2, sessions=1)
    for name in ("alice", "bob"):
        eng.register(Register(version=1, role="client", name=name), 0.0)
    commands = []
    for t in range(1, 6):
        for name in ("alice", "bob"):
            feed_bad_fps(eng, name, t, 1)
        eng.node_status(EDGE, NodeStatus(t=t, sessions=1, capacity=2), float(t))
        commands += eng.tick(t + 0.5)
    assert [c.node for c in commands] == [EDGE]  # the reservation counts the first one
    assert eng.registry.nodes[EDGE].load(5.5) == 2
    assert eng.stats.holds["no_target"] >= 1


def test_a_client_that_disconnects_mid_command_is_not_stuck() -> None:
    eng = engine_with_edge(capacity=4, sessions=0)
    eng.register(Register(version=1, role="client", name="alice"), 0.0, conn=1)
    for t in range(1, 6):
        feed_bad_fps(eng, "alice", t, 1)
        eng.node_status(EDGE, NodeStatus(t=t, sessions=0, capacity=4), float(t))
        if eng.tick(t + 0.5):
            break
    c = eng.registry.clients["alice"]
    assert c.pending is not None
    eng.disconnect("client", "alice", 6.0, conn=1)
    assert c.pending is None and not c.connected
    assert "alice" not in eng.registry.nodes[EDGE].reservations
    assert [r["event"] for r in eng.log.recent][-1] == "timeout"
    # An older connection closing after a reconnect changes nothing.
    eng.register(Register(version=1, role="client", name="alice"), 7.0, conn=2)
    eng.disconnect("client", "alice", 7.5, conn=1)
    assert c.connected
