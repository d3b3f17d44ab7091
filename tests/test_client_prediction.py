"""Prediction and reconciliation against a real server, with emulated latency.

The client's `latency_ms` holds every message it receives (and sends) for
that long, so acks come back a full emulated RTT late. Movement must show
at once anyway, end exactly where the server says, and converge after the
server disagrees: a wall placed in the path by another player that the
client learns of too late, and frames the server's speed check drops.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from client.config import ClientConfig
from client.connection import InputSequencer, SimConnection
from client.display import HeadlessDisplay
from client.game import Game
from client.headless import GameRunner
from world.blocks import BlockId
from world.physics import HALF_WIDTH, MoveInput


def make_game(url: str, name: str, latency_ms: float) -> Game:
    cfg = ClientConfig(
        server=url,
        name=name,
        width=160,
        height=90,
        headless=True,
        max_fps=60,
        latency_ms=latency_ms,
    )
    return Game(cfg, HeadlessDisplay(160, 90))


def server_pos(game: Game) -> tuple[float, float, float]:
    assert game.server_state is not None
    return tuple(game.server_state[2])


async def settle(run: GameRunner, timeout: float = 10.0) -> None:
    """Stand still until the server has applied every moving frame and agrees."""
    game = run.game
    game.controls.forward = game.controls.strafe = 0.0
    last_moving = game.predictor.sequencer.next_seq - 1
    await run.until(lambda g: g.server_state[1] > last_moving + 5, timeout)
    await run.until(lambda g: math.dist(server_pos(g), g.predictor.render_position()) < 1e-3)


async def test_movement_is_instant_and_matches_the_server(module_server):
    game = make_game(module_server.url, "pred_walk", latency_ms=100)  # 200 ms RTT
    async with GameRunner(game) as run:
        await run.until_loaded()
        p = game.predictor
        game.controls.set_look(math.pi / 2, 0.0)  # facing +x
        start = (p.body.x, p.body.y, p.body.z)
        frames_before = game.frames
        game.controls.forward = 1.0
        await run.until(lambda g: g.predictor.render_position()[0] > start[0] + 0.01, timeout=1)
        # On screen within a couple of frames, long before any ack could come back.
        assert game.frames - frames_before <= 3
        assert server_pos(game)[0] == pytest.approx(start[0])
        await run.sleep(0.5)
        ahead = p.body.x - server_pos(game)[0]
        assert ahead > 0.4  # the server trails by the emulated round trip
        await settle(run)
        end = server_pos(game)
        assert end[0] > start[0] + 1.5
        # Deterministic shared physics: the replayed prediction never disagreed.
        assert p.corrections == 0
        assert (p.body.x, p.body.y, p.body.z) == pytest.approx(end, abs=1e-9)
        assert p.max_pending >= 8  # ~200 ms of 60 Hz frames were in flight
        assert game.session.stats.input_messages < game.session.stats.frames_sent / 1.5


async def test_wall_placed_in_the_path_is_corrected(module_server):
    # 300 ms each way: the client walks into the wall before it learns of it.
    game = make_game(module_server.url, "pred_wall", latency_ms=300)
    async with GameRunner(game) as run:
        await run.until_loaded()
        p = game.predictor
        game.controls.set_look(0.0, 0.0)  # facing +z
        bx, fy, z0 = math.floor(p.body.x), math.floor(p.body.y), p.body.z
        wall_z = math.floor(z0) + 2
        builder = await SimConnection.connect(module_server.url, "pred_builder")
        try:
            # The builder stands at spawn too (players do not collide).
            await builder.send_edit("place", bx, fy, wall_z, int(BlockId.STONE))
            await builder.send_edit("place", bx, fy + 1, wall_z, int(BlockId.STONE))
            game.controls.forward = 1.0
            furthest = 0.0

            def track(g: Game) -> bool:
                nonlocal furthest
                furthest = max(furthest, g.predictor.body.z)
                return g.predictor.corrections > 0

            await run.until(track, timeout=5)
            stop_z = wall_z - HALF_WIDTH
            assert furthest > stop_z + 0.05  # the prediction went into the wall...
            assert p.last_correction.distance > 0.05  # ...and was pulled back
            await run.sleep(0.5)
            await settle(run)
            # Converged: the body stands against the wall where the server has it.
            assert p.body.z == pytest.approx(stop_z, abs=1e-6)
            assert server_pos(game)[2] == pytest.approx(stop_z, abs=1e-6)
            assert game.replica.known_block(bx, fy, wall_z) == BlockId.STONE
        finally:
            await builder.close()


async def test_speed_check_rejection_converges(module_server):
    game = make_game(module_server.url, "pred_speed", latency_ms=50)
    async with GameRunner(game) as run:
        await run.until_loaded()
        p = game.predictor
        # Facing -x: away from the other tests' paths on the shared server.
        game.controls.set_look(math.pi / 2 * -1, 0.0)
        x0 = p.body.x
        dropped_before = module_server.stats()["input_frames_dropped_total"]
        # A cheat (or a badly stalled client): 3 s of walking claimed at once.
        # The server's movement credit is 0.5 s: most frames are dropped, and
        # still acknowledged, so the client is corrected back.
        cheat = MoveInput(1.0, 0.0, game.controls.yaw, 0.0)
        frames = [p.step_once(cheat, dt=0.25) for _ in range(12)]
        game.session.queue_inputs(frames, game.generation)
        assert p.body.x < x0 - 10
        await run.until(lambda g: g.predictor.corrections > 0, timeout=5)
        await settle(run)
        assert module_server.stats()["input_frames_dropped_total"] > dropped_before
        end = server_pos(game)
        assert x0 - 4.0 < end[0] < x0 - 0.5  # about 0.5 s of walking was accepted
        assert p.body.x == pytest.approx(end[0], abs=1e-9)
        assert p.last_correction.snapped  # ~10 blocks: snapped, not smoothed


async def test_other_players_are_drawn_interpolated(module_server):
    game = make_game(module_server.url, "avatar_watch", latency_ms=0)
    async with GameRunner(game) as run:
        await run.until_loaded()
        walker = await SimConnection.connect(module_server.url, "avatar_walker")
        try:
            wid = walker.player_id
            await run.until(lambda g: wid in g.players.players, timeout=5)
            xs: list[float] = []
            ts: list[float] = []

            def record(g: Game) -> bool:
                now = g.clock()
                (pose,) = [q for q in g.players.sample(now) if q.id == wid]
                xs.append(pose.x)
                ts.append(now)
                return False

            seqs = InputSequencer()
            x0 = game.players.sample(game.clock())[0].x
            waiter = asyncio.ensure_future(run.until(record, timeout=30))
            for _ in range(20):  # 1 s of walking +x at 20 Hz
                await walker.send_inputs([seqs.frame(0.05, forward=1.0, yaw=math.pi / 2)])
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            waiter.cancel()
            steps = np.diff(xs)
            assert xs[-1] > x0 + 3.0  # it walked ~4 blocks
            assert steps.min() >= -1e-9  # never backwards
            # Smooth: it moves a little on most frames, at about walking speed
            # (4.3 blocks/s; a tick that applied two of the walker's frames
            # doubles that). Drawing each snapshot as it arrives would move it
            # on ~20 frames only (one per tick), 0.2-0.4 blocks at once.
            speed = steps / np.maximum(np.diff(ts), 1e-3)
            assert speed.max() < 13.0, speed.max()
            assert (steps > 1e-9).sum() > 26, (steps > 1e-9).sum()
            scene = game.scene(game.clock())
            assert any(abs(a[0] - xs[-1]) < 1e-6 for a in scene.avatars)
        finally:
            await walker.close()
