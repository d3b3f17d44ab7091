"""The report builds from a synthetic results folder alone: plots, tables, CIs.

The folder is written with the runner's own writers (`MetricsTable`,
`EventLog`), with numbers chosen so every figure in the tables is known.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from experiments.report.build import build_report
from experiments.report.data import ReportError
from experiments.runner.collect import MetricsTable, Sample
from experiments.runner.events import EventLog

T0 = 1_700_000_000.0
DURATION = 20


def write_run(folder: Path, label: str, variant: str, fps_before: float, fps_after: float) -> None:
    """alice: local until a migration at t=10 s, then streamed from edge-1."""
    run_dir = folder / "runs" / label
    run_dir.mkdir(parents=True)
    table = MetricsTable(run_dir / "metrics.csv", label, T0)
    rx = mem = 0.0
    for t in range(-2, DURATION):
        after = t >= 10
        # FPS alternates ±5 around its mean before (range 10) and is steady after.
        fps = fps_after if after else fps_before + (5 if t % 2 else -5)
        rx += 401_250 if after else 131_250  # 3.21 / 1.05 Mbit/s
        mem = 1.07e9 if after else 1.36e9
        table.write(
            T0 + t,
            "alice",
            [
                Sample("shiftcraft_client_fps", "", fps),
                Sample("shiftcraft_client_resident_memory_bytes", "", mem),
                Sample("shiftcraft_client_received_bytes_total", "link=sim", rx),
                Sample("shiftcraft_client_rtt_sim_seconds", "", 0.040),
                Sample("shiftcraft_client_battery_level_ratio", "", 0.5 - 0.001 * (t + 2)),
                Sample("shiftcraft_client_frame_interval_seconds_sum", "", (t + 2) * 1.0),
                Sample("shiftcraft_client_frame_interval_seconds_count", "", (t + 2) * 20.0),
            ],
        )
        table.write(T0 + t, "sim", [Sample("shiftcraft_server_tick_duration_seconds_sum", "",
                                           (t + 2) * 0.5), Sample(
            "shiftcraft_server_tick_duration_seconds_count", "", (t + 2) * 20.0)])  # fmt: skip
    table.close()
    events = EventLog(run_dir / "events.jsonl", label, T0)
    events.write("phase", T0 - 2, phase="warmup")
    events.write("action", T0 + 5, action="set_cpu", client="alice", share=0.25, ok=True)
    events.write("decision", T0 + 8, event="migrate", client="alice", decision=1,
                 reason="low_fps", **{"from": "device", "to": "edge-1"})  # fmt: skip
    events.write("migration", T0 + 10, client="alice", decision=1, outcome="ok", gap_ms=12.5,
                 duration_ms=800, **{"from": "device", "to": "edge-1"})  # fmt: skip
    events.close()
    manifest = {
        "run": label, "variant": {"name": variant, "policy": variant}, "repeat": 1, "seed": 1,
        "emulated": False, "emulation_note": "NO NETWORK EMULATION: test", "t0": T0,
        "warmup_s": 2, "duration_s": DURATION, "ok": True, "notes": [],
        "services": {"alice": {"kind": "client", "location": "device", "log": "logs/alice.log"},
                     "sim": {"kind": "sim", "location": "cloud", "log": "logs/sim.log"}},
    }  # fmt: skip
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    write_run(out, "threshold-r1", "threshold", 20.0, 50.0)
    write_run(out, "threshold-r2", "threshold", 22.0, 50.0)
    write_run(out, "static-local-r1", "static-local", 18.0, 18.0)
    scenario = {"name": "offload-constrained-device", "description": "synthetic",
                "runs": ["threshold-r1", "threshold-r2", "static-local-r1"]}  # fmt: skip
    (out / "scenario.json").write_text(json.dumps(scenario))
    return out


def test_report_has_plots_and_known_tables(folder: Path) -> None:
    report = build_report(folder)
    md = report.read_text()
    pngs = sorted((folder / "plots").glob("*.png"))
    assert {p.name for p in pngs} == {
        "comparison.png", "threshold-r1-alice.png", "threshold-r2-alice.png",
        "static-local-r1-alice.png", "threshold-r1-sim.png", "threshold-r2-sim.png",
        "static-local-r1-sim.png",
    }  # fmt: skip
    for p in pngs:
        assert p.stat().st_size > 5000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({p.relative_to(folder)})" in md  # linked from the report
    assert "NO NETWORK EMULATION" in md
    # The reference study's before/after table, first run: FPS 20 → 50, range 10 → 0 ...
    table = md.split("Before / after the first migration")[1].split("\n\n")[1]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:5]]
            for r in table.splitlines()[2:]}  # fmt: skip
    assert rows["FPS mean"] == ["20.0", "50.0", "+30.0"]
    assert rows["FPS range (max − min)"] == ["10.0", "0.0", "-10.0"]
    assert rows["Memory mean (GB)"] == ["1.36", "1.07", "-0.29"]
    assert rows["Bandwidth received (Mbit/s)"] == ["1.05", "3.21", "+2.16"]
    assert rows["RTT to sim (ms)"] == ["40.0", "40.0", "0.0"]
    assert rows["Frame time mean (ms)"] == ["50.0", "50.0", "0.0"]
    assert "CLOUDSTARS D2.1" in md
    # Migrations table: time, route, outcome, policy reason, gap.
    assert re.search(r"\| 10\.0 \| device → edge-1 \| ok \| low_fps \| 12\.5 \| 800 \|", md)
    # Per-phase statistics: phase 1 on the device, 10 samples, FPS 15-25, p5 / p95.
    row = "| 1: device [0–10 s] | FPS (frames/s) | 10 | 20.0 | 20.0 | 15.0 – 25.0 | 15.0 | 25.0 |"
    assert row in md


def test_comparison_confidence_intervals(folder: Path) -> None:
    md = build_report(folder).read_text()
    section = md.split("## Comparison across variants")[1].split("## Run")[0]
    threshold = next(line for line in section.splitlines() if line.startswith("| threshold |"))
    # Per-run FPS means over 20 s: (20*10 + 50*10)/20 = 35 and (22*10 + 500)/20 = 36;
    # mean 35.5, s = 0.7071, t(0.975, 1) = 12.706: half-width 6.35.
    assert "| 2 | 35.5 ± 6.4 |" in threshold
    static = next(line for line in section.splitlines() if line.startswith("| static-local |"))
    assert "18.0 (n=1, no CI)" in static
    assert "one repeat there is no interval" in section


def test_not_a_results_folder(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not a results folder"):
        build_report(tmp_path)


def test_report_cli_rebuilds(folder: Path) -> None:
    from experiments.cli import main

    (folder / "report.md").unlink(missing_ok=True)
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.md").exists()
    assert main(["report", str(folder / "nope")]) == 1
