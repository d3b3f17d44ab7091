"""The cgroup CPU limiter really limits a busy process, and changes at runtime."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from experiments.testbed.cpu import CpuLimit, CpuLimitUnavailable, detect, limit_cpu

needs_root = pytest.mark.requires("root")

BUSY = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end: pass\n"


def cpu_share_over(proc: psutil.Process, seconds: float) -> float:
    """CPUs' worth of time the process used over a window."""
    c0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    time.sleep(seconds)
    return (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0)


@needs_root
def test_limit_holds_a_busy_process_to_its_share_and_changes_at_runtime() -> None:
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        proc = psutil.Process(busy.pid)
        with limit_cpu(busy.pid, 0.25) as limit:
            assert busy.pid in limit.pids()
            time.sleep(0.1)
            used = cpu_share_over(proc, 1.5)
            # Upper bound is the point; the lower one is loose since the
            # machine's 2 cores are shared with other work.
            assert 0.10 <= used <= 0.25 * 1.15, used
            limit.set_share(0.6)
            time.sleep(0.1)
            used = cpu_share_over(proc, 1.5)
            assert 0.30 <= used <= 0.6 * 1.15, used
            assert limit.stat().get("nr_throttled", 0) > 0
            path = limit.path
        assert not path.exists()  # removed, and the process moved back
        assert busy.poll() is None
    finally:
        busy.kill()
        busy.wait()


@needs_root
def test_limit_applies_to_children_and_close_is_idempotent() -> None:
    with CpuLimit(0.5) as limit:
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(5)"], start_new_session=True
        )
        try:
            limit.add(child.pid)
            assert limit.pids() == [child.pid]
            with pytest.raises(ValueError, match="positive"):
                limit.set_share(0)
            limit.set_share(None)  # unlimited, still grouped
        finally:
            child.kill()
            child.wait()
    limit.close()


def test_unavailable_cgroups_give_a_clear_error(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / /proc rw,relatime shared:12 - proc proc rw\n")
    with pytest.raises(CpuLimitUnavailable, match="no cgroup filesystem is mounted"):
        detect(mountinfo)
    v2_only_empty = tmp_path / "empty-cgroup2"
    v2_only_empty.mkdir()
    (v2_only_empty / "cgroup.controllers").write_text("memory pids\n")
    mountinfo.write_text(
        f"30 1 0:26 / {v2_only_empty} rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    with pytest.raises(CpuLimitUnavailable, match="has no cpu controller"):
        detect(mountinfo)


@needs_root
async def test_testbed_limits_a_host_process_and_removes_the_cgroup_on_close() -> None:
    import asyncio

    from experiments.testbed import Testbed

    async with Testbed() as tb:
        phone = await tb.add_host("phone", "home")
        busy = await phone.spawn([sys.executable, "-c", BUSY])
        limit = tb.limit_cpu(busy.pid, 0.2)
        await asyncio.sleep(0.1)
        used = await asyncio.to_thread(cpu_share_over, psutil.Process(busy.pid), 1.0)
        assert used <= 0.2 * 1.15, used
        path = limit.path
    assert not path.exists()
    assert busy.returncode is not None
