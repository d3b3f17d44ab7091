"""Client telemetry without a network: the battery model, the collector, /metrics (issue 5)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from client.config import ClientConfig
from client.device import (
    DEVICE_PROFILES,
    Battery,
    BatteryControlError,
    BatteryModel,
    RealBattery,
    make_battery,
)
from client.stats import FrameStats
from client.telemetry import ClientMetrics, TelemetryCollector
from scheduler.messages import Telemetry, decode
from shiftcraft import metric_names as m


# -- the battery model ------------------------------------------------------------------------
def test_device_model_lives_in_the_client_and_scenarios_reexport_it() -> None:
    from experiments.scenarios import model

    assert model.BatteryModel is BatteryModel
    assert model.DEVICE_PROFILES is DEVICE_PROFILES
    assert set(DEVICE_PROFILES) == {"phone", "laptop-battery", "vr-headset", "handheld-docked"}


def test_battery_power_and_drain_follow_the_formula() -> None:
    model = BatteryModel(
        capacity_j=3600.0, level=0.5, idle_w=1.0, screen_w=2.0, cpu_w=4.0,
        radio_j_per_mb=0.5, charger_w=20.0,
    )  # fmt: skip
    b = Battery(model)
    # 1 W idle + 2 W screen + 4 W × 1.5 cores + 0.5 J/MB × 2 MB/s = 10 W.
    assert b.draw_w(1.5, 2e6, True) == pytest.approx(10.0)
    assert b.draw_w(1.5, 2e6, False) == pytest.approx(8.0)
    b.advance(36.0, 1.5, 2e6, True)  # 360 J of 3600 J = 10 %
    assert b.level == pytest.approx(0.4)
    assert b.power_w == pytest.approx(10.0)
    assert b.energy_used_j == pytest.approx(360.0)
    b.plug(True)  # +20 W in, 10 W out: 10 W net into the battery
    b.advance(36.0, 1.5, 2e6, True)
    assert b.level == pytest.approx(0.5)
    b.advance(10_000.0, 1.5, 2e6, True)
    assert b.level == 1.0  # never past full
    b.plug(False)
    b.advance(1e6, 1.5, 2e6, True)
    assert b.level == 0.0  # nor below empty
    assert model.level == 0.5  # the profile's model is not changed by playing


def test_battery_sample_turns_counters_into_power() -> None:
    cpu = [10.0]
    b = Battery(
        BatteryModel(capacity_j=1e6, idle_w=0.5, screen_w=1.0, cpu_w=2.0, radio_j_per_mb=1.0),
        cpu_seconds=lambda: cpu[0],
    )
    first = b.sample(100.0, bytes_total=0, screen_on=True)
    assert first.source == "model" and first.level == pytest.approx(0.8)
    cpu[0] = 11.0  # one busy core for the next second
    r = b.sample(101.0, bytes_total=1_000_000, screen_on=True)
    assert r.power_w == pytest.approx(0.5 + 1.0 + 2.0 + 1.0)
    assert r.level == pytest.approx(0.8 - 4.5 / 1e6)
    # Measured CPU time may be passed in (the collector measures it once for all).
    r = b.sample(103.0, bytes_total=1_000_000, screen_on=False, cpu_total_s=11.0)
    assert r.power_w == pytest.approx(0.5)


def test_set_level_and_bad_levels() -> None:
    b = Battery(DEVICE_PROFILES["phone"].battery)  # type: ignore[arg-type]
    b.set_level(0.1)
    assert b.level == 0.1
    for bad in (-0.1, 1.5, math.nan, "0.5", True):
        with pytest.raises(ValueError):
            b.set_level(bad)  # type: ignore[arg-type]
    assert b.level == 0.1


def test_make_battery_choices() -> None:
    none = make_battery(real=lambda: None)
    assert none is None
    phone = make_battery("phone", level=0.3, charging=True, real=lambda: None)
    assert isinstance(phone, Battery) and phone.level == 0.3 and phone.charging
    assert phone.model.capacity_j == DEVICE_PROFILES["phone"].battery.capacity_j  # type: ignore[union-attr]
    just_level = make_battery(level=0.5, real=lambda: None)
    assert isinstance(just_level, Battery) and just_level.level == 0.5
    with pytest.raises(ValueError, match="unknown device profile"):
        make_battery("toaster")


def test_real_battery_is_read_and_refuses_changes() -> None:
    reading = SimpleNamespace(percent=42.0, power_plugged=False, secsleft=100)
    real = RealBattery(read=lambda: reading)
    r = real.reading()
    assert r.level == pytest.approx(0.42) and r.charging is False and r.source == "real"
    assert r.power_w is None
    with pytest.raises(BatteryControlError):
        real.set_level(0.1)
    with pytest.raises(BatteryControlError):
        real.plug(True)
    # A machine without one: probe says None, unless psutil finds one.
    import psutil

    expected = psutil.sensors_battery() is None
    assert (RealBattery.probe() is None) == expected


# -- the collector ------------------------------------------------------------------------------
class _Traffic:
    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


class _FakeGame:
    """The attributes `TelemetryCollector` reads, with hand-set values."""

    def __init__(self) -> None:
        self.migration = SimpleNamespace(node="local", current=None)
        self.remote = False
        self.source = None
        self.shown_stats = FrameStats()
        self.rendered = 0
        self.playing = True
        self.session = SimpleNamespace(traffic=_Traffic(), rtt_last=0.025)


def _stream(video: int, ch_in: int, ch_out: int, rtt: float | None) -> SimpleNamespace:
    return SimpleNamespace(
        jitter=SimpleNamespace(bytes_received=video),
        stats=SimpleNamespace(channel_bytes_in=ch_in, channel_bytes_out=ch_out, rtt_ms=rtt),
    )


def _samples(metrics: ClientMetrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_collector_measures_and_builds_a_valid_sample() -> None:
    game = _FakeGame()
    clock = [1000.0]
    cpu = [5.0]
    metrics = ClientMetrics()
    battery = Battery(
        BatteryModel(capacity_j=1e5, level=0.5, idle_w=1.0, screen_w=0.0, cpu_w=2.0,
                     radio_j_per_mb=0.0),
    )  # fmt: skip
    col = TelemetryCollector(
        game, battery=battery, metrics=metrics, clock=lambda: clock[0],
        cpu_seconds=lambda: cpu[0], rss_bytes=lambda: 123_456_789, cpu_count=2,
    )  # fmt: skip
    assert col.sample() is None  # nothing collected yet
    col.collect()
    # One second: 31 frames shown 1/30 s apart (30 intervals), half a core busy, traffic.
    for i in range(31):
        game.shown_stats.frame(1000.0 + i / 30)
    game.rendered = 31
    game.session.traffic.bytes_in = 50_000
    game.session.traffic.bytes_out = 4_000
    clock[0] = 1001.0
    cpu[0] = 5.5
    snap = col.collect()
    assert snap.mode == "local" and snap.node == "device" and snap.playing
    assert snap.fps == pytest.approx(30.0)
    assert snap.frame_ms[0] == pytest.approx(1000 / 30)
    assert snap.cpu == pytest.approx(0.25)
    assert snap.rx_bytes_per_s == pytest.approx(50_000) and snap.tx_bytes_per_s == 4_000
    assert snap.battery is not None and snap.battery.power_w == pytest.approx(2.0)
    t = col.sample()
    assert isinstance(t, Telemetry)
    assert t.rtt_sim_ms == pytest.approx(25.0) and t.rss_bytes == 123_456_789
    assert t.battery_level == pytest.approx(0.5 - 2.0 / 1e5)
    assert t.rtt_node_ms is None and t.stream_bitrate_bps is None
    # It passes the scheduler's own validation (what the link sends).
    wire = decode(t.encode())
    assert isinstance(wire, Telemetry) and wire.node == "device"

    s = _samples(metrics)
    assert s[(m.CLIENT_FRAMES_TOTAL, ())] == 31
    assert s[(m.CLIENT_FRAME_INTERVAL_SECONDS + "_count", ())] == 30
    assert s[(m.CLIENT_FPS, ())] == pytest.approx(30.0)
    assert s[(m.CLIENT_RTT_SIM_SECONDS, ())] == pytest.approx(0.025)
    assert s[(m.CLIENT_RECEIVED_BYTES_TOTAL, (("link", "sim"),))] == 50_000
    assert s[(m.CLIENT_RECEIVE_RATE, (("link", "sim"),))] == pytest.approx(50_000)
    assert s[(m.CLIENT_BATTERY_POWER_WATTS, ())] == pytest.approx(2.0)
    assert s[(m.CLIENT_REMOTE, ())] == 0
    assert s[(m.CLIENT_PLACEMENT, (("node", "device"),))] == 1
    assert (m.CLIENT_RTT_NODE_SECONDS, ()) not in s  # unknown in local mode: absent

    # A second collection only adds the new intervals to the histogram.
    for i in range(31, 46):
        game.shown_stats.frame(1000.0 + i / 30)
    clock[0] = 1001.5
    col.collect()
    s = _samples(metrics)
    assert s[(m.CLIENT_FRAME_INTERVAL_SECONDS + "_count", ())] == 45
    assert s[(m.CLIENT_FRAMES_TOTAL, ())] == 46


def test_collector_in_remote_mode_counts_stream_bytes_across_a_switch() -> None:
    game = _FakeGame()
    clock = [0.0]
    metrics = ClientMetrics()
    col = TelemetryCollector(game, metrics=metrics, clock=lambda: clock[0], cpu_count=1)
    old = _stream(1_000, 100, 50, 12.0)
    game.migration = SimpleNamespace(node="edge-1", current=None)
    game.source = SimpleNamespace(stream=old)
    col.collect()
    old.jitter.bytes_received = 251_000  # 250 kB of video in 1 s = 2 Mbit/s
    old.stats.channel_bytes_out = 1_050
    clock[0] = 1.0
    snap = col.collect()
    assert (snap.mode, snap.node) == ("remote", "edge-1")
    assert snap.stream_bitrate_bps == pytest.approx(2e6)
    assert snap.rx_per_s["stream"] == pytest.approx(250_000)
    assert snap.tx_per_s["stream"] == pytest.approx(1_000)
    t = snap.telemetry()
    assert t.rtt_node_ms == 12.0 and t.mode == "remote" and t.node == "edge-1"
    # Switching to another node: the new stream starts from zero, totals keep growing.
    new = _stream(30_000, 0, 0, 40.0)
    game.migration = SimpleNamespace(node="cloud-1", current=None)
    game.source = SimpleNamespace(stream=new)
    clock[0] = 2.0
    snap = col.collect()
    assert snap.bytes_in["stream"] == 251_100 + 30_000
    s = _samples(metrics)
    assert s[(m.CLIENT_RTT_NODE_SECONDS, ())] == pytest.approx(0.040)
    assert s[(m.CLIENT_PLACEMENT, (("node", "cloud-1"),))] == 1
    assert s[(m.CLIENT_PLACEMENT, (("node", "edge-1"),))] == 0


def test_a_display_that_stopped_reports_zero_fps() -> None:
    game = _FakeGame()
    clock = [10.0]
    col = TelemetryCollector(game, clock=lambda: clock[0])
    for i in range(31):
        game.shown_stats.frame(9.0 + i / 30)
    assert col.collect().fps == pytest.approx(30.0)
    clock[0] = 13.0  # three seconds without a new frame: the 2 s window is all old
    snap = col.collect()
    assert snap.fps == 0.0
    assert snap.frame_ms == pytest.approx((3000.0, 3000.0, 3000.0))


def test_no_sample_while_not_playing() -> None:
    game = _FakeGame()
    game.playing = False
    col = TelemetryCollector(game)
    col.collect()
    assert col.latest is not None and col.sample() is None


def test_migration_reports_feed_the_metrics() -> None:
    metrics = ClientMetrics()
    metrics.observe_report(
        {"trigger": "scheduler:7", "outcome": "ok", "gap_ms": 12.0, "duration_ms": 800.0}
    )
    metrics.observe_report(
        {"trigger": "key", "outcome": "rollback", "gap_ms": 20.0, "duration_ms": 3000.0}
    )
    s = _samples(metrics)
    assert s[(m.CLIENT_MIGRATIONS_TOTAL, (("outcome", "ok"), ("trigger", "scheduler")))] == 1
    assert s[(m.CLIENT_MIGRATIONS_TOTAL, (("outcome", "rollback"), ("trigger", "key")))] == 1
    assert s[(m.CLIENT_MIGRATION_GAP_SECONDS + "_count", ())] == 2
    assert s[(m.CLIENT_MIGRATION_DURATION_SECONDS + "_count", ())] == 1  # rollbacks: no switch
    assert s[(m.CLIENT_MIGRATION_DURATION_SECONDS + "_sum", ())] == pytest.approx(0.8)


def test_client_metric_names_follow_the_rules() -> None:
    names = [v for k, v in vars(m).items() if k.startswith("CLIENT_")]
    assert len(names) == len(set(names)) >= 20
    for name in names:
        assert name.startswith("shiftcraft_client_"), name
        assert not name.endswith(("_ms", "_milliseconds", "_kb", "_percent")), name
    # Counters end in _total (those defined as counters here).
    for k, v in vars(m).items():
        if k.startswith("CLIENT_") and k.endswith("_TOTAL"):
            assert v.endswith("_total")


def test_config_rejects_bad_migration_settings() -> None:
    ok = ClientConfig(nodes={"edge-1": "ws://127.0.0.1:1"}, migrate_at=[(3.0, "edge-1")])
    ok.validate()
    for bad in (
        ClientConfig(nodes={"device": "ws://x:1"}),
        ClientConfig(nodes={"edge": "ftp://x"}),
        ClientConfig(migrate_at=[(1.0, "nowhere")]),
        ClientConfig(scheduler="http://x:1"),
        ClientConfig(device="toaster"),
        ClientConfig(battery_level=1.5),
        ClientConfig(metrics_port=70000),
    ):
        with pytest.raises(ValueError):
            bad.validate()


# -- RTT probes to candidate nodes ---------------------------------------------------------------
async def test_node_prober_times_handshakes_and_forgets_dead_nodes() -> None:
    import asyncio
    import socket

    from client.telemetry import NodeProber

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    alive = f"ws://127.0.0.1:{listener.getsockname()[1]}/session"
    dead_sock = socket.socket()
    dead_sock.bind(("127.0.0.1", 0))
    dead = f"ws://127.0.0.1:{dead_sock.getsockname()[1]}"
    dead_sock.close()  # nobody listens there
    nodes = {"edge-1": alive, "gone": dead, "device-x": "ws://[bad"}
    clock = [100.0]
    prober = NodeProber(lambda: nodes, interval_s=0.05, clock=lambda: clock[0])
    task = asyncio.create_task(prober.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.02)
            if "edge-1" in prober.rtt_ms:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        listener.close()
    probes = prober.probes()
    assert [n for n, _ in probes] == ["edge-1"]
    assert 0.0 < probes[0][1] < 1000.0
    assert prober.probes(exclude="edge-1") == []  # the current node has its own RTT
    clock[0] += 60.0
    assert prober.probes() == []  # too old: unknown, not a stale number

    # The collector puts them in the scheduler's sample, which validates them.
    game = _FakeGame()
    col = TelemetryCollector(game, prober=prober, clock=lambda: clock[0])
    clock[0] -= 60.0
    snap = col.collect()
    t = snap.telemetry()
    assert t.probes == [["edge-1", probes[0][1]]]
    assert decode(t.encode()).probes == [("edge-1", probes[0][1])]
