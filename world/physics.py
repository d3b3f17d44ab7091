"""Player physics: movement, gravity, flying, swimming and AABB collision.

The same code runs on the server (authoritative) and in the client
(prediction and reconciliation), so it is pure and deterministic: `step`
reads the world through `BlockQuery` and returns a new `PlayerBody`; given
the same body, input, dt and blocks it returns the same floats everywhere.

Conventions (the renderer and client rely on them):

* y is up; the frame is right-handed. ``yaw = 0`` looks towards +z,
  ``yaw = pi/2`` towards +x (so turning right *decreases* yaw); positive
  ``pitch`` looks up.
* ``right_vector = forward_vector x up``: facing +z, right is -x.
* A body's position is the centre of its feet; its box is
  ``PLAYER_WIDTH`` wide in x and z and ``PLAYER_HEIGHT`` tall.

Collision sweeps the box along y, then x, then z, visiting every voxel layer
between the start and the end of the move, so no speed or dt tunnels
through a wall. A box stops flush against a face; voxel ranges are computed
with a small tolerance (``EPS``) so that a face-flush box never counts as
inside the block it touches, whatever the rounding.

Speed matters: the server steps hundreds of players per tick in pure
Python, so this module uses scalar ``math`` and tuple lookups, not numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from world.blocks import BLOCKS

PLAYER_WIDTH = 0.6
PLAYER_HEIGHT = 1.8
EYE_HEIGHT = 1.62
HALF_WIDTH = PLAYER_WIDTH / 2

WALK_SPEED = 4.317  # blocks/s, Minecraft's values
SPRINT_SPEED = 5.612
SNEAK_FACTOR = 0.3  # sneaking walks at 30 % speed
FLY_SPEED = 10.92
FLY_VERTICAL_SPEED = 7.5
SWIM_SPEED = 2.2
SWIM_UP_SPEED = 3.0  # holding jump in water
SWIM_SINK_SPEED = 2.0  # the fastest a body sinks in water
WATER_GRAVITY = 6.0
WATER_EXIT_VELOCITY = 6.0  # jump while pushing against a bank: climb out
AIR_ACCEL = 12.0  # blocks/s^2 of horizontal control in the air

GRAVITY = 32.0  # blocks/s^2
JUMP_APEX = 1.25  # blocks
JUMP_VELOCITY = math.sqrt(2.0 * GRAVITY * JUMP_APEX)  # ~8.94 blocks/s
TERMINAL_VELOCITY = 78.4  # also caps horizontal speed, so sweeps stay short

MAX_SUBSTEP = 0.05  # seconds
EPS = 1e-6  # tolerance of voxel ranges (see module docstring)

# Input frame flag bits; they match shiftcraft.protocol (tested), duplicated
# so world/ does not depend on the wire layer.
FLAG_JUMP = 1
FLAG_SNEAK = 2
FLAG_FLY = 4
FLAG_SPRINT = 8

# Python tuples: indexing them with an int is several times faster than a
# numpy table, and this is the hot path of the server tick.
_SOLID: tuple[bool, ...] = tuple(bool(v) for v in BLOCKS.solid)
_FLUID: tuple[bool, ...] = tuple(bool(v) for v in BLOCKS.is_fluid)

AABB = tuple[float, float, float, float, float, float]
GetBlock = Callable[[int, int, int], int]


class BlockQuery(Protocol):
    """Anything that answers block ids (World, a client replica)."""

    def get_block(self, x: int, y: int, z: int) -> int: ...


@dataclass(slots=True)
class PlayerBody:
    x: float  # feet centre
    y: float
    z: float
    vx: float = 0.0
    vy: float = 0.0
    vz: float = 0.0
    on_ground: bool = False
    flying: bool = False

    def copy(self) -> PlayerBody:
        return PlayerBody(
            self.x, self.y, self.z, self.vx, self.vy, self.vz, self.on_ground, self.flying
        )


@dataclass(frozen=True, slots=True)
class MoveInput:
    forward: float  # -1..1, +1 = along forward_vector(yaw)
    strafe: float  # -1..1, +1 = to the right
    yaw: float
    pitch: float
    jump: bool = False
    sneak: bool = False
    fly: bool = False  # the desired flying state (not an edge), so replays are idempotent
    sprint: bool = False

    @property
    def flags(self) -> int:
        return (
            (FLAG_JUMP if self.jump else 0)
            | (FLAG_SNEAK if self.sneak else 0)
            | (FLAG_FLY if self.fly else 0)
            | (FLAG_SPRINT if self.sprint else 0)
        )

    @classmethod
    def from_frame(cls, frame: tuple | list) -> MoveInput:
        """From a protocol input frame ``[seq, dt, forward, strafe, yaw, pitch, flags]``."""
        _seq, _dt, forward, strafe, yaw, pitch, flags = frame
        flags = int(flags)
        return cls(
            float(forward),
            float(strafe),
            float(yaw),
            float(pitch),
            jump=bool(flags & FLAG_JUMP),
            sneak=bool(flags & FLAG_SNEAK),
            fly=bool(flags & FLAG_FLY),
            sprint=bool(flags & FLAG_SPRINT),
        )

    def to_frame(self, seq: int, dt: float) -> list:
        """The protocol input frame for this input."""
        return [seq, dt, self.forward, self.strafe, self.yaw, self.pitch, self.flags]


# -- vectors ------------------------------------------------------------------
def look_vector(yaw: float, pitch: float) -> tuple[float, float, float]:
    """Unit vector the camera looks along."""
    cp = math.cos(pitch)
    return (math.sin(yaw) * cp, math.sin(pitch), math.cos(yaw) * cp)


def forward_vector(yaw: float) -> tuple[float, float, float]:
    """Horizontal unit vector of walking forward."""
    return (math.sin(yaw), 0.0, math.cos(yaw))


def right_vector(yaw: float) -> tuple[float, float, float]:
    """Horizontal unit vector of strafing right (forward x up)."""
    return (-math.cos(yaw), 0.0, math.sin(yaw))


# -- boxes --------------------------------------------------------------------
def body_aabb(body: PlayerBody) -> AABB:
    """``(minx, miny, minz, maxx, maxy, maxz)`` of the body."""
    return (
        body.x - HALF_WIDTH,
        body.y,
        body.z - HALF_WIDTH,
        body.x + HALF_WIDTH,
        body.y + PLAYER_HEIGHT,
        body.z + HALF_WIDTH,
    )


def aabb_overlaps_block(aabb: AABB, x: int, y: int, z: int) -> bool:
    """Whether the box overlaps the unit cube of block (x, y, z) by more than EPS.

    A box flush against a face does not overlap (a player standing on a
    block, or touching a wall, may still have that block edited).
    """
    minx, miny, minz, maxx, maxy, maxz = aabb
    return (
        minx < x + 1 - EPS
        and maxx > x + EPS
        and miny < y + 1 - EPS
        and maxy > y + EPS
        and minz < z + 1 - EPS
        and maxz > z + EPS
    )


def eye_position(body: PlayerBody) -> tuple[float, float, float]:
    return (body.x, body.y + EYE_HEIGHT, body.z)


# -- collision sweeps ---------------------------------------------------------
# Each sweep moves the box along one axis by ``d`` (``lo``/``hi`` are its
# faces on that axis) and returns the coordinate of the first solid face in
# the way, or None if the move is free. Voxels the box already overlaps are
# ignored, so a body stuck in a block (one placed on it) can walk out instead
# of freezing. A face within EPS of the end of the move still stops it, so
# tiny moves cannot creep through a floor.
def _sweep_y(
    get: GetBlock, lo: float, hi: float, d: float, x0: int, x1: int, z0: int, z1: int
) -> float | None:
    if d < 0.0:
        for cy in range(math.floor(lo + EPS) - 1, math.floor(lo + d - EPS) - 1, -1):
            for cx in range(x0, x1 + 1):
                for cz in range(z0, z1 + 1):
                    if _SOLID[get(cx, cy, cz)]:
                        return float(cy + 1)
        return None
    for cy in range(math.floor(hi - EPS) + 1, math.floor(hi + d + EPS) + 1):
        for cx in range(x0, x1 + 1):
            for cz in range(z0, z1 + 1):
                if _SOLID[get(cx, cy, cz)]:
                    return float(cy)
    return None


def _sweep_x(
    get: GetBlock, lo: float, hi: float, d: float, y0: int, y1: int, z0: int, z1: int
) -> float | None:
    if d < 0.0:
        for cx in range(math.floor(lo + EPS) - 1, math.floor(lo + d - EPS) - 1, -1):
            for cy in range(y0, y1 + 1):
                for cz in range(z0, z1 + 1):
                    if _SOLID[get(cx, cy, cz)]:
                        return float(cx + 1)
        return None
    for cx in range(math.floor(hi - EPS) + 1, math.floor(hi + d + EPS) + 1):
        for cy in range(y0, y1 + 1):
            for cz in range(z0, z1 + 1):
                if _SOLID[get(cx, cy, cz)]:
                    return float(cx)
    return None


def _sweep_z(
    get: GetBlock, lo: float, hi: float, d: float, x0: int, x1: int, y0: int, y1: int
) -> float | None:
    if d < 0.0:
        for cz in range(math.floor(lo + EPS) - 1, math.floor(lo + d - EPS) - 1, -1):
            for cy in range(y0, y1 + 1):
                for cx in range(x0, x1 + 1):
                    if _SOLID[get(cx, cy, cz)]:
                        return float(cz + 1)
        return None
    for cz in range(math.floor(hi - EPS) + 1, math.floor(hi + d + EPS) + 1):
        for cy in range(y0, y1 + 1):
            for cx in range(x0, x1 + 1):
                if _SOLID[get(cx, cy, cz)]:
                    return float(cz)
    return None


def _approach(v: float, target: float, max_delta: float) -> float:
    if v < target:
        return min(v + max_delta, target)
    return max(v - max_delta, target)


def _clamp(v: float, limit: float) -> float:
    return -limit if v < -limit else (limit if v > limit else v)


# -- stepping -----------------------------------------------------------------
def step(body: PlayerBody, inp: MoveInput, dt: float, world: BlockQuery) -> PlayerBody:
    """Advance ``body`` by ``dt`` seconds of ``inp``; returns a new body."""
    b = body.copy()
    if not dt > 0.0:  # also rejects NaN
        return b
    n = max(1, math.ceil(dt / MAX_SUBSTEP - 1e-9))
    h = dt / n
    get = world.get_block
    b.flying = inp.fly

    # The wished horizontal direction is constant over the step.
    fwd, strafe = inp.forward, inp.strafe
    mag = math.hypot(fwd, strafe)
    if mag > 1.0:
        fwd, strafe = fwd / mag, strafe / mag
    sy, cy = math.sin(inp.yaw), math.cos(inp.yaw)
    # forward = (sin, 0, cos), right = (-cos, 0, sin)
    wish_x = fwd * sy - strafe * cy
    wish_z = fwd * cy + strafe * sy

    for _ in range(n):
        _substep(b, inp, h, get, wish_x, wish_z)
    return b


def _substep(
    b: PlayerBody, inp: MoveInput, h: float, get: GetBlock, wish_x: float, wish_z: float
) -> None:
    # Fluid is sampled at knee height of the centre column: one lookup.
    in_fluid = _FLUID[get(math.floor(b.x), math.floor(b.y + 0.3), math.floor(b.z))]

    if b.flying:
        b.vx, b.vz = wish_x * FLY_SPEED, wish_z * FLY_SPEED
        b.vy = (FLY_VERTICAL_SPEED if inp.jump else 0.0) - (
            FLY_VERTICAL_SPEED if inp.sneak else 0.0
        )
        dy = b.vy * h
    elif in_fluid:
        speed = SWIM_SPEED * (SNEAK_FACTOR if inp.sneak and b.on_ground else 1.0)
        b.vx, b.vz = wish_x * speed, wish_z * speed
        if inp.jump:
            b.vy = max(b.vy, SWIM_UP_SPEED)
            dy = b.vy * h
        else:
            # Water breaks a fall at once and sinks the body slowly.
            vy0 = max(b.vy, -SWIM_SINK_SPEED)
            b.vy = max(vy0 - WATER_GRAVITY * h, -SWIM_SINK_SPEED)
            dy = 0.5 * (vy0 + b.vy) * h
    else:
        if inp.sneak:
            speed = WALK_SPEED * SNEAK_FACTOR
        elif inp.sprint and inp.forward > 0.0:
            speed = SPRINT_SPEED
        else:
            speed = WALK_SPEED
        tx, tz = wish_x * speed, wish_z * speed
        if b.on_ground:
            b.vx, b.vz = tx, tz
            if inp.jump:
                b.vy = JUMP_VELOCITY
        else:
            b.vx = _approach(b.vx, tx, AIR_ACCEL * h)
            b.vz = _approach(b.vz, tz, AIR_ACCEL * h)
        # Exact integration of constant gravity over the substep, so the
        # jump apex hardly depends on dt (client and server frame rates differ).
        vy0 = b.vy
        b.vy = max(vy0 - GRAVITY * h, -TERMINAL_VELOCITY)
        dy = 0.5 * (vy0 + b.vy) * h

    b.vx = _clamp(b.vx, TERMINAL_VELOCITY)
    b.vz = _clamp(b.vz, TERMINAL_VELOCITY)
    dx = b.vx * h
    dz = b.vz * h

    x, y, z = b.x, b.y, b.z
    x0 = math.floor(x - HALF_WIDTH + EPS)
    x1 = math.floor(x + HALF_WIDTH - EPS)
    z0 = math.floor(z - HALF_WIDTH + EPS)
    z1 = math.floor(z + HALF_WIDTH - EPS)

    # y first: landing decides on_ground for the next substep's control.
    b.on_ground = False
    face = _sweep_y(get, y, y + PLAYER_HEIGHT, dy, x0, x1, z0, z1)
    if face is None:
        y += dy
    elif dy < 0.0:
        y = face  # exactly on top of the block
        b.vy = 0.0
        b.on_ground = True
    else:
        y = face - PLAYER_HEIGHT  # head against a ceiling
        b.vy = 0.0
    y0 = math.floor(y + EPS)
    y1 = math.floor(y + PLAYER_HEIGHT - EPS)

    blocked_h = False
    if dx != 0.0:
        face = _sweep_x(get, x - HALF_WIDTH, x + HALF_WIDTH, dx, y0, y1, z0, z1)
        if face is None:
            x += dx
        else:
            x = face + HALF_WIDTH if dx < 0.0 else face - HALF_WIDTH
            b.vx = 0.0
            blocked_h = True
        x0 = math.floor(x - HALF_WIDTH + EPS)
        x1 = math.floor(x + HALF_WIDTH - EPS)
    if dz != 0.0:
        face = _sweep_z(get, z - HALF_WIDTH, z + HALF_WIDTH, dz, x0, x1, y0, y1)
        if face is None:
            z += dz
        else:
            z = face + HALF_WIDTH if dz < 0.0 else face - HALF_WIDTH
            b.vz = 0.0
            blocked_h = True

    if in_fluid and inp.jump and blocked_h and not b.flying:
        b.vy = WATER_EXIT_VELOCITY  # pushing against a bank: climb out
    b.x, b.y, b.z = x, y, z
