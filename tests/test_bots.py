"""Headless bots (experiments/bots) against a real server process."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from client.connection import SimConnection
from experiments.bots.behaviours import BEHAVIOURS, BehaviourOptions, Build, Walk
from experiments.bots.runner import RunConfig, make_bots, run_bots
from shiftcraft import protocol as P
from world.codec import decode_section

REPO = Path(__file__).resolve().parent.parent


async def sample_positions(bots, out: dict[str, list], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for bot in bots:
            if bot.stats.joined:
                out.setdefault(bot.name, []).append(bot.pos)
        await asyncio.sleep(0.1)


async def test_walk_bots_move_and_stay_in_their_box(module_server):
    box = 6.0
    cfg = RunConfig(
        url=module_server.url,
        count=3,
        behaviour="walk",
        seconds=6.0,
        name_prefix="walker",
        join_rate=10.0,
        options=BehaviourOptions(box=box),
    )
    bots = make_bots(cfg)
    positions: dict[str, list] = {}
    done = asyncio.Event()
    sampler = asyncio.create_task(sample_positions(bots, positions, done))
    summary = await run_bots(cfg, bots=bots)
    done.set()
    await sampler

    assert summary.joined == 3 and summary.failed == 0 and summary.disconnected == 0
    for bot in bots:
        track = positions[bot.name]
        sx, _, sz = bot.spawn
        path = sum(math.dist(a, b) for a, b in itertools.pairwise(track))
        assert path > 6.0, f"{bot.name} barely moved ({path:.1f} blocks)"
        assert len({(round(x, 1), round(z, 1)) for x, _, z in track}) > 20
        # The walker turns back inside the edge; overshoot is bounded by its turn.
        far = max(max(abs(x - sx), abs(z - sz)) for x, _, z in track)
        assert far <= box + 2.5, f"{bot.name} left its box: {far:.1f} > {box}"


async def observe_blocks(url: str, name: str, positions) -> dict[tuple, int]:
    """What a fresh connection sees at ``positions`` once its sections stop streaming."""
    sections: dict[tuple, object] = {}
    loop = asyncio.get_running_loop()
    last_section = loop.time()
    async with await SimConnection.connect(url, name) as conn, asyncio.timeout(20.0):
        # Until sections stop coming for a second (a standing client only
        # gets heartbeat updates, so count time, not updates).
        while not sections or loop.time() - last_section < 1.0:
            try:
                async with asyncio.timeout(0.25):
                    msg = await conn.recv()
            except TimeoutError:
                continue
            if not isinstance(msg, P.Update):
                continue
            for sx, sy, sz, data in msg.sections:
                sections[(sx, sy, sz)] = decode_section(data)
                last_section = loop.time()
            for x, y, z, block in msg.blocks:
                arr = sections.get((x >> 4, y >> 4, z >> 4))
                if arr is not None:
                    arr[y & 15, z & 15, x & 15] = block
    seen = {}
    for x, y, z in positions:
        arr = sections.get((x >> 4, y >> 4, z >> 4))
        seen[(x, y, z)] = None if arr is None else int(arr[y & 15, z & 15, x & 15])
    return seen


async def test_build_bot_edits_are_acknowledged_and_in_the_world(module_server):
    cfg = RunConfig(
        url=module_server.url,
        count=1,
        behaviour="build",
        seconds=5.0,
        name_prefix="builder",
        options=BehaviourOptions(box=6.0, edit_interval=0.3),
    )
    bots = make_bots(cfg)
    summary = await run_bots(cfg, bots=bots)
    assert summary.joined == 1
    assert summary.edits_sent >= 6
    assert summary.edits_ok >= 4
    assert summary.edits_ok + summary.edits_rejected + summary.edits_pending == summary.edits_sent
    assert summary.edit_latency_p50_ms is not None and summary.edit_latency_p50_ms < 1000

    bot = bots[0]
    behaviour = bot.behaviour
    assert isinstance(behaviour, Build)
    in_flight = {req.pos for req in bot.pending_requests}
    expected = {p[:3]: p[3] for p in behaviour.placed if p[:3] not in in_flight}
    assert expected, "the bot kept none of its blocks"
    seen = await observe_blocks(module_server.url, "builder_observer", expected)
    assert seen == expected


async def test_runner_summary_counts(module_server):
    cfg = RunConfig(
        url=module_server.url,
        count=3,
        behaviour="build",
        seconds=4.0,
        name_prefix="counted",
        join_rate=20.0,
        ping_interval=0.5,
    )
    t0 = time.monotonic()
    summary = await run_bots(cfg)
    assert time.monotonic() - t0 < 10.0
    assert (summary.bots, summary.joined, summary.failed, summary.disconnected) == (3, 3, 0, 0)
    assert summary.warm == 3
    # ~20 input frames per second per bot for ~4 s (minus the join ramp).
    assert 3 * 20 * 2.5 <= summary.frames_sent <= 3 * 20 * 4.5
    assert summary.updates >= 3 * 20 * 2
    assert summary.sections > 0
    assert summary.bytes_in > summary.bytes_out > 0
    assert summary.messages_out >= summary.frames_sent + summary.edits_sent
    assert summary.edits_sent > 0
    assert summary.edits_ok + summary.edits_rejected + summary.edits_pending == summary.edits_sent
    assert sum(summary.rejected_reasons.values()) == summary.edits_rejected
    assert summary.rtt_p50_ms is not None and summary.rtt_p50_ms < 500
    assert "3/3 joined" in summary.text()
    json.dumps(summary.to_dict())


async def test_runner_counts_join_failures():
    cfg = RunConfig(url="ws://127.0.0.1:1", count=4, seconds=1.0, join_rate=100.0)
    summary = await run_bots(cfg)
    assert summary.joined == 0 and summary.failed == 4
    assert summary.failures == {"refused": 4}


async def test_bots_are_seeded_per_name():
    cfg = RunConfig(url="ws://unused", count=3, seed=42)
    a, b = make_bots(cfg), make_bots(cfg)
    assert [x.rng.random() for x in a] == [y.rng.random() for y in b]
    assert len({x.rng.random() for x in make_bots(cfg)}) == 3
    other = make_bots(RunConfig(url="ws://unused", count=3, seed=43))
    assert [x.rng.random() for x in make_bots(cfg)] != [y.rng.random() for y in other]
    assert {"walk", "build"} <= set(BEHAVIOURS)
    assert issubclass(BEHAVIOURS["build"], Walk)


def test_bots_command_stops_cleanly_on_sigint(module_server):
    cmd = [
        sys.executable,
        "-m",
        "shiftcraft",
        "bots",
        "--server",
        module_server.url,
        "--count",
        "2",
        "--behaviour",
        "walk",
        "--seconds",
        "0",
        "--name-prefix",
        "cli",
        "--progress-every",
        "0.2",
        "--json",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30.0
        for line in proc.stderr:
            progress = json.loads(line)
            assert progress["event"] == "progress"
            if progress["joined"] == 2 or time.monotonic() > deadline:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["joined"] == 2 and summary["failed"] == 0
    assert summary["frames_sent"] > 20
    assert summary["disconnected"] == 0


def test_services_started_by_a_killed_parent_die_with_it(tmp_path) -> None:
    """`die_with_parent` (the launcher's and the testbed's preexec_fn): a
    benchmark killed with SIGKILL leaves no service running."""
    pidfile = tmp_path / "child.pid"
    parent_code = (
        "import subprocess, sys, time\n"
        "from shiftcraft.process import die_with_parent\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " preexec_fn=die_with_parent)\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        os.kill(child, 0)  # running
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
            with open(f"/proc/{child}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break  # dead, waiting for init to reap it
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the child outlived its killed parent")
