"""Block updates run by the server tick: falling blocks, flowing water, TNT.

The server loop drives it like this, every tick ``t``::

    updater.tick(t)                  # run the updates due now, editing the world
    changes = world.drain_changes()  # player edits and updater edits alike
    updater.notify(changes)          # schedule what those changes may set off

so every change the updater makes is broadcast like any other edit, and
what it sets off runs on a later tick. Updates are kept in one heap ordered
by (due tick, scheduling order): deterministic, and a tick that hits its
work budget leaves the rest at the front of the queue for the next one.

Rules (simple, Minecraft-like):

* Falling blocks (sand, gravel) with air or fluid below move down one block
  per tick, displacing the fluid.
* Water: level 0 is a source, 1..7 flowing. Water with air below flows down
  as level 1 ("falling" water keeps a low level so it spreads where it
  lands). A source, or water resting on a non-fluid block, spreads sideways
  into air with level + 1 (up to 7). A flowing block keeps the level its
  feeders give it: 1 under any water, else the lowest level of a sideways
  feeder + 1; with no feeder it recedes one level per update until it dries.
  Sources never change by themselves, and two sources do not make a third.
* TNT explodes ``fuse_ticks`` after `ignite`, ray-based like Minecraft, and
  sets any TNT in the blast off with a short random fuse (chain reaction).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import numpy as np

from world.blocks import BLOCKS, MAX_WATER_LEVEL, BlockId
from world.coords import (
    SECTION_MASK,
    SECTION_SHIFT,
    WORLD_HEIGHT,
    BlockPos,
    in_world,
    valid_section_key,
)
from world.map import BlockChange, EditError, World

# Update kinds (also their order among updates due the same tick).
EXPLODE = 0
FALL = 1
WATER = 2

# Budget units of one explosion: it takes ~0.5 ms, ~100 times a plain update
# (which costs 1), so a chain reaction cannot stall the tick.
EXPLOSION_COST = 128

# Explosion model (Minecraft's): rays towards the surface points of a 16^3
# cube, each starting with POWER * U(0.7, 1.3), losing RAY_DECAY per step of
# RAY_STEP and (blast_resistance + 0.3) * RAY_STEP in every non-air block.
POWER = 4.0
RAY_STEP = 0.3
RAY_DECAY = 0.75 * RAY_STEP
RAY_STEPS = int(np.ceil(POWER * 1.3 / RAY_DECAY)) + 1


def _ray_directions() -> np.ndarray:
    g = np.arange(16, dtype=np.float64) / 15.0 * 2.0 - 1.0
    i, j, k = np.meshgrid(g, g, g, indexing="ij")
    shell = (np.abs(i) == 1.0) | (np.abs(j) == 1.0) | (np.abs(k) == 1.0)
    d = np.stack([i[shell], j[shell], k[shell]], axis=1)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


_RAY_DIRS = _ray_directions()  # (1352, 3)
# Block offsets from the TNT block of every ray step: the rays start at the
# block's centre, so these are the same for every explosion. They index a
# fixed box around the TNT block, flattened ([y, z, x] order).
_RAY_CELLS = np.floor(
    0.5 + _RAY_DIRS[:, None, :] * (RAY_STEP * np.arange(RAY_STEPS))[None, :, None]
).astype(np.int64)
_BOX_LO = int(_RAY_CELLS.min())
_BOX_N = int(_RAY_CELLS.max()) - _BOX_LO + 1
_rx, _ry, _rz = (_RAY_CELLS[..., i] - _BOX_LO for i in range(3))
_RAY_FLAT = (_ry * _BOX_N + _rz) * _BOX_N + _rx  # (rays, steps) indices into box.ravel()

_AIR = int(BlockId.AIR)
_TNT = int(BlockId.TNT)
_BEDROCK = int(BlockId.BEDROCK)
# Per-id tables, as tuples for the scalar hot paths and numpy for the rays.
_FALLS: tuple[bool, ...] = tuple(bool(v) for v in BLOCKS.falls)
_LEVEL: tuple[int, ...] = tuple(int(v) for v in BLOCKS.fluid_level)  # -1 = not a fluid
_WATER_IDS: tuple[int, ...] = tuple(BLOCKS.water_id(lv) for lv in range(MAX_WATER_LEVEL + 1))
_RAY_COST = np.where(
    BLOCKS.known & (np.arange(256) != _AIR), (BLOCKS.blast_resistance + 0.3) * RAY_STEP, 0.0
)
_DESTRUCTIBLE = np.zeros(256, dtype=np.bool_)
for _b in BLOCKS:
    _DESTRUCTIBLE[_b.id] = _b.breakable and _b.id != _AIR and _b.fluid_level is None

_HORIZONTAL = ((1, 0), (-1, 0), (0, 1), (0, -1))
_NEIGHBOURS = ((0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
_U32 = 0xFFFFFFFF


class BlockUpdater:
    def __init__(
        self,
        world: World,
        seed: int = 0,
        water_interval: int = 5,
        fuse_ticks: int = 40,
        max_updates_per_tick: int = 4096,
    ) -> None:
        if water_interval < 1 or fuse_ticks < 1 or max_updates_per_tick < 1:
            raise ValueError("intervals, fuses and budgets must be >= 1")
        self.world = world
        self.seed = seed
        self.water_interval = water_interval
        self.fuse_ticks = fuse_ticks
        self.max_updates_per_tick = max_updates_per_tick
        self.now = 0  # the last tick run; delays count from it
        self.explosions = 0  # totals, for metrics
        self.updates_run = 0
        # (due, seq, kind, x, y, z); an entry is live iff _due[(kind, pos)] == its due,
        # so rescheduling earlier just pushes again and the old entry is skipped.
        self._heap: list[tuple[int, int, int, int, int, int]] = []
        self._due: dict[tuple[int, BlockPos], int] = {}
        self._seq = 0

    @property
    def pending(self) -> int:
        """Scheduled updates and lit fuses not yet run."""
        return len(self._due)

    # -- scheduling -----------------------------------------------------------
    def _schedule(self, kind: int, x: int, y: int, z: int, due: int) -> None:
        key = (kind, (x, y, z))
        old = self._due.get(key)
        if old is not None and old <= due:
            return
        self._due[key] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, kind, x, y, z))

    def notify(self, changes: Iterable[BlockChange]) -> None:
        """Schedule updates for changed blocks and their six neighbours."""
        seen: dict[BlockPos, None] = {}  # ordered, for determinism
        for c in changes:
            for dx, dy, dz in _NEIGHBOURS:
                seen[(c.x + dx, c.y + dy, c.z + dz)] = None
        get = self.world.get_block
        fall_due = self.now + 1
        water_due = self.now + self.water_interval
        for x, y, z in seen:
            if not in_world(x, y, z):
                continue
            block = get(x, y, z)
            if _FALLS[block]:
                self._schedule(FALL, x, y, z, fall_due)
            elif _LEVEL[block] >= 0:
                self._schedule(WATER, x, y, z, water_due)

    def ignite(self, x: int, y: int, z: int) -> bool:
        """Light the TNT at (x, y, z); it explodes ``fuse_ticks`` ticks from now.

        False if there is no TNT there or it is already lit (the fuse keeps burning).
        """
        if not in_world(x, y, z) or self.world.get_block(x, y, z) != _TNT:
            return False
        if self.is_lit(x, y, z):
            return False
        self._schedule(EXPLODE, x, y, z, self.now + self.fuse_ticks)
        return True

    def is_lit(self, x: int, y: int, z: int) -> bool:
        return (EXPLODE, (x, y, z)) in self._due

    # -- running --------------------------------------------------------------
    def tick(self, tick: int) -> None:
        """Run the updates due by ``tick``, within the per-tick budget."""
        self.now = tick
        heap, due_of = self._heap, self._due
        used = 0
        while heap and heap[0][0] <= tick and used < self.max_updates_per_tick:
            due, _seq, kind, x, y, z = heapq.heappop(heap)
            key = (kind, (x, y, z))
            if due_of.get(key) != due:
                continue  # superseded by an earlier reschedule
            del due_of[key]
            try:
                if kind == FALL:
                    self._fall(x, y, z)
                    used += 1
                elif kind == WATER:
                    self._water(x, y, z)
                    used += 1
                else:
                    self._explode(x, y, z, tick)
                    used += EXPLOSION_COST
            except EditError:
                used += 1  # at the world's x/z edge: that update just does not happen
        self.updates_run += used

    # -- falling blocks -------------------------------------------------------
    def _fall(self, x: int, y: int, z: int) -> None:
        world = self.world
        block = world.get_block(x, y, z)
        if not _FALLS[block] or y == 0:
            return
        below = world.get_block(x, y - 1, z)
        if below == _AIR or _LEVEL[below] >= 0:
            world.set_block(x, y, z, _AIR)  # the fluid it displaced flows back in
            world.set_block(x, y - 1, z, block)

    # -- water ----------------------------------------------------------------
    def _fed_level(self, x: int, y: int, z: int) -> int | None:
        """The level feeders give a flowing block at (x, y, z), or None if unfed."""
        get = self.world.get_block
        if y + 1 < WORLD_HEIGHT and _LEVEL[get(x, y + 1, z)] >= 0:
            return 1  # water above falls into it
        best: int | None = None
        for dx, dz in _HORIZONTAL:
            level = _LEVEL[get(x + dx, y, z + dz)]
            if level < 0 or level >= MAX_WATER_LEVEL or (best is not None and level + 1 >= best):
                continue
            if level == 0 or self._rests(x + dx, y, z + dz):
                best = level + 1
        return best

    def _rests(self, x: int, y: int, z: int) -> bool:
        """Whether flowing water here lies on a non-fluid block (so it spreads sideways)."""
        below = self.world.get_block(x, y - 1, z)
        return below != _AIR and _LEVEL[below] < 0

    def _water(self, x: int, y: int, z: int) -> None:
        world = self.world
        get = world.get_block
        level = _LEVEL[get(x, y, z)]
        if level < 0:
            return  # replaced since it was scheduled
        if level > 0:
            fed = self._fed_level(x, y, z)
            target = fed if fed is not None else level + 1
            if target != level:
                # Out of balance: take the new level now (receding, or fed by a
                # stronger neighbour) and spread on the next update, when the
                # change has reached the neighbours; spreading while receding
                # would only grow the puddle that is drying up.
                world.set_block(x, y, z, _WATER_IDS[target] if target <= MAX_WATER_LEVEL else _AIR)
                return
        # Flow down first; falling water only spreads sideways when it lands.
        below = get(x, y - 1, z) if y > 0 else _BEDROCK
        below_level = _LEVEL[below]
        if below == _AIR or below_level > 1:
            world.set_block(x, y - 1, z, _WATER_IDS[1])
        if level != 0 and (below == _AIR or below_level >= 0):
            return
        spread = level + 1
        if spread > MAX_WATER_LEVEL:
            return
        for dx, dz in _HORIZONTAL:
            nx, nz = x + dx, z + dz
            if not in_world(nx, y, nz):
                continue
            n = get(nx, y, nz)
            if n == _AIR or _LEVEL[n] > spread:
                world.set_block(nx, y, nz, _WATER_IDS[spread])

    # -- TNT ------------------------------------------------------------------
    def _explode(self, x: int, y: int, z: int, tick: int) -> None:
        world = self.world
        if world.get_block(x, y, z) != _TNT:
            return  # broken or blown away while the fuse burned
        self.explosions += 1
        rng = np.random.default_rng(
            [self.seed & _U32, x & _U32, y & _U32, z & _U32, tick & _U32, 0x7A7]
        )
        power = POWER * rng.uniform(0.7, 1.3, size=len(_RAY_DIRS))

        box = self._box(x + _BOX_LO, y + _BOX_LO, z + _BOX_LO, _BOX_N)
        ids = box.ravel()[_RAY_FLAT]  # (rays, steps)

        # A ray is still alive at step k if what is left after paying for
        # every step so far, and the block at step k, is positive.
        spent = np.cumsum(_RAY_COST[ids], axis=1) + RAY_DECAY * np.arange(RAY_STEPS)
        hit = (power[:, None] - spent > 0.0) & _DESTRUCTIBLE[ids]
        mark = np.zeros(box.shape, dtype=np.bool_)
        mark.ravel()[_RAY_FLAT[hit]] = True
        c = -_BOX_LO  # the TNT block's index on every axis of the box

        # TNT caught in the blast is set off with a short random fuse, not destroyed.
        tnt = mark & (box == _TNT)
        tnt[c, c, c] = False
        mark &= ~tnt
        mark[c, c, c] = True  # the exploding block goes with the blast
        origin = np.array([x + _BOX_LO, y + _BOX_LO, z + _BOX_LO], dtype=np.int64)
        tnt_pos = np.argwhere(tnt)[:, [2, 0, 1]] + origin
        if len(tnt_pos):
            lo, hi = max(1, self.fuse_ticks // 4), max(1, self.fuse_ticks // 2)
            fuses = rng.integers(lo, hi + 1, size=len(tnt_pos))
            for (tx, ty, tz), fuse in zip(tnt_pos.tolist(), fuses.tolist(), strict=True):
                self._schedule(EXPLODE, tx, ty, tz, tick + fuse)
        # One batched edit for the whole blast.
        world.set_blocks(np.argwhere(mark)[:, [2, 0, 1]] + origin, _AIR)

    def _box(self, x0: int, y0: int, z0: int, n: int) -> np.ndarray:
        """A dense copy ``[y, z, x]`` of the n^3 box of blocks from (x0, y0, z0).

        Below the world reads as bedrock (rays stop at the floor), above it
        as air, past the x/z edge as bedrock; sections load as needed.
        """
        box = np.full((n, n, n), _BEDROCK, dtype=np.uint8)
        top = WORLD_HEIGHT - y0
        if top < n:
            box[max(top, 0) :] = _AIR
        x1, y1, z1 = x0 + n - 1, min(y0 + n - 1, WORLD_HEIGHT - 1), z0 + n - 1
        for sy in range(max(y0, 0) >> SECTION_SHIFT, (y1 >> SECTION_SHIFT) + 1):
            for sz in range(z0 >> SECTION_SHIFT, (z1 >> SECTION_SHIFT) + 1):
                for sx in range(x0 >> SECTION_SHIFT, (x1 >> SECTION_SHIFT) + 1):
                    if not valid_section_key((sx, sy, sz)):
                        continue
                    arr = self.world.section((sx, sy, sz))
                    # the overlap of this section and the box, in world coordinates
                    ax, bx = max(sx << SECTION_SHIFT, x0), min((sx << SECTION_SHIFT) + 15, x1)
                    ay, by = max(sy << SECTION_SHIFT, y0), min((sy << SECTION_SHIFT) + 15, y1)
                    az, bz = max(sz << SECTION_SHIFT, z0), min((sz << SECTION_SHIFT) + 15, z1)
                    box[ay - y0 : by - y0 + 1, az - z0 : bz - z0 + 1, ax - x0 : bx - x0 + 1] = arr[
                        ay & SECTION_MASK : (by & SECTION_MASK) + 1,
                        az & SECTION_MASK : (bz & SECTION_MASK) + 1,
                        ax & SECTION_MASK : (bx & SECTION_MASK) + 1,
                    ]
        return box
