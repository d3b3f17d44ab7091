"""Loopback mode: no namespaces, no emulation, and the testbed says so.

Built explicitly with ``emulated=False`` (as a non-root run would get
automatically), plus a real non-root process showing the automatic choice.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from experiments.testbed import LinkConditions, Testbed, TestbedError
from experiments.testbed.probe import run_client, start_server

REPO = Path(__file__).resolve().parent.parent


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_loopback_mode_runs_processes_and_records_unapplied_links() -> None:
    async with Testbed(emulated=False) as tb:
        assert tb.emulated is False
        assert tb.note.startswith("NO NETWORK EMULATION")
        sim = await tb.add_host("sim", "cloud")
        phone = await tb.add_host("phone", "home")
        assert sim.address == phone.address == "127.0.0.1"
        assert sim.netns is None and sim.command(["true"]) == ["true"]
        with pytest.raises(TestbedError, match="already exists"):
            await tb.add_host("sim", "edge")
        await tb.set_link("home", "cloud", LinkConditions(delay_ms=40))
        assert tb.link("cloud", "home").delay_ms == 40
        assert [e.applied for e in tb.events] == [False, False]
        assert await tb.stats() == {}
        described = tb.describe()
        assert described["emulated"] is False and "NO NETWORK EMULATION" in described["note"]
        port = str(_free_udp_port())
        echo = await start_server(sim, "udp-echo", "--port", port, "--duration", "30")
        result = await run_client(
            phone, "udp-ping", "--target", sim.address, "--port", port, "--count", "5",
            "--interval", "0.01",
        )  # fmt: skip
        rtts = result["rtt_ms"][sim.address]
        assert all(r is not None and r < 40 for r in rtts)  # the 40 ms link was not applied
        assert await phone.forward(8080) == ("127.0.0.1", 8080)
        env_proc = await sim.spawn(
            [sys.executable, "-c", "import os; print(os.environ['SHIFTCRAFT_TESTBED_EMULATED'])"],
            stdout=asyncio.subprocess.PIPE,
        )
        assert (await env_proc.communicate())[0].strip() == b"0"
    assert echo.returncode is not None  # stopped by close()


def test_a_non_root_process_falls_back_to_loopback_and_says_why() -> None:
    """Not root: the default is loopback, said in the note, and asking for
    emulation is a clear error. As root (CI) the check runs as `nobody`."""
    code = (
        "from experiments.testbed import Testbed, TestbedError\n"
        "tb = Testbed(); print(tb.emulated); print(tb.note)\n"
        "try:\n    Testbed(emulated=True)\nexcept TestbedError as e:\n    print(e)\n"
    )
    # The checkout may sit in a private (0700) folder, as a mktemp clone does:
    # give the unprivileged process a world-readable copy of the package.
    tmp = Path(tempfile.mkdtemp(prefix="sc-nonroot-"))
    try:
        for package in ("experiments", "shiftcraft"):  # (the testbed uses shiftcraft.process)
            shutil.copytree(
                REPO / package, tmp / package, ignore=shutil.ignore_patterns("__pycache__")
            )
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        # (not root already: this process's own rights will do)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        proc = subprocess.run(
            [*(drop if os.geteuid() == 0 else []), sys.executable, "-c", code],
            cwd=tmp, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"},
        )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    emulated, note, error = proc.stdout.splitlines()
    assert emulated == "False"
    assert note.startswith("NO NETWORK EMULATION") and "not root" in note
    assert "unavailable: not root" in error
