"""``shiftcraft bench link-emulator --json`` runs end to end and meets its goals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.requires("root")
def test_link_emulator_bench_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shiftcraft", "bench", "link-emulator", "--json",
         "--pings", "100", "--seconds", "1.5", "--load-mbit", "10"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["bench"] == "link-emulator" and result["emulated"] is True
    for key in ("added_latency_ms", "cpu_percent_per_mbps", "rtt_error_ratio", "rate_error_ratio"):
        assert isinstance(result[key], float), key
    assert result["added_latency_ms"] <= 1.0
    assert result["rtt_error_ratio"] <= 0.10
    assert result["rate_error_ratio"] <= 0.10
    assert 0 < result["cpu_percent_per_mbps"] < 5
