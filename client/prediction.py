"""Client-side prediction and server reconciliation of the player's body.

The client steps its own body with the shared `world.physics.step` at a
fixed rate (`PHYSICS_HZ`), one input frame per step, so movement shows on
the very next rendered frame whatever the round trip. Every frame is kept
(in the `InputSequencer`) until the server acknowledges it. Each update
from the server carries the authoritative body after the last applied
frame (``ack``): the predictor resets to it and replays the frames the
server has not applied yet (``seq > ack``). Physics is deterministic, so
when nothing disagreed the replay lands exactly where the prediction was;
when the server did something else (a block appeared in the path, a frame
failed the speed check) the body jumps to the corrected place.

That jump is hidden from the eye: the difference between where the camera
was and where it now is goes into a visual offset that decays
exponentially (`SMOOTH_TAU`), so small corrections glide; big ones
(a teleport, a respawn) snap.

Why a fixed step: input frames are independent of the render rate (a
200 FPS headless client would otherwise send 200 frames a second and the
server would step physics that often), and rendering interpolates between
the last two physics states, which costs at most one step (17 ms) of
visual latency.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from client.connection import InputSequencer
from world.physics import BlockQuery, MoveInput, PlayerBody, step

PHYSICS_HZ = 60
PHYSICS_DT = 1.0 / PHYSICS_HZ
MAX_CATCH_UP = 0.25  # seconds of missed steps run after a stall; more is dropped
SMOOTH_TAU = 0.08  # seconds: visual correction decays to 1/e in this time
SNAP_DISTANCE = 4.0  # blocks: a larger correction is a teleport, not smoothed

Vec3 = tuple[float, float, float]


@dataclass(slots=True)
class Correction:
    """One reconciliation that moved the body (for the HUD and tests)."""

    ack: int
    distance: float  # blocks between predicted and reconciled position
    snapped: bool


class Predictor:
    """The predicted body of the local player (see the module docstring)."""

    def __init__(self, world: BlockQuery, pos: Vec3, flying: bool = False) -> None:
        self.world = world
        self.sequencer = InputSequencer()
        self.body = PlayerBody(*pos, flying=flying)
        self.prev = self.body.copy()  # the state one step earlier, for interpolation
        self.offset: list[float] = [0.0, 0.0, 0.0]  # visual correction still to decay
        self.accumulator = 0.0  # seconds of input not yet stepped
        self.last_ack = -1
        self.steps = 0
        self.replayed = 0  # frames replayed by reconciliations, in total
        self.corrections = 0  # reconciliations that moved the body noticeably
        self.last_correction: Correction | None = None
        self.max_pending = 0

    def reset(self, pos: Vec3, flying: bool = False) -> None:
        """A new session (welcome): the server numbers frames from scratch."""
        self.sequencer = InputSequencer()
        self.body = PlayerBody(*pos, flying=flying)
        self.prev = self.body.copy()
        self.offset = [0.0, 0.0, 0.0]
        self.accumulator = 0.0
        self.last_ack = -1

    @property
    def pending(self) -> int:
        """Input frames the server has not acknowledged yet."""
        return len(self.sequencer.pending)

    # -- stepping ---------------------------------------------------------------------
    def advance(self, dt: float, next_input: Callable[[], MoveInput]) -> list[list]:
        """Run the fixed steps that ``dt`` seconds of wall time owe; returns their frames.

        ``next_input`` is asked once per step (not per call), so a one-shot
        input such as a tapped jump lands on a real step even when this
        render frame owes none. Every frame is stepped locally and must be
        sent to the server, in order.
        """
        self.accumulator = min(self.accumulator + max(dt, 0.0), MAX_CATCH_UP)
        frames = []
        while self.accumulator >= PHYSICS_DT:
            self.accumulator -= PHYSICS_DT
            frames.append(self.step_once(next_input()))
        return frames

    def step_once(self, inp: MoveInput, dt: float = PHYSICS_DT) -> list:
        frame = self.sequencer.frame_of(inp, dt)
        self.prev = self.body
        self.body = step(self.body, inp, frame[1], self.world)
        self.steps += 1
        self.max_pending = max(self.max_pending, len(self.sequencer.pending))
        return frame

    # -- reconciliation ---------------------------------------------------------------
    def reconcile(
        self, ack: int, pos: Vec3, vel: Vec3, on_ground: bool, flying: bool
    ) -> Correction | None:
        """Reset to the server's body after frame ``ack`` and replay the rest."""
        if ack < self.last_ack:
            return None  # an older update overtaken by a newer one: nothing to learn
        self.last_ack = ack
        self.sequencer.ack(ack)
        body = PlayerBody(*pos, *vel, on_ground=on_ground, flying=flying)
        for frame in self.sequencer.pending:
            body = step(body, MoveInput.from_frame(frame), frame[1], self.world)
            self.replayed += 1
        old = self.body
        dx, dy, dz = old.x - body.x, old.y - body.y, old.z - body.z
        dist = math.sqrt(dx * dx + dy * dy + dz * dz)
        # The interpolation source moves with the body, so a correction never
        # shows up as a one-step lurch between prev and body.
        self.prev = PlayerBody(
            self.prev.x - dx,
            self.prev.y - dy,
            self.prev.z - dz,
            self.prev.vx,
            self.prev.vy,
            self.prev.vz,
            self.prev.on_ground,
            self.prev.flying,
        )
        self.body = body
        if dist < 1e-9:
            return None
        snapped = dist > SNAP_DISTANCE
        if snapped:
            self.offset = [0.0, 0.0, 0.0]
        else:
            # Keep the camera where it was; the offset decays towards the truth.
            self.offset[0] += dx
            self.offset[1] += dy
            self.offset[2] += dz
        corr = Correction(ack, dist, snapped)
        if dist > 1e-3:
            self.corrections += 1
            self.last_correction = corr
        return corr

    # -- what the camera sees ----------------------------------------------------------
    def decay(self, dt: float) -> None:
        k = math.exp(-max(dt, 0.0) / SMOOTH_TAU)
        o = self.offset
        o[0] *= k
        o[1] *= k
        o[2] *= k
        if abs(o[0]) + abs(o[1]) + abs(o[2]) < 1e-4:
            o[0] = o[1] = o[2] = 0.0

    def render_position(self) -> Vec3:
        """Feet position to draw: between the last two steps, plus the decaying offset."""
        a = self.accumulator / PHYSICS_DT
        p, b, o = self.prev, self.body, self.offset
        return (
            p.x + (b.x - p.x) * a + o[0],
            p.y + (b.y - p.y) * a + o[1],
            p.z + (b.z - p.z) * a + o[2],
        )
