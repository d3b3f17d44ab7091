"""Voxel ray casting (Amanatides & Woo's DDA traversal).

Used for block targeting (client crosshair, bots, the server's reach check):
the ray visits every voxel it passes through, in order, so it never skips a
thin wall, and the axis of the last step gives the face that was hit: the
block to place goes on that face's side (`RayHit.adjacent`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from world.blocks import BLOCKS, BlockId
from world.coords import WORLD_HEIGHT, BlockPos
from world.physics import BlockQuery

_FLUID: tuple[bool, ...] = tuple(bool(v) for v in BLOCKS.is_fluid)


@dataclass(frozen=True, slots=True)
class RayHit:
    x: int  # the block hit
    y: int
    z: int
    block: int  # its id
    normal: tuple[
        int, int, int
    ]  # outward normal of the face hit; (0, 0, 0) if the ray starts inside
    distance: float  # along the ray from the origin to the face

    @property
    def pos(self) -> BlockPos:
        return (self.x, self.y, self.z)

    @property
    def adjacent(self) -> BlockPos:
        """Where a block placed on the hit face goes."""
        nx, ny, nz = self.normal
        return (self.x + nx, self.y + ny, self.z + nz)


def raycast(
    world: BlockQuery,
    origin: Sequence[float],
    direction: Sequence[float],
    max_distance: float,
    *,
    include_fluids: bool = False,
) -> RayHit | None:
    """The first non-air block (fluids skipped unless asked) within ``max_distance``.

    ``direction`` need not be unit length; distances are in blocks along it.
    Returns None on a miss, a zero direction, or a ray leaving the world's height.
    Every voxel up to ``max_distance`` is read (sections load on a `World`), so
    keep it short: a reach, not a horizon.
    """
    if not math.isfinite(max_distance):
        raise ValueError("max_distance must be finite (the traversal visits every voxel)")
    ox, oy, oz = float(origin[0]), float(origin[1]), float(origin[2])
    dx, dy, dz = float(direction[0]), float(direction[1]), float(direction[2])
    length = math.sqrt(dx * dx + dy * dy + dz * dz)
    if not (length > 0.0 and math.isfinite(length) and max_distance >= 0.0):
        return None
    dx, dy, dz = dx / length, dy / length, dz / length
    get = world.get_block
    air = int(BlockId.AIR)

    def hits(block: int) -> bool:
        return block != air and (include_fluids or not _FLUID[block])

    x, y, z = math.floor(ox), math.floor(oy), math.floor(oz)
    if 0 <= y < WORLD_HEIGHT:
        block = get(x, y, z)
        if hits(block):
            return RayHit(x, y, z, block, (0, 0, 0), 0.0)

    inf = math.inf
    # Per axis: the voxel step, the ray length to cross one voxel, and the ray
    # length to the first voxel boundary.
    sx = 1 if dx > 0.0 else (-1 if dx < 0.0 else 0)
    sy = 1 if dy > 0.0 else (-1 if dy < 0.0 else 0)
    sz = 1 if dz > 0.0 else (-1 if dz < 0.0 else 0)
    tdx = abs(1.0 / dx) if sx else inf
    tdy = abs(1.0 / dy) if sy else inf
    tdz = abs(1.0 / dz) if sz else inf
    tx = ((x + 1 - ox) if sx > 0 else (ox - x)) * tdx if sx else inf
    ty = ((y + 1 - oy) if sy > 0 else (oy - y)) * tdy if sy else inf
    tz = ((z + 1 - oz) if sz > 0 else (oz - z)) * tdz if sz else inf

    while True:
        if tx <= ty and tx <= tz:
            t = tx
            x += sx
            tx += tdx
            normal = (-sx, 0, 0)
        elif ty <= tz:
            t = ty
            y += sy
            ty += tdy
            normal = (0, -sy, 0)
        else:
            t = tz
            z += sz
            tz += tdz
            normal = (0, 0, -sz)
        if t > max_distance:
            return None
        if y < 0 or y >= WORLD_HEIGHT:
            if (y < 0 and sy <= 0) or (y >= WORLD_HEIGHT and sy >= 0):
                return None  # left the world's height for good
            continue  # outside but coming back in (a ray from above the world)
        block = get(x, y, z)
        if hits(block):
            return RayHit(x, y, z, block, normal, t)
