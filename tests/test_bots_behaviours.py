"""Each bot behaviour does what it says, against a real server process (no mocks).

``walk`` staying in its box and ``build`` edits landing in the world are in
tests/test_bots.py; this module covers the rest of the behaviours, the
trace recorder and replay, rendering bots and the summary.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_bots import observe_blocks

from client.connection import InputSequencer, SimConnection
from experiments.bots.behaviours import BEHAVIOURS, BehaviourOptions, WalkModify
from experiments.bots.runner import RunConfig, make_bots, run_bots
from experiments.bots.tnt import Tnt
from experiments.bots.trace import Trace, TraceError, TraceRecorder, record_game
from shiftcraft import protocol as P
from world.blocks import BlockId
from world.physics import FLAG_JUMP

REPO = Path(__file__).resolve().parent.parent


async def run_tracked(cfg: RunConfig, every: float = 0.1):
    """Run the bots; returns (summary, bots, {name: [(t, pos, sections)]})."""
    bots = make_bots(cfg)
    tracks: dict[str, list] = {}
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def sample() -> None:
        while not done.is_set():
            for bot in bots:
                if bot.stats.joined:
                    tracks.setdefault(bot.name, []).append(
                        (loop.time(), bot.pos, bot.stats.sections)
                    )
            await asyncio.sleep(every)

    sampler = asyncio.create_task(sample())
    summary = await run_bots(cfg, bots=bots)
    done.set()
    await sampler
    assert summary.joined == cfg.count, summary.text()
    assert summary.failed == 0 and summary.disconnected == 0, summary.text()
    return summary, bots, tracks


def test_every_literature_behaviour_is_registered():
    names = {"idle", "walk", "explore", "walk-modify", "follow", "tnt", "replay"}
    assert names <= set(BEHAVIOURS)
    assert BEHAVIOURS["build"] is BEHAVIOURS["walk-modify"] is WalkModify


async def test_idle_stays_put(module_server):
    cfg = RunConfig(
        url=module_server.url, count=2, behaviour="idle", seconds=3.0, name_prefix="idler"
    )
    summary, bots, tracks = await run_tracked(cfg)
    for bot in bots:
        sx, sy, sz = bot.spawn
        far = max(math.hypot(x - sx, z - sz) for _, (x, _, z), _ in tracks[bot.name])
        assert far < 0.01, f"{bot.name} moved {far:.3f} blocks"
        assert abs(bot.pos[1] - sy) < 1.0
    assert summary.frames_sent >= 2 * 20 * 2  # it still sends (empty) inputs every tick
    assert summary.edits_sent == 0


async def test_walk_takes_occasional_long_trips(module_server):
    box, trip = 4.0, 14.0
    cfg = RunConfig(
        url=module_server.url,
        count=1,
        behaviour="walk",
        seconds=9.0,
        name_prefix="tripper",
        options=BehaviourOptions(box=box, trip_every=0.5, trip_after=0.0, trip_distance=trip),
    )
    summary, bots, tracks = await run_tracked(cfg)
    bot = bots[0]
    sx, _, sz = bot.spawn
    dists = [math.hypot(x - sx, z - sz) for _, (x, _, z), _ in tracks[bot.name]]
    assert max(dists) > trip - 4.0, f"never went far: {max(dists):.1f}"
    assert summary.actions_by_kind.get("trip", 0) >= 1


async def test_explore_goes_far_one_way_and_gets_new_sections(module_server):
    cfg = RunConfig(
        url=module_server.url,
        count=1,
        behaviour="explore",
        seconds=8.0,
        name_prefix="explorer",
        options=BehaviourOptions(heading=90.0),  # +x
    )
    summary, bots, tracks = await run_tracked(cfg)
    bot = bots[0]
    track = tracks[bot.name]
    sx, _, sz = bot.spawn
    x, _, z = bot.pos
    assert x - sx > 25.0, f"explored only {x - sx:.1f} blocks along +x"
    assert abs(z - sz) < 0.2 * (x - sx), "it drifted off its heading"
    # The initial interest arrives within ~2 s; after that only new terrain adds sections.
    t0 = track[0][0]
    early = next(sections for t, _, sections in track if t - t0 >= 2.0)
    assert summary.sections > early * 1.2, (early, summary.sections)


async def test_walk_modify_edits_are_acknowledged(module_server):
    cfg = RunConfig(
        url=module_server.url,
        count=2,
        behaviour="walk-modify",
        seconds=5.0,
        name_prefix="modifier",
        options=BehaviourOptions(box=6.0, edit_interval=0.3),
    )
    summary, _, _ = await run_tracked(cfg)
    assert summary.edits_sent >= 12
    assert summary.edits_acked == summary.edits_ok + summary.edits_rejected
    assert summary.edits_acked + summary.edits_pending == summary.edits_sent
    assert summary.edits_ok >= 8
    placed_or_broken = summary.actions_by_kind.get("place", 0) + summary.actions_by_kind.get(
        "break", 0
    )
    assert placed_or_broken == summary.edits_sent
    assert "acknowledged" in summary.text()


async def lead(url: str, name: str, walk_s: float, stand_s: float, yaw: float) -> tuple:
    """A plain player: walks one way for ``walk_s``, then stands; returns its last position."""
    pos: list = [None]

    def on_message(msg: P.Message) -> None:
        if isinstance(msg, P.Update):
            pos[0] = tuple(msg.pos)

    seqs = InputSequencer()
    conn = await SimConnection.connect(url, name, on_message=on_message)
    try:
        loop = asyncio.get_running_loop()
        t0 = last = loop.time()
        while (elapsed := loop.time() - t0) < walk_s + stand_s:
            # Frames cover the wall time that passed, so a loaded machine still walks as far.
            now = loop.time()
            dt, last = min(now - last, P.MAX_DT), now
            walking = elapsed < walk_s
            # Jump held while walking: a step of terrain does not stop it.
            flags = FLAG_JUMP if walking else 0
            await conn.send_inputs([seqs.frame(dt, float(walking), 0.0, yaw, 0.0, flags=flags)])
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the last acks
        return pos[0]
    finally:
        await conn.close()


async def test_follow_ends_up_near_its_target(sim_server):
    # A world of its own: the walk-modify bots of the shared one build in the way.
    follow_distance = 3.0
    cfg = RunConfig(
        url=sim_server.url,
        count=1,
        behaviour="follow",
        seconds=10.0,
        name_prefix="follower",
        options=BehaviourOptions(target="leader1", follow_distance=follow_distance),
    )
    bots = make_bots(cfg)
    leader = asyncio.create_task(lead(sim_server.url, "leader1", 4.0, 5.5, math.pi / 2))
    await asyncio.sleep(0.3)  # the leader is in before the follower looks
    summary = await run_bots(cfg, bots=bots)
    leader_pos = await leader
    bot = bots[0]
    assert summary.joined == 1 and summary.disconnected == 0, summary.text()
    assert leader_pos[0] - bot.spawn[0] > 10.0, leader_pos  # the leader did go somewhere
    gap = math.hypot(bot.pos[0] - leader_pos[0], bot.pos[2] - leader_pos[2])
    assert gap <= follow_distance + 1.5, f"follower {gap:.1f} blocks from its target"
    assert summary.actions_by_kind.get("acquire", 0) >= 1


async def test_tnt_blows_a_crater_near_the_bot(sim_server):
    cfg = RunConfig(
        url=sim_server.url,
        count=1,
        behaviour="tnt",
        seconds=9.0,
        name_prefix="bomber",
        options=BehaviourOptions(box=8.0, tnt_interval=2.0),
    )
    summary, bots, _ = await run_tracked(cfg)
    behaviour = bots[0].behaviour
    assert isinstance(behaviour, Tnt)
    kinds = summary.actions_by_kind
    assert kinds.get("place", 0) >= 1 and kinds.get("ignite", 0) >= 1, kinds
    assert kinds.get("retreat", 0) >= 1 and kinds.get("explosion", 0) >= 1, kinds
    assert behaviour.exploded
    # A fresh observer sees the ground under and around the charge blown away.
    # The charge sat on the flat ground: the two layers under it and around it.
    cx, cy, cz = behaviour.exploded[0]
    ground = [
        (cx + dx, y, cz + dz)
        for dx in range(-2, 3)
        for dz in range(-2, 3)
        for y in (cy - 2, cy - 1)
    ]
    around = [(cx, cy, cz), *ground]
    seen = await observe_blocks(sim_server.url, "crater_observer", around)
    assert seen[(cx, cy, cz)] == BlockId.AIR
    blown = [p for p in ground if seen[p] == BlockId.AIR]
    assert len(blown) >= 8, f"only {len(blown)} of {len(ground)} ground blocks removed"


async def test_replay_reproduces_a_recorded_trace(sim_server, tmp_path):
    recorded = tmp_path / "walk.jsonl"
    record_cfg = RunConfig(
        url=sim_server.url,
        count=1,
        behaviour="walk",
        seconds=4.0,
        name_prefix="recorder",
        record=str(recorded),
        options=BehaviourOptions(box=5.0),
    )
    await run_tracked(record_cfg)
    trace = Trace.load(recorded)
    assert trace.source == "bot" and trace.name == "recorder0"
    assert len(trace.frames) >= 50 and len(trace.states) >= 30
    recorded_path = trace.positions()
    assert max(math.hypot(dx, dz) for dx, _, dz in recorded_path.values()) > 2.0

    replayed = tmp_path / "replayed.jsonl"
    replay_cfg = RunConfig(
        url=sim_server.url,
        count=1,
        behaviour="replay",
        seconds=trace.duration + 1.5,
        name_prefix="replayer",
        record=str(replayed),
        options=BehaviourOptions(trace=str(recorded)),
    )
    summary, _, _ = await run_tracked(replay_cfg)
    stats = summary.behaviour_stats
    assert stats["replay_checked"] >= 30
    assert stats["replay_error_max"] < 0.01, stats
    # And the replay's own recording walks the same path, frame for frame.
    again = Trace.load(replayed).positions()
    common = sorted(set(again) & set(recorded_path))
    assert len(common) >= 30
    worst = max(math.dist(again[k], recorded_path[k]) for k in common)
    assert worst < 0.01


async def test_game_client_records_a_trace_a_bot_replays(sim_server, tmp_path):
    from client.config import ClientConfig
    from client.display import HeadlessDisplay
    from client.game import Game
    from client.headless import GameRunner

    cfg = ClientConfig(
        server=sim_server.url, name="gamer", width=160, height=90, headless=True, max_fps=60
    )
    game = Game(cfg, HeadlessDisplay(160, 90))
    path = tmp_path / "game.jsonl"
    recorder = record_game(game, path)
    try:
        async with GameRunner(game) as run:
            await run.until_loaded()
            game.controls.set_look(math.pi / 2, 0.0)
            game.controls.forward = 1.0
            await run.sleep(1.0)
            game.controls.set_look(0.3, 0.0)
            game.controls.jump = True
            await run.sleep(0.8)
            game.controls.forward = 0.0
            game.controls.jump = False
            await run.sleep(0.5)
    finally:
        recorder.close()
    trace = Trace.load(path)
    assert trace.source == "game" and trace.name == "gamer"
    assert len(trace.frames) >= 60 and trace.frames[0].dt == pytest.approx(1 / 60)
    assert max(math.hypot(dx, dz) for dx, _, dz in trace.positions().values()) > 3.0

    cfg_replay = RunConfig(
        url=sim_server.url,
        count=1,
        behaviour="replay",
        seconds=trace.duration + 1.5,
        name_prefix="gamereplay",
        options=BehaviourOptions(trace=str(path)),
    )
    summary, _, _ = await run_tracked(cfg_replay)
    # How many positions get compared depends on the frame rate the game
    # recorded at (machine load); enough of them make the error bound mean something.
    assert summary.behaviour_stats["replay_checked"] >= 10, summary.behaviour_stats
    assert summary.behaviour_stats["replay_error_max"] < 0.01, summary.behaviour_stats


def test_trace_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"type": "header", "version": 1, "name": "x", "spawn": [0, 16, 0]}\n'
        '{"type": "input", "t": 0.05, "seq": 0, "dt": 0.05}\n'
    )
    with pytest.raises(TraceError, match=r"bad\.jsonl:2: .*missing field 'forward'"):
        Trace.load(bad)
    bad.write_text('{"type": "input"}\n')
    with pytest.raises(TraceError, match=r"bad\.jsonl:1: the first line must be the header"):
        Trace.load(bad)
    with pytest.raises(TraceError, match="cannot read"):
        Trace.load(tmp_path / "missing.jsonl")


def test_recorder_round_trip(tmp_path):
    rec = TraceRecorder(tmp_path / "t.jsonl", "alice", source="game")
    rec.start(100.0, (0.5, 16.0, 0.5))
    rec.frame(100.05, [0, 0.05, 1.0, 0.0, 0.25, -0.1, 1])
    rec.state(100.1, 0, (0.5, 16.0, 0.7))
    rec.state(100.15, 0, (0.5, 16.0, 0.7))  # a repeated ack is not written twice
    rec.edit(100.2, "place", 1, 16, 2, 5)
    rec.close(101.0)
    trace = Trace.load(tmp_path / "t.jsonl")
    assert trace.source == "game" and trace.spawn == (0.5, 16.0, 0.5)
    assert trace.frames[0].wire() == [0.05, 1.0, 0.0, 0.25, -0.1, 1]
    assert trace.frames[0].t == pytest.approx(0.05)
    assert len(trace.states) == 1 and trace.positions()[0] == pytest.approx((0.0, 0.0, 0.2))
    assert trace.edits[0].action == "place" and trace.edits[0].block == 5


async def test_rendering_bots_render_their_view(module_server):
    cfg = RunConfig(
        url=module_server.url,
        count=2,
        behaviour="walk",
        seconds=4.0,
        name_prefix="seer",
        render="local",
    )
    summary, bots, _ = await run_tracked(cfg)
    assert summary.render == "local"
    assert summary.frames_rendered >= 2 * 10, summary.text()  # ~10 fps each, after loading
    assert summary.render_ms_p50 is not None
    source = bots[0].view.source if bots[0].view else None
    assert source is None  # closed when the bot left
    assert "rendering" in summary.text()


def test_bots_command_summary_and_bad_trace(module_server, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "shiftcraft", "bots", "--server", module_server.url]
    out = subprocess.run(
        [*base, "--behaviour", "replay", "--trace", str(tmp_path / "none.jsonl"), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2
    assert "none.jsonl" in out.stderr and "cannot read" in out.stderr
    out = subprocess.run(
        [
            *base,
            "--count",
            "2",
            "--behaviour",
            "idle",
            "--seconds",
            "2",
            "--name-prefix",
            "cli_idle",
            "--record",
            str(tmp_path / "idle.jsonl"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "2/2 joined (idle)" in out.stdout and "actions" in out.stdout
    # Two bots, no {name} in the path: one file each.
    for name in ("cli_idle0", "cli_idle1"):
        trace = Trace.load(tmp_path / f"idle.{name}.jsonl")
        assert trace.name == name and trace.frames
    json.dumps(out.stdout)


def test_bench_bots_verdicts():
    from argparse import Namespace

    from shiftcraft.bench.bots import verdict

    args = Namespace(min_tps=19.5, max_p99_ms=50.0)
    good = {
        "bots": 200,
        "joined": 200,
        "failed": 0,
        "disconnected": 0,
        "tps": 19.98,
        "tick_p99_ms": 34.0,
        "inputs_per_s_per_bot": 19.9,
    }
    assert verdict(good, args) is None
    assert "tick p99 65.0 ms > 50 ms" in verdict({**good, "tick_p99_ms": 65.0}, args)
    assert "tps 17.7 < 19.5" in verdict({**good, "tps": 17.7}, args)
    assert "fell behind" in verdict({**good, "inputs_per_s_per_bot": 12.0}, args)
    assert "2 bots failed" in verdict({**good, "failed": 2}, args)


def test_bench_bots_end_to_end():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "shiftcraft",
            "bench",
            "bots",
            "--count",
            "4",
            "--seconds",
            "2",
            "--settle",
            "0.5",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == "bots" and result["bots"] == 4
    assert 15 < result["tps"] < 25 and result["tick_p99_ms"] > 0
    assert result["held"] is True and result["steps"][0]["inputs_per_s_per_bot"] > 15
