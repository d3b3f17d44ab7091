"""``shiftcraft experiment run`` end to end: real services, a results folder, a report.

The scenarios are in tests/data/: ``experiment-bots-only`` (sim, scheduler,
bots: seconds) on loopback and, as root, on the emulated testbed;
``experiment-client`` adds a real headless client with CPU, battery and
charger actions. Interrupting a run stops every process it started.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"


def experiment(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shiftcraft", "experiment", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent, the runner, has exited).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def events_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "mode",
    [
        "loopback",
        pytest.param(
            "emulated",
            marks=pytest.mark.requires("root"),
        ),
    ],
)
def test_bots_scenario_end_to_end(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "results"
    scenario = str(DATA / "experiment-bots-only.yaml")
    proc = experiment("run", scenario, "--out", str(out), f"--{mode}")
    assert proc.returncode == 0, proc.stderr
    assert "measure" in proc.stderr and "stopping" in proc.stderr  # progress on stderr
    run = out / "runs" / "threshold-r1"
    for name in ("metrics.csv", "events.jsonl", "manifest.json", "logs/sim.log",
                 "logs/scheduler.log", "logs/bots-tbot.log", "bots-tbot.json",
                 "scheduler-config.json"):  # fmt: skip
        assert (run / name).exists(), name
    assert (out / "scenario.yaml").exists() and (out / "scenario.json").exists()

    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["time", "t", "run", "node", "metric", "labels", "value"]
    assert {r["node"] for r in rows} == {"sim", "scheduler"}
    ts = sorted({float(r["t"]) for r in rows if r["node"] == "sim"})
    assert ts[0] < 0 < ts[-1] <= 4.5 and len(ts) >= 4  # warm-up then ~1 scrape a second
    players = [float(r["value"]) for r in rows
               if r["metric"] == "shiftcraft_server_players" and float(r["t"]) > 1]  # fmt: skip
    assert players and max(players) == 3  # the three bots were connected

    events = events_of(run)
    kinds = {e["kind"] for e in events}
    assert {"phase", "link", "action", "node"} <= kinds
    action = next(e for e in events if e["kind"] == "action")
    assert action["action"] == "set_link" and action["ok"] and 1.9 < action["t"] < 2.6
    assert action["applied"] is (mode == "emulated")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["ok"] and manifest["emulated"] is (mode == "emulated") and manifest["seed"] == 3
    assert manifest["services"]["sim"]["exit_code"] == 0
    assert manifest["bots"]["bots:tbot"]["joined"] == 3
    assert manifest["versions"]["python"] and manifest["host"]["cpus"]

    report = (out / "report.md").read_text()
    assert ("NO NETWORK EMULATION" in report) is (mode == "loopback")
    png = out / "plots" / "threshold-r1-sim.png"
    assert png.stat().st_size > 5000 and "plots/threshold-r1-sim.png" in report
    # The report is rebuilt from the folder alone.
    (out / "report.md").unlink()
    assert experiment("report", str(out)).returncode == 0
    assert (out / "report.md").read_text().startswith("# Experiment report: experiment-bots-only")


def test_interrupt_stops_every_process(tmp_path: Path) -> None:
    out = tmp_path / "results"
    # A long measurement: the interrupt must land in it, however slow the machine.
    scenario = tmp_path / "long.yaml"
    text = (DATA / "experiment-bots-only.yaml").read_text()
    scenario.write_text(text.replace("duration: 4s", "duration: 120s"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "shiftcraft", "experiment", "run",
         str(scenario), "--out", str(out), "--loopback"],
        cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if "measure" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(30) == 130, rest
    assert "interrupted" in rest
    run = out / "runs" / "threshold-r1"
    pids = [e["pid"] for e in events_of(run) if e["kind"] == "node" and e["event"] == "started"]
    assert len(pids) == 3
    time.sleep(0.5)
    assert not [p for p in pids if alive(p)]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["ok"] is False and "Cancelled" in manifest["error"]


def test_client_scenario_end_to_end(tmp_path: Path) -> None:
    """A real headless client: scraped /metrics, CPU limit, battery and charger via /control."""
    out = tmp_path / "results"
    proc = experiment(
        "run", str(DATA / "experiment-client.yaml"), "--out", str(out), "--loopback", timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    run = out / "runs" / "static-local-r1"
    with open(run / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["node"] == "alice"]
    fps = [float(r["value"]) for r in rows if r["metric"] == "shiftcraft_client_fps"]
    assert fps and max(fps) > 0
    battery = {float(r["t"]): float(r["value"]) for r in rows
               if r["metric"] == "shiftcraft_client_battery_level_ratio"}  # fmt: skip
    assert battery and min(v for t, v in battery.items() if t > 3) < 0.31  # set_battery 30 %
    actions = {e["action"]: e for e in events_of(run) if e["kind"] == "action"}
    assert set(actions) == {"set_cpu", "set_battery", "plug"}
    assert actions["set_battery"]["ok"] and actions["plug"]["ok"], actions
    report = (out / "report.md").read_text()
    assert (out / "plots" / "static-local-r1-alice.png").stat().st_size > 5000
    assert "### alice" in report and "Per-phase statistics" in report


def test_validate_and_broken_scenario(tmp_path: Path) -> None:
    ok = experiment("validate", "smoke")
    assert ok.returncode == 0 and "ok: smoke" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nduration: 5\nnodes: {sim: {}}\n")  # a bare number: no unit
    proc = experiment("run", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert f"{bad}:2" in proc.stderr  # file:line of the problem
    assert not (tmp_path / "out").exists()  # nothing started, nothing written
