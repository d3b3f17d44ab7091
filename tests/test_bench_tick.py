"""The tick benchmark end to end: real server and bot processes, tiny run.

Behaviour only (keys, sane values, clean process handling); the speed
figures belong to `shiftcraft bench tick`, not to timed assertions.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
KEYS = ("bots", "tps", "tick_p50_ms", "tick_p99_ms", "bytes_per_s_per_bot")


def bench_cmd(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "shiftcraft",
        "bench",
        "tick",
        "--bots",
        "3",
        "--seconds",
        "2",
        "--settle",
        "0.5",
        "--json",
        *extra,
    ]


def leftovers(stderr: str) -> list[str]:
    """Processes still running that belong to this bench run (its server URL or db)."""
    marks = re.findall(r"ws://127\.0\.0\.1:\d+", stderr) + re.findall(r"db in (\S+)\)", stderr)
    assert marks, stderr
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if any(mark in cmdline for mark in marks):
            found.append(cmdline)
    return found


def test_tick_bench_end_to_end():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        bench_cmd(), cwd=REPO, capture_output=True, text=True, timeout=240, env=env
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert key in result, key
    assert result["bench"] == "tick"
    assert result["bots"] == 3 and result["joined"] == 3 and result["warm"] == 3
    assert 15.0 <= result["tps"] <= 21.0
    assert 0 < result["tick_p50_ms"] <= result["tick_p99_ms"] <= result["tick_max_ms"]
    assert result["ticks_measured"] >= 30
    assert result["bytes_per_s_per_bot"] > 0
    assert result["bot_summaries_ok"] == 1  # the bots left cleanly and reported
    assert leftovers(out.stderr) == []
    db_dir = re.search(r"db in (\S+)\)", out.stderr).group(1)
    assert not Path(db_dir).exists()


def test_tick_bench_interrupted_leaves_no_processes():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        # A long measurement: the interrupt must land in it, however slow the machine.
        bench_cmd("--warmup-timeout", "60", "--seconds", "120"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("measuring") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = "".join(lines) + err
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert leftovers(stderr) == []
