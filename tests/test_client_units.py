"""The game client's pieces on their own: no server, no window (fast).

Prediction runs the real physics over a real `world.map.World` (flat
generator); the HUD draws with pygame's font module into real frames.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from client.controls import HOTBAR, Controls
from client.hud import Hud, HudState
from client.prediction import PHYSICS_DT, SNAP_DISTANCE, Predictor
from client.remote_players import INTERP_DELAY, RemotePlayers
from client.replica import WorldReplica
from client.script import Jump, Look, Place, Script, ScriptError, Turn, Walk, parse_script
from client.session import explain
from client.stats import FrameStats, RateMeter
from shiftcraft.protocol import Update
from world.blocks import BlockId
from world.codec import encode_section
from world.generator import FlatGenerator
from world.map import World
from world.physics import MoveInput, PlayerBody, step


def flat_world() -> World:
    return World(FlatGenerator(height=16))


# -- script -----------------------------------------------------------------------
def test_parse_script_builds_actions_and_rejects_nonsense():
    actions = parse_script("walk 2; turn 90 -10\nlook 45 -; jump; place 3; hop 1; quit")
    assert isinstance(actions[0], Walk) and actions[0].seconds == 2.0
    assert isinstance(actions[1], Turn) and (actions[1].right, actions[1].up) == (90.0, -10.0)
    assert isinstance(actions[2], Look) and actions[2].yaw == 45.0 and actions[2].pitch is None
    assert isinstance(actions[3], Jump)
    assert isinstance(actions[4], Place) and actions[4].slot == 2  # 1-based on the CLI
    assert actions[5].jump and actions[5].sprint
    with pytest.raises(ScriptError, match="unknown script action"):
        parse_script("dance 3")
    with pytest.raises(ScriptError, match="not a number"):
        parse_script("walk fast")


def test_script_runs_on_the_game_clock():
    ctl = Controls()
    script = Script(parse_script("walk 1; turn 90; wait 0.5; jump"))
    script.update(ctl, 0.0)
    assert ctl.forward == 1.0
    script.update(ctl, 0.5)
    assert ctl.forward == 1.0 and script.index == 0
    script.update(ctl, 1.0)  # walk ends, turn is instant, wait starts
    assert ctl.forward == 0.0
    assert ctl.yaw == pytest.approx(-math.pi / 2)  # turning right decreases yaw
    assert script.index == 2
    script.update(ctl, 1.6)
    assert ctl.jump_latch and script.done


def test_controls_clamp_pitch_and_wrap_yaw():
    c = Controls()
    c.look(4 * math.pi + 0.1, 10.0)
    assert -math.pi <= c.yaw <= math.pi and c.yaw == pytest.approx(0.1)
    assert c.pitch < math.pi / 2
    c.select(-1)
    assert c.block == HOTBAR[-1]
    inp = c.move_input()
    c.jump_latch = True
    assert c.move_input().jump and not c.move_input().jump and not inp.jump


# -- prediction -------------------------------------------------------------------
def test_prediction_replays_unacked_frames_exactly():
    world = flat_world()
    p = Predictor(world, (0.5, 16.0, 0.5))
    inp = MoveInput(1.0, 0.0, 0.0, 0.0)
    frames = p.advance(10 * PHYSICS_DT + 1e-9, lambda: inp)
    assert len(frames) == 10 and p.body.z > 0.5  # moved at once, no server involved
    # The "server" applies the first 4 frames with the same physics.
    server = PlayerBody(0.5, 16.0, 0.5)
    for f in frames[:4]:
        server = step(server, MoveInput.from_frame(f), f[1], world)
    predicted = p.body
    pos, vel = (server.x, server.y, server.z), (server.vx, server.vy, server.vz)
    corr = p.reconcile(frames[3][0], pos, vel, server.on_ground, server.flying)
    assert corr is None  # deterministic: nothing to correct
    assert p.pending == 6
    assert (p.body.x, p.body.y, p.body.z) == (predicted.x, predicted.y, predicted.z)


def test_prediction_correction_is_smoothed_then_converges():
    world = flat_world()
    p = Predictor(world, (0.5, 16.0, 0.5))
    inp = MoveInput(1.0, 0.0, 0.0, 0.0)
    frames = p.advance(6 * PHYSICS_DT + 1e-9, lambda: inp)
    shown_before = p.render_position()
    # The server disagrees: it dropped every frame (say, a failed speed check).
    corr = p.reconcile(frames[-1][0], (0.5, 16.0, 0.5), (0, 0, 0), True, False)
    assert corr is not None and 0.1 < corr.distance < SNAP_DISTANCE and not corr.snapped
    assert p.body.z == 0.5  # the truth at once...
    assert p.render_position()[2] == pytest.approx(shown_before[2])  # ...but no visual jump
    stand = MoveInput(0.0, 0.0, 0.0, 0.0)
    for _ in range(60):
        p.advance(1 / 60, lambda: stand)
        p.decay(1 / 60)
    assert p.render_position()[2] == pytest.approx(0.5, abs=1e-3)
    # A teleport snaps.
    corr = p.reconcile(frames[-1][0], (100.5, 16.0, 0.5), (0, 0, 0), True, False)
    assert corr.snapped and p.render_position()[0] == pytest.approx(100.5)


# -- other players -----------------------------------------------------------------
def test_remote_players_are_drawn_interpolated_in_the_past():
    rp = RemotePlayers(tick_rate=20, self_id=1)
    t0 = 100.0
    rp.apply(0, [[1, "me", 0, 0, 0, 0, 0], [7, "bob", 0.0, 10.0, 0.0, 0.0, 0.0]], [], [], t0)
    assert len(rp) == 1  # ourselves are never an avatar
    for tick in range(1, 11):  # bob walks +x at 4 blocks/s, updates arrive on time
        rp.apply(tick, [], [[7, tick * 0.2, 10.0, 0.0, 0.0, 0.0]], [], t0 + tick * 0.05)
    now = t0 + 10 * 0.05
    (pose,) = rp.sample(now)
    # Drawn INTERP_DELAY in the past: at tick 8, i.e. x = 1.6.
    assert pose.x == pytest.approx((10 - INTERP_DELAY / 0.05) * 0.2, abs=1e-6)
    # Halfway between two snapshots -> halfway between their positions.
    (pose,) = rp.sample(now + 0.025)
    assert pose.x == pytest.approx(1.7, abs=1e-6)
    # After a pause, a new move does not smear over the pause.
    rp.apply(40, [], [[7, 3.0, 10.0, 0.0, 0.0, 0.0]], [], t0 + 40 * 0.05)
    (pose,) = rp.sample(t0 + 39 * 0.05 + INTERP_DELAY - 0.001)
    assert pose.x == pytest.approx(2.0, abs=1e-3)
    rp.apply(41, [], [], [7], t0 + 41 * 0.05)
    assert rp.sample(t0 + 41 * 0.05) == []


# -- replica ------------------------------------------------------------------------
class _CountingSink:
    def __init__(self) -> None:
        self.sections: dict = {}
        self.blocks: list = []

    def set_section(self, key, arr) -> bool:
        self.sections[key] = arr.copy()
        return True

    def clear_section(self, key) -> None:
        self.sections.pop(key, None)

    def set_block(self, x, y, z, block) -> bool:
        self.blocks.append((x, y, z, block))
        return True


def test_replica_optimistic_edit_survives_until_its_result():
    gen = FlatGenerator(height=16)
    sink = _CountingSink()
    r = WorldReplica(sink)
    key = (0, 0, 0)
    r.apply_update(Update(tick=1, sections=[[*key, encode_section(gen.generate_section(key))]]))
    assert r.get_block(1, 15, 1) == BlockId.GRASS
    r.predict_edit(1, 15, 1, BlockId.AIR)
    assert r.get_block(1, 15, 1) == BlockId.AIR and sink.blocks[-1] == (1, 15, 1, 0)
    # A stale delta and a re-sent section do not undo the prediction...
    r.apply_update(Update(tick=2, blocks=[[1, 15, 1, int(BlockId.GRASS)]]))
    r.apply_update(Update(tick=2, sections=[[*key, encode_section(gen.generate_section(key))]]))
    assert r.get_block(1, 15, 1) == BlockId.AIR
    # ...the result does: rejected, the true block is grass.
    r.apply_update(Update(tick=3, edits=[[0, False, 1, 15, 1, int(BlockId.GRASS), "too_far"]]))
    assert r.get_block(1, 15, 1) == BlockId.GRASS and r.pending_edits == 0
    assert r.stats.edits_rejected == 1
    # Unreceived sections: solid for physics, unknown for ray casts.
    assert r.get_block(100, 5, 100) == BlockId.STONE and r.known_block(100, 5, 100) is None
    r.apply_update(Update(tick=4, unload=[list(key)]))
    assert key not in r and key not in sink.sections


# -- HUD and stats --------------------------------------------------------------------
def test_hud_draws_crosshair_hotbar_text_and_banner():
    hud = Hud()
    frame = np.full((90, 160, 3), 100, dtype=np.uint8)
    hud.draw(frame, HudState(fps=60, rtt_ms=12, pos=(1, 2, 3), hotbar=HOTBAR, selected=2))
    assert (frame[45, 80] == 155).all()  # crosshair inverts the centre pixel
    assert (frame[:20, :60] == 255).any()  # white text in the top-left panel
    assert not (frame[80:, 40:120] == 100).all(axis=2).all()  # hotbar swatches
    plain = np.full((90, 160, 3), 100, dtype=np.uint8)
    hud.draw(plain, HudState(banner=["cannot connect", "refused"], crosshair=False))
    assert (plain[40:50, 40:120] != 100).any()


def test_frame_stats_and_rate_meter():
    fs = FrameStats(window_s=1.0)
    for i in range(31):
        fs.frame(i / 30)
    assert fs.fps == pytest.approx(30.0)
    assert fs.p(99) == pytest.approx(1000 / 30, rel=1e-6)
    rm = RateMeter(window_s=2.0)
    for i in range(5):
        rm.sample(i * 0.5, i * 500)
    assert rm.rate == pytest.approx(1000.0)


def test_error_explanations_name_the_cause():
    assert "running" in explain("refused", "x", "ws://h:1")
    assert "token" in explain("bad_token", "nope", "ws://h:1", "bob")
    assert "version" in explain("version_mismatch", "v2", "ws://h:1")
    assert "ws://HOST:PORT" in explain("bad_url", "not ws", "http://h")
