"""`shiftcraft demo` (the README's main job): every service a real process, and the
battery policy visibly moves the player's rendering to the edge and back (issue 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(900)  # a first renderer compile on 2 busy cores takes minutes


def test_demo_migrates_by_policy_and_stops_cleanly(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "shiftcraft", "demo", "--data", str(tmp_path / "data"),
        "--port", "0", "--scheduler-port", "0", "--node-port", "0",
        "--client-metrics-port", "0", "--bots", "1", "--headless", "--quiet-server",
        "--charge-after", "4", "--status-every", "5", "--seconds", "75",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=800)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    # Battery low and draining: offloaded by the scheduler (a decision, not a timer) ...
    assert "switch local -> edge-1: ok (scheduler:" in out, out
    # ... then the (scripted) charger brings it back.
    assert "plugs the phone's charger in" in out, out
    assert "switch edge-1 -> local: ok (scheduler:" in out, out
    assert out.rstrip().endswith("stopped"), out
    decisions = (tmp_path / "data" / "decisions.jsonl").read_text()
    assert "battery" in decisions
