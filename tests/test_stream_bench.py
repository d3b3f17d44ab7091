"""The stream benchmarks run end to end and print the keys tools read (short runs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(300)

STREAM_KEYS = (
    "g2g_p50_ms", "g2g_p95_ms", "fps", "encode_p50_ms", "mbps",
    "input_to_photon_p50_ms", "input_to_photon_p95_ms",
)  # fmt: skip


def bench(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "shiftcraft", "bench", *args, "--json"],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_stream_bench_keys() -> None:
    r = bench(
        "stream", "--res", "320x180", "--seconds", "3", "--warmup", "1",
        "--generator", "flat", "--view-distance", "32",
    )  # fmt: skip
    for key in STREAM_KEYS:
        assert isinstance(r[key], float | int), (key, r)
    assert r["fps"] > 10 and r["g2g_p50_ms"] > 0 and r["input_to_photon_p50_ms"] > 0, r
    assert r["codec"] == "H264"
    # CPU in cores: each process's share is part of the machine's
    assert 0 < r["cpu_node_cores"] <= r["cpu_machine_cores"] + 0.05, r


def test_stream_capacity_bench_keys() -> None:
    r = bench(
        "stream-capacity", "--res", "160x90", "--seconds", "2", "--warmup", "1",
        "--max-sessions", "2", "--generator", "flat", "--view-distance", "32",
        "--min-fps", "5",
    )  # fmt: skip
    assert isinstance(r["sessions"], int) and r["sessions"] >= 1, r
    assert [s["sessions"] for s in r["steps"]][:1] == [1]
    step = r["steps"][0]
    assert 0 < step["node_cpu_cores"] <= step["machine_cpu_cores"] + 0.05, step
    assert step["node_cpu_ms_per_frame"] > 0, step
