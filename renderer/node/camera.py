"""Where a streamed player's camera is: the sim's pose plus the newest input seen.

The client sends every input frame twice over: to the sim (authoritative
movement) and, over the unreliable data channel, to the render node. The
node steps the same frames with the same physics (`world.physics.step`)
against its replica, so the camera turns and moves on the very next frame
instead of one sim round trip later.

Authority, best first:

* ``state`` messages: the client forwards the sim's body after input ``ack``
  (from its updates). The node then does exactly what a predicting client
  does — reset to that body and replay the frames after ``ack`` — so where
  the node's world agrees with the sim's, the camera is where the sim will
  put the player.
* entity moves for the player's name (the node's own sim connection sees
  every player near its view centres). They carry no ack, so frames that
  arrived more than `ENTITY_LAG_S` before the move are taken as applied and
  the younger ones are replayed. Used until the first ``state`` arrives, and
  for clients that never send one.

Look (yaw, pitch) always comes from the newest input frame by sequence
number: turning needs no physics and must never wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from world.physics import EYE_HEIGHT, BlockQuery, MoveInput, PlayerBody, look_vector, step
from world.raycast import RayHit, raycast

MAX_PENDING = 256  # unacknowledged frames kept for replay
ENTITY_LAG_S = 0.075  # a frame this old when an entity move arrives was applied by the sim
REACH = 6.0  # blocks, as the client's and the server's reach
SNAP_DISTANCE = 4.0  # a correction farther than this is a teleport (no smoothing)
SMOOTH_TAU = 0.08  # seconds; corrections below SNAP_DISTANCE glide away


@dataclass(slots=True)
class CameraPose:
    """What one frame is rendered from (a snapshot; the driver keeps moving)."""

    x: float  # eye
    y: float
    z: float
    yaw: float
    pitch: float
    fov_deg: float
    input_seq: int  # newest input frame reflected (-1: none)
    hit: RayHit | None  # block under the crosshair


class CameraDriver:
    """One session's camera (see the module docstring). Event-loop thread only."""

    def __init__(
        self,
        world: BlockQuery,
        pos: Sequence[float],
        yaw: float = 0.0,
        pitch: float = 0.0,
        fov_deg: float = 70.0,
        clock=time.monotonic,
        ray_world: BlockQuery | None = None,
    ) -> None:
        self.world = world  # physics: unreceived sections are solid (never fall into them)
        self.ray_world = ray_world or world  # targeting: unreceived sections are air
        self.clock = clock
        self.body = PlayerBody(float(pos[0]), float(pos[1]), float(pos[2]))
        self.yaw = float(yaw)
        self.pitch = float(pitch)
        self.fov_deg = float(fov_deg)
        self.newest_seq = -1  # highest input seq received
        self.last_ack = -1
        self.has_state = False  # a `state` message came: entity moves are not needed
        # seq -> (frame, arrival time); replayed in seq order.
        self._pending: dict[int, tuple[Sequence, float]] = {}
        self._offset = [0.0, 0.0, 0.0]  # visual correction still to decay
        self._offset_at = clock()
        self.inputs_received = 0
        self.corrections = 0

    # -- inputs ------------------------------------------------------------------------
    def on_input(self, frames: Sequence[Sequence]) -> list[Sequence]:
        """New frames from the data channel (duplicates and old ones ignored); returns the new."""
        now = self.clock()
        fresh: list[Sequence] = []
        for frame in sorted(frames, key=lambda f: f[0]):
            seq = int(frame[0])
            if seq <= self.last_ack or seq in self._pending:
                continue
            self._pending[seq] = (frame, now)
            fresh.append(frame)
            if seq > self.newest_seq:
                # In order (the usual case): step now. A frame that overtook a
                # lost one is stepped anyway; the next reconcile fixes the order.
                self.newest_seq = seq
                self.yaw, self.pitch = float(frame[4]), float(frame[5])
                self.body = step(self.body, MoveInput.from_frame(frame), frame[1], self.world)
        # Forget the oldest (frames arrive about in order, so the dict's
        # insertion order is theirs; no sort of 256 keys per message when a
        # client's frames are never acknowledged).
        while len(self._pending) > MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        self.inputs_received += len(fresh)
        return fresh

    def look(self, yaw: float, pitch: float) -> None:
        """Set the look directly (a client that sends no movement frames)."""
        self.yaw, self.pitch = float(yaw), float(pitch)

    # -- authority --------------------------------------------------------------------
    def on_state(
        self,
        ack: int,
        pos: Sequence[float],
        vel: Sequence[float],
        on_ground: bool,
        flying: bool,
    ) -> None:
        """The sim's body after frame ``ack``: reset to it and replay the rest."""
        if ack < self.last_ack:
            return  # an older update overtaken by a newer one
        self.has_state = True
        self.last_ack = ack
        for seq in [s for s in self._pending if s <= ack]:
            del self._pending[seq]
        body = PlayerBody(*map(float, pos), *map(float, vel), on_ground=on_ground, flying=flying)
        self._replay(body, self._pending)

    def on_entity(self, x: float, y: float, z: float, yaw: float, pitch: float) -> None:
        """An entity move of this player (feet position) from the node's sim connection."""
        if self.has_state:
            return  # the client's forwarded state is exact; this is older and ack-less
        if self.newest_seq < 0:
            self.yaw, self.pitch = float(yaw), float(pitch)  # no input yet: follow the sim
        cutoff = self.clock() - ENTITY_LAG_S
        younger = {s: v for s, v in self._pending.items() if v[1] > cutoff}
        self._pending = younger
        self._replay(PlayerBody(float(x), float(y), float(z)), younger)

    def _replay(self, body: PlayerBody, pending: dict[int, tuple[Sequence, float]]) -> None:
        for seq in sorted(pending):
            frame = pending[seq][0]
            body = step(body, MoveInput.from_frame(frame), frame[1], self.world)
        old = self.body
        dx, dy, dz = old.x - body.x, old.y - body.y, old.z - body.z
        dist = math.sqrt(dx * dx + dy * dy + dz * dz)
        self.body = body
        if dist > 1e-3:
            self.corrections += 1
        if dist > SNAP_DISTANCE:
            self._offset = [0.0, 0.0, 0.0]
        elif dist > 1e-9:
            self._decay()
            o = self._offset
            o[0] += dx
            o[1] += dy
            o[2] += dz

    def teleport(self, pos: Sequence[float]) -> None:
        self.body = PlayerBody(float(pos[0]), float(pos[1]), float(pos[2]))
        self._offset = [0.0, 0.0, 0.0]

    # -- the camera ---------------------------------------------------------------------
    def _decay(self) -> None:
        now = self.clock()
        k = math.exp(-max(0.0, now - self._offset_at) / SMOOTH_TAU)
        self._offset_at = now
        o = self._offset
        o[0] *= k
        o[1] *= k
        o[2] *= k

    @property
    def feet(self) -> tuple[float, float, float]:
        return (self.body.x, self.body.y, self.body.z)

    def pose(self, with_hit: bool = True) -> CameraPose:
        self._decay()
        o = self._offset
        b = self.body
        eye = (b.x + o[0], b.y + EYE_HEIGHT + o[1], b.z + o[2])
        hit = None
        if with_hit:
            hit = raycast(self.ray_world, eye, look_vector(self.yaw, self.pitch), REACH)
        return CameraPose(*eye, self.yaw, self.pitch, self.fov_deg, self.newest_seq, hit)
