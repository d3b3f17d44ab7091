"""Edit validation: may this player make this edit, here, now?

The rules, in the order they are checked (the first failing one is the
``reason`` sent back with the true block):

==============  ===========================================================
not_allowed     the connection has no body (render nodes only watch)
out_of_world    the target is outside the world (y not in 0..127, |x|,|z| huge)
too_far         the target's nearest point is more than ``reach`` from the eye
rate_limited    the player's edit bucket is empty
unknown_block   place: the id is not a block
not_placeable   place: air, bedrock, flowing water cannot be placed
occupied        place: the target is not replaceable (only air and water are)
into_player     place: the block would overlap a player's box
not_breakable   break: air, water and bedrock cannot be broken
not_tnt         ignite: the target is not TNT
not_ignitable   ignite: the block updater refused (already lit)
==============  ===========================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

from world.blocks import BLOCKS, BlockId
from world.coords import in_world
from world.map import World

REASONS = (
    "not_allowed",
    "out_of_world",
    "too_far",
    "rate_limited",
    "unknown_block",
    "not_placeable",
    "occupied",
    "into_player",
    "not_breakable",
    "not_tnt",
    "not_ignitable",
)

_REPLACEABLE = tuple(bool(v) for v in BLOCKS.replaceable)
_KNOWN = tuple(bool(v) for v in BLOCKS.known)
_BREAKABLE = tuple(BLOCKS.get(i).breakable if _KNOWN[i] else False for i in range(256))
_PLACEABLE = tuple(BLOCKS.get(i).placeable if _KNOWN[i] else False for i in range(256))


def reach_distance(eye: tuple[float, float, float], x: int, y: int, z: int) -> float:
    """Distance from the eye to the nearest point of block (x, y, z)'s cube."""
    ex, ey, ez = eye
    dx = max(x - ex, 0.0, ex - (x + 1))
    dy = max(y - ey, 0.0, ey - (y + 1))
    dz = max(z - ez, 0.0, ez - (z + 1))
    return math.sqrt(dx * dx + dy * dy + dz * dz)


def true_block(world: World, x: int, y: int, z: int) -> int:
    """The block a client should show at (x, y, z); air outside the world."""
    return world.get_block(x, y, z) if in_world(x, y, z) else int(BlockId.AIR)


def check_target(
    world: World,
    action: str,
    x: int,
    y: int,
    z: int,
    block: int,
    occupied_by_player: Callable[[int, int, int], bool],
) -> str:
    """The world-side rules (after reach and rate): '' if the edit may go ahead."""
    current = world.get_block(x, y, z)
    if action == "place":
        if not _KNOWN[block]:
            return "unknown_block"
        if not _PLACEABLE[block]:
            return "not_placeable"
        if not _REPLACEABLE[current]:
            return "occupied"
        if occupied_by_player(x, y, z):
            return "into_player"
        return ""
    if action == "break":
        return "" if _BREAKABLE[current] else "not_breakable"
    # ignite
    return "" if current == BlockId.TNT else "not_tnt"
