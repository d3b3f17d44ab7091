"""The telemetry traces under tests/data/traces, and how they were made.

No client sent telemetry to a scheduler before this one existed, so the
traces are *synthesised*, closed-loop (see `scheduler.replay`): every second
each trace says what the client would measure on the device and on each
render node, with noise drawn from a seeded generator and magnitudes taken
from the reference numbers in DESIGN.md (edge ≈ 15 ms RTT, 4G/cloud ≈ 90 ms,
streams at 30 FPS and ~2 Mbit/s, a phone-class device at 12–45 FPS).

Regenerate with ``.venv/bin/python tests/test_scheduler_traces.py``; the
test below fails if the committed files and this code disagree, so a trace
is always explained by the function that made it.

Limits of synthesis: the battery level follows a fixed path whatever the
placement (only the drawn power differs), and node load does not react to
the client joining it.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRACES = Path(__file__).resolve().parent / "data" / "traces"
EDGE = "edge-1"
CLOUD = "cloud-1"
NODE_URL = {EDGE: "ws://edge-1.test:8770/session", CLOUD: "ws://cloud-1.test:8770/session"}
Event = dict[str, Any]


def _r(x: float, digits: int = 2) -> float:
    return round(x, digits)


def _clip(x: float, lo: float, hi: float = 1e9) -> float:
    return max(lo, min(hi, x))


def nodes(
    duration: int,
    *,
    edge_capacity: int = 4,
    edge_sessions: int = 1,
    cloud_capacity: int = 16,
    cloud_sessions: int = 3,
    edge_uplink_bps: float | None = 50e6,
) -> list[Event]:
    """Both render nodes: registration, then a status every second."""
    ev: list[Event] = [
        {
            "t": 0,
            "event": "node",
            "register": {
                "name": EDGE,
                "location": "edge",
                "capacity": edge_capacity,
                "url": NODE_URL[EDGE],
            },
        },
        {
            "t": 0,
            "event": "node",
            "register": {
                "name": CLOUD,
                "location": "cloud",
                "capacity": cloud_capacity,
                "url": NODE_URL[CLOUD],
            },
        },
    ]
    for t in range(duration + 1):
        edge = {"sessions": edge_sessions, "capacity": edge_capacity, "encode_ms": 4.3, "fps": 30.0}
        if edge_uplink_bps is not None:
            edge["uplink_bps"] = edge_uplink_bps
        ev.append({"t": t, "event": "node_status", "node": EDGE, "status": edge})
        cloud = {
            "sessions": cloud_sessions,
            "capacity": cloud_capacity,
            "encode_ms": 4.3,
            "fps": 30.0,
            "uplink_bps": 1e9,
        }
        ev.append({"t": t, "event": "node_status", "node": CLOUD, "status": cloud})
    return ev


def client(name: str = "alice", start: str = "device", **register: Any) -> Event:
    return {"t": 0, "event": "client", "register": {"name": name, **register}, "start": start}


def device_sample(
    rng: random.Random, fps: float, sd: float, *, probes: dict[str, float] | None = None
) -> dict[str, Any]:
    f = _clip(rng.gauss(fps, sd), 1.0, 240.0)
    p50 = 1000.0 / f
    s: dict[str, Any] = {
        "fps": _r(f),
        "frame_ms": [_r(p50), _r(p50 * 1.35), _r(p50 * 1.7)],
        "rtt_sim_ms": _r(_clip(rng.gauss(20.0, 3.0), 1.0)),
        "rss_bytes": 1_360_000_000 + rng.randrange(0, 20_000_000),
        "rx_bytes_per_s": _r(_clip(rng.gauss(40_000, 5_000), 0.0)),
        "tx_bytes_per_s": _r(_clip(rng.gauss(6_000, 500), 0.0)),
        "cpu": _r(_clip(rng.gauss(0.7, 0.05), 0.0, 1.0), 3),
        "downlink_bps": 7.21e6,
    }
    if probes:
        s["probes"] = [[n, _r(_clip(rng.gauss(m, m * 0.12), 0.5))] for n, m in probes.items()]
    return s


def remote_sample(
    rng: random.Random,
    node: str,
    fps: float,
    sd: float,
    rtt: float,
    *,
    probes: dict[str, float] | None = None,
) -> dict[str, Any]:
    f = _clip(rng.gauss(fps, sd), 1.0, 240.0)
    p50 = 1000.0 / f
    s: dict[str, Any] = {
        "fps": _r(f),
        "frame_ms": [_r(p50), _r(p50 * 1.2), _r(p50 * 1.5)],
        "rtt_sim_ms": _r(_clip(rng.gauss(20.0, 3.0), 1.0)),
        "rtt_node_ms": _r(_clip(rng.gauss(rtt, rtt * 0.15), 0.5)),
        "rss_bytes": 1_070_000_000 + rng.randrange(0, 20_000_000),
        "rx_bytes_per_s": _r(_clip(rng.gauss(290_000, 20_000), 0.0)),
        "tx_bytes_per_s": _r(_clip(rng.gauss(9_000, 500), 0.0)),
        "cpu": _r(_clip(rng.gauss(0.25, 0.04), 0.0, 1.0), 3),
        "stream_bitrate_bps": _r(_clip(rng.gauss(2.0e6, 1.5e5), 0.0)),
        "downlink_bps": 7.21e6,
    }
    others = {n: m for n, m in (probes or {}).items() if n != node}
    if others:
        s["probes"] = [[n, _r(_clip(rng.gauss(m, m * 0.12), 0.5))] for n, m in others.items()]
    return s


def telemetry(t: float, at: str, sample: dict[str, Any], name: str = "alice") -> Event:
    return {"t": t, "event": "telemetry", "client": name, "at": at, "sample": sample}


# -- the traces --------------------------------------------------------------------------
def threshold_low_fps() -> list[Event]:
    """The device renders 45 FPS, then from t=30 s only 18 FPS (thermal throttling).

    Edge and cloud stream 30 FPS; edge is ~15 ms away, cloud ~85 ms.
    """
    rng = random.Random(5001)
    duration = 120
    ev = [{"t": 0, "event": "meta", "description": threshold_low_fps.__doc__.split("\n")[0]}]
    ev += nodes(duration)
    ev.append(client())
    rtts = {EDGE: 15.0, CLOUD: 85.0}
    for t in range(1, duration + 1):
        fps = 45.0 if t < 30 else 18.0
        ev.append(telemetry(t, "device", device_sample(rng, fps, 3.0, probes=rtts)))
        ev.append(telemetry(t, EDGE, remote_sample(rng, EDGE, 30.0, 1.5, 15.0, probes=rtts)))
        ev.append(telemetry(t, CLOUD, remote_sample(rng, CLOUD, 30.0, 1.5, 85.0, probes=rtts)))
    return ev


def noisy_fps() -> list[Event]:
    """FPS noisy around the 25 FPS threshold everywhere (26 ± 6), with one-second dips to 8.

    Neither placement is clearly better: a policy without hysteresis flaps.
    """
    rng = random.Random(5002)
    duration = 300
    ev = [{"t": 0, "event": "meta", "description": noisy_fps.__doc__.split("\n")[0]}]
    ev += nodes(duration)
    ev.append(client())
    rtts = {EDGE: 15.0, CLOUD: 85.0}
    for t in range(1, duration + 1):
        dip = rng.random() < 0.05
        d = device_sample(rng, 8.0 if dip else 26.0, 0.5 if dip else 6.0, probes=rtts)
        ev.append(telemetry(t, "device", d))
        dip = rng.random() < 0.05
        e = remote_sample(rng, EDGE, 8.0 if dip else 26.0, 0.5 if dip else 6.0, 15.0, probes=rtts)
        ev.append(telemetry(t, EDGE, e))
        ev.append(telemetry(t, CLOUD, remote_sample(rng, CLOUD, 26.0, 6.0, 85.0, probes=rtts)))
    return ev


def missing_stale() -> list[Event]:
    """The device is terrible (10 FPS) but its telemetry is mostly missing or stale.

    0-60 s: one sample every 4 s; 60-90 s: bursts of 2 samples 10 s apart;
    90-130 s: nothing (stale); 130-150 s: samples with every optional field unknown.
    """
    rng = random.Random(5003)
    ev = [{"t": 0, "event": "meta", "description": missing_stale.__doc__.split("\n")[0]}]
    ev += nodes(150)
    ev.append(client())
    rtts = {EDGE: 15.0, CLOUD: 85.0}
    times = [*range(4, 61, 4), 70, 71, 80, 81, 90]
    for t in times:
        ev.append(telemetry(t, "device", device_sample(rng, 10.0, 1.0, probes=rtts)))
    for t in range(130, 151):
        # Only the required fields: FPS looks fine, everything else is unknown.
        f = _clip(rng.gauss(40.0, 2.0), 1.0)
        ev.append(telemetry(t, "device", {"fps": _r(f), "frame_ms": [25.0, 30.0, 35.0]}))
    return ev


def battery_level(t: float) -> tuple[float, bool]:
    """The battery path: level (before gauge noise) and whether a charger is on."""
    if t < 60:
        return 0.20 - 0.05 * t / 60.0, False  # draining: 15 % at t=60
    if t < 150:
        return 0.15 - 0.025 * (t - 60) / 90.0, False  # slower (offloaded, in the expected run)
    if t < 250:
        return 0.125 + 0.0005 * (t - 150), t != 200  # charger; unplugged for 1 s at t=200
    return 0.175 - 0.0001 * (t - 250), False  # unplugged again, slow drain, stays > 15 %


def battery() -> list[Event]:
    """A phone draining from 20 %: 15 % at t=60, charger at t=150 (1 s glitch at t=200),
    unplugged at t=250 at 17.5 %, draining slowly. The gauge wobbles by ±0.3 %.
    """
    rng = random.Random(5004)
    duration = 400
    ev = [{"t": 0, "event": "meta", "description": " ".join(battery.__doc__.split())}]
    ev += nodes(duration)
    ev.append(client())
    rtts = {EDGE: 15.0, CLOUD: 85.0}
    for t in range(1, duration + 1):
        level, charging = battery_level(t)
        level = round(_clip(level + rng.uniform(-0.003, 0.003), 0.0, 1.0), 3)
        d = device_sample(rng, 40.0, 3.0, probes=rtts)
        d.update(battery_level=level, battery_charging=charging, battery_power_w=4.0)
        ev.append(telemetry(t, "device", d))
        e = remote_sample(rng, EDGE, 30.0, 1.0, 15.0, probes=rtts)
        e.update(battery_level=level, battery_charging=charging, battery_power_w=2.2)
        ev.append(telemetry(t, EDGE, e))
    return ev


def score_weak_device() -> list[Event]:
    """A weak device (12 FPS) with an edge node 12 ms away and a cloud node 70 ms away.

    Probes measure both; nodes stream 30 FPS. No battery (unknown).
    """
    rng = random.Random(5005)
    duration = 90
    ev = [{"t": 0, "event": "meta", "description": score_weak_device.__doc__.split("\n")[0]}]
    ev += nodes(duration)
    ev.append(client())
    rtts = {EDGE: 12.0, CLOUD: 70.0}
    for t in range(1, duration + 1):
        ev.append(telemetry(t, "device", device_sample(rng, 12.0, 2.0, probes=rtts)))
        ev.append(telemetry(t, EDGE, remote_sample(rng, EDGE, 30.0, 1.0, 12.0, probes=rtts)))
        ev.append(telemetry(t, CLOUD, remote_sample(rng, CLOUD, 30.0, 1.0, 70.0, probes=rtts)))
    return ev


BUILDERS: dict[str, Callable[[], list[Event]]] = {
    "threshold_low_fps": threshold_low_fps,
    "noisy_fps": noisy_fps,
    "missing_stale": missing_stale,
    "battery": battery,
    "score_weak_device": score_weak_device,
}


def render(events: list[Event]) -> str:
    return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)


def write_all(directory: Path = TRACES) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        (directory / f"{name}.jsonl").write_text(render(build()))


def test_committed_traces_match_their_generators() -> None:
    for name, build in BUILDERS.items():
        path = TRACES / f"{name}.jsonl"
        assert path.exists(), f"{path} missing: run python {__file__}"
        assert path.read_text() == render(build()), f"{path} is stale: run python {__file__}"


if __name__ == "__main__":
    write_all(TRACES)
    print(f"wrote {len(BUILDERS)} traces to {TRACES}", file=sys.stderr)
