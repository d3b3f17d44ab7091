"""The renderer's world view: a dense, toroidal copy of the loaded neighbourhood.

`WorldView` keeps every block of a window of N × 128 × N blocks around the
camera (N a power of two, section-aligned, centred on the section column of
the centre point). Addressing wraps around in x and z: block (x, y, z)
lives in slot ``(x & (N-1), y, z & (N-1))``, so moving the window
(`recenter`) only forgets the columns that fall out of it and never copies
the array. The kernel stops rays at the window's edge, so a slot is never
read as if it were somewhere else.

Blocks are stored brick-major: ``blocks[y/4, z/4, x/4, 64]`` holds each 4³
brick in one 64-byte cache line (local index ``ly*16 + lz*4 + lx``), so a
ray crossing a brick touches one line instead of sixteen.

Beside the blocks the view keeps what makes rays cheap and shading
possible, all updated incrementally:

* ``bricks[y/4, z/4, x/4]``: non-air count of each 4³ brick and
  ``sections[y/16, z/16, x/16]``: non-air count of each 16³ section. A ray
  crosses an empty section or brick in one step instead of 16 or 4.
* ``water_bricks`` and ``water_sections``: how many of those blocks are
  water. A ray under water crosses a brick or section that is all water
  in one step (seas are mostly that).
* ``heights4[z/4, x/4]`` and ``heights16[z/16, x/16]``: the y above the
  highest non-air block of each 4×4 and 16×16 column. Above it a ray
  crosses the whole column cell in one step, however close to the ground
  it flies (the terrain's empty space is mostly "above the surface").
* ``cover[z, x]``: the y above the highest light-blocking block of each
  column (opaque blocks and leaves): faces below it are out of the sky's
  light (caves, under trees).

A single `set_block` touches one voxel, one brick and one section count and
at most one 4×4 column of heights and one column of ``cover``;
`set_section` touches one section and its column's heights. Unloaded
sections read as air, and forgotten columns are zeroed, so nothing stale
from an earlier wrap is ever drawn.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from world.blocks import BLOCKS, BlockId
from world.coords import SECTION_SIZE, SECTIONS_Y, WORLD_HEIGHT, SectionKey

BRICK = 4
S = SECTION_SIZE

IS_WATER = np.asarray(BLOCKS.is_fluid, dtype=np.bool_)

# Blocks that keep sky light off the faces under them (not water or glass).
LIGHT_BLOCKING = np.array(
    [(BLOCKS.known[i] and not BLOCKS.transparent[i]) or i == BlockId.LEAVES for i in range(256)],
    dtype=np.bool_,
)


def _window_size(radius: int) -> int:
    """Smallest power-of-two width whose section-aligned window, centred on
    any point's section, reaches ``radius`` blocks on every side."""
    need = 2 * (radius + S)
    size = 2 * S
    while size < need:
        size *= 2
    return size


def to_bricks(arr: np.ndarray) -> np.ndarray:
    """``[y, z, x]`` blocks (multiples of 4) -> brick-major ``[y/4, z/4, x/4, 64]``."""
    ny, nz, nx = (d // BRICK for d in arr.shape)
    b = arr.reshape(ny, BRICK, nz, BRICK, nx, BRICK).transpose(0, 2, 4, 1, 3, 5)
    return b.reshape(ny, nz, nx, BRICK**3)


def from_bricks(b: np.ndarray) -> np.ndarray:
    """Brick-major ``[y/4, z/4, x/4, 64]`` -> ``[y, z, x]`` blocks."""
    ny, nz, nx, _ = b.shape
    arr = b.reshape(ny, nz, nx, BRICK, BRICK, BRICK).transpose(0, 3, 1, 4, 2, 5)
    return arr.reshape(ny * BRICK, nz * BRICK, nx * BRICK)


def _local(x: int, y: int, z: int) -> int:
    """Index of a block inside its brick's 64 bytes."""
    return ((y & 3) << 4) | ((z & 3) << 2) | (x & 3)


def _column_cover(blocks: np.ndarray) -> np.ndarray:
    """``cover`` of the ``[y, z, x]`` columns of ``blocks``."""
    return _column_top(LIGHT_BLOCKING[blocks])


def _column_top(flags: np.ndarray) -> np.ndarray:
    """Per ``[y, z, x]`` column, the y above its highest true flag (0: none)."""
    top = flags.shape[0] - np.argmax(flags[::-1], axis=0)
    return np.where(flags.any(axis=0), top, 0).astype(np.uint8)


class WorldView:
    """The loaded neighbourhood the renderer draws (see the module docstring)."""

    def __init__(self, radius: int = 112, center: tuple[float, float] = (0.0, 0.0)) -> None:
        """``radius``: blocks the window reaches on every side of its centre
        (at least the view distance); ``center``: the initial (x, z)."""
        self.size = _window_size(int(radius))
        self.mask = self.size - 1
        n = self.size
        nb = n // BRICK
        self.blocks = np.zeros((WORLD_HEIGHT // BRICK, nb, nb, BRICK**3), dtype=np.uint8)
        self.bricks = np.zeros((WORLD_HEIGHT // BRICK, nb, nb), dtype=np.uint8)
        self.water_bricks = np.zeros_like(self.bricks)
        # 1-D views of the same memory: what the kernel indexes.
        self.blocks_flat = self.blocks.reshape(-1)
        self.bricks_flat = self.bricks.reshape(-1)
        self.sections = np.zeros((SECTIONS_Y, n // S, n // S), dtype=np.uint16)
        self.water_sections = np.zeros_like(self.sections)
        self.heights4 = np.zeros((n // BRICK, n // BRICK), dtype=np.uint8)
        self.heights16 = np.zeros((n // S, n // S), dtype=np.uint8)
        self.cover = np.zeros((n, n), dtype=np.uint8)
        self.sections_flat = self.sections.reshape(-1)
        self.water_bricks_flat = self.water_bricks.reshape(-1)
        self.water_sections_flat = self.water_sections.reshape(-1)
        self.heights4_flat = self.heights4.reshape(-1)
        self.heights16_flat = self.heights16.reshape(-1)
        self.loaded: set[SectionKey] = set()
        self._half = n // (2 * S)  # window half-width in sections
        cx, cz = center
        self.origin_sx = (int(np.floor(cx)) >> 4) - self._half
        self.origin_sz = (int(np.floor(cz)) >> 4) - self._half

    # -- window -------------------------------------------------------------
    @property
    def origin(self) -> tuple[int, int]:
        """Block (x, z) of the window's low corner; the window is ``size`` wide."""
        return self.origin_sx * S, self.origin_sz * S

    def column_in_window(self, sx: int, sz: int) -> bool:
        n = self.size // S
        return 0 <= sx - self.origin_sx < n and 0 <= sz - self.origin_sz < n

    def reaches(self, x: float, z: float, radius: int) -> bool:
        """Whether the window holds every column within ``radius`` blocks (in x
        and z) of (x, z): true a little way off centre too, where the
        power-of-two width leaves room (see `_window_size`)."""
        lo_x = int(np.floor(x - radius)) >> 4
        lo_z = int(np.floor(z - radius)) >> 4
        hi_x = int(np.floor(x + radius)) >> 4
        hi_z = int(np.floor(z + radius)) >> 4
        return self.column_in_window(lo_x, lo_z) and self.column_in_window(hi_x, hi_z)

    def contains(self, x: int, y: int, z: int) -> bool:
        return 0 <= y < WORLD_HEIGHT and self.column_in_window(x >> 4, z >> 4)

    def window_columns(self) -> Iterable[tuple[int, int]]:
        n = self.size // S
        for dz in range(n):
            for dx in range(n):
                yield self.origin_sx + dx, self.origin_sz + dz

    def recenter(self, x: float, z: float) -> list[SectionKey]:
        """Move the window to centre on (x, z); returns the sections forgotten.

        Columns that stay in the window are not touched; those that leave
        are zeroed (their slots will hold other columns)."""
        osx = (int(np.floor(x)) >> 4) - self._half
        osz = (int(np.floor(z)) >> 4) - self._half
        if (osx, osz) == (self.origin_sx, self.origin_sz):
            return []
        old = list(self.window_columns())
        self.origin_sx, self.origin_sz = osx, osz
        gone_columns = {c for c in old if not self.column_in_window(*c)}
        forgotten = [k for k in self.loaded if (k[0], k[2]) in gone_columns]
        for sx, sz in gone_columns:
            self._zero_column(sx, sz)
        self.loaded.difference_update(forgotten)
        return forgotten

    def missing_sections(self, radius: int | None = None) -> list[SectionKey]:
        """Sections of the window (within ``radius`` blocks of its centre, in
        x and z) that are not loaded, nearest column first."""
        cx = (self.origin_sx + self._half) * S + S // 2
        cz = (self.origin_sz + self._half) * S + S // 2
        cols = []
        for sx, sz in self.window_columns():
            dx = abs(sx * S + S // 2 - cx)
            dz = abs(sz * S + S // 2 - cz)
            if radius is None or max(dx, dz) <= radius + S // 2:
                cols.append((dx * dx + dz * dz, sx, sz))
        cols.sort()
        return [(sx, sy, sz) for _, sx, sz in cols for sy in range(SECTIONS_Y)
                if (sx, sy, sz) not in self.loaded]  # fmt: skip

    # -- sections -----------------------------------------------------------
    def _slices(self, sx: int, sz: int) -> tuple[slice, slice]:
        """Block slices (z, x) of a section column's slot."""
        x0 = (sx * S) & self.mask
        z0 = (sz * S) & self.mask
        return slice(z0, z0 + S), slice(x0, x0 + S)

    def _brick_slices(self, sx: int, sz: int) -> tuple[slice, slice]:
        zs, xs = self._slices(sx, sz)
        return (
            slice(zs.start // BRICK, zs.stop // BRICK),
            slice(xs.start // BRICK, xs.stop // BRICK),
        )

    def column(self, sx: int, sz: int) -> np.ndarray:
        """A ``[y, z, x]`` copy of the blocks of a section column's slot."""
        bz, bx = self._brick_slices(sx, sz)
        return from_bricks(self.blocks[:, bz, bx])

    def set_section(self, key: SectionKey, arr: np.ndarray) -> bool:
        """Load (or replace) one section; False if it lies outside the window."""
        sx, sy, sz = key
        if not (0 <= sy < SECTIONS_Y and self.column_in_window(sx, sz)):
            return False
        if arr.shape != (S, S, S):
            raise ValueError(f"section array must be {(S, S, S)}, got {arr.shape}")
        bz, bx = self._brick_slices(sx, sz)
        by = slice(sy * S // BRICK, (sy + 1) * S // BRICK)
        self.blocks[by, bz, bx] = to_bricks(arr)
        self._recount(sx, sy, sz)
        self.loaded.add(key)
        return True

    def clear_section(self, key: SectionKey) -> None:
        """Forget one section (it reads as air again)."""
        sx, sy, sz = key
        if 0 <= sy < SECTIONS_Y and self.column_in_window(sx, sz):
            bz, bx = self._brick_slices(sx, sz)
            self.blocks[sy * S // BRICK : (sy + 1) * S // BRICK, bz, bx] = 0
            self._recount(sx, sy, sz)
        self.loaded.discard(key)

    def _recount(self, sx: int, sy: int, sz: int) -> None:
        zs, xs = self._slices(sx, sz)
        bz, bx = self._brick_slices(sx, sz)
        y0 = sy * S
        by = slice(y0 // BRICK, (y0 + S) // BRICK)
        counts = np.count_nonzero(self.blocks[by, bz, bx], axis=3)
        self.bricks[by, bz, bx] = counts
        total = int(counts.sum())
        self.sections[sy, zs.start // S, xs.start // S] = total
        water = np.count_nonzero(IS_WATER[self.blocks[by, bz, bx]], axis=3)
        self.water_bricks[by, bz, bx] = water
        self.water_sections[sy, zs.start // S, xs.start // S] = int(water.sum())
        column = self.column(sx, sz)
        self.cover[zs, xs] = _column_cover(column)
        b = S // BRICK
        tops = _column_top(column != 0).reshape(b, BRICK, b, BRICK).max(axis=(1, 3))
        self.heights4[bz, bx] = tops
        self.heights16[zs.start // S, xs.start // S] = tops.max()

    def _zero_column(self, sx: int, sz: int) -> None:
        zs, xs = self._slices(sx, sz)
        bz, bx = self._brick_slices(sx, sz)
        self.blocks[:, bz, bx] = 0
        self.bricks[:, bz, bx] = 0
        self.sections[:, zs.start // S, xs.start // S] = 0
        self.water_bricks[:, bz, bx] = 0
        self.water_sections[:, zs.start // S, xs.start // S] = 0
        self.heights4[bz, bx] = 0
        self.heights16[zs.start // S, xs.start // S] = 0
        self.cover[zs, xs] = 0

    # -- blocks -------------------------------------------------------------
    def get_block(self, x: int, y: int, z: int) -> int:
        """The block the renderer sees (air outside the window or unloaded)."""
        if not self.contains(x, y, z):
            return int(BlockId.AIR)
        xi, zi = x & self.mask, z & self.mask
        return int(self.blocks[y >> 2, zi >> 2, xi >> 2, _local(xi, y, zi)])

    def set_block(self, x: int, y: int, z: int, block: int) -> bool:
        """Write one block (an edit); False if outside the window.

        Updates the voxel, its brick and section counts and, if needed, its
        column's ``cover``: never a rebuild. Writing into a section that was
        not loaded makes it loaded (as air plus this block), so tiny scenes
        can be built block by block."""
        if not self.contains(x, y, z):
            return False
        xi, zi = x & self.mask, z & self.mask
        idx = (y >> 2, zi >> 2, xi >> 2, _local(xi, y, zi))
        old = int(self.blocks[idx])
        block = int(block)
        self.loaded.add((x >> 4, y >> 4, z >> 4))
        if old == block:
            return True
        self.blocks[idx] = block
        b_idx = (y // BRICK, zi // BRICK, xi // BRICK)
        s_idx = (y // S, zi // S, xi // S)
        # Python ints throughout: numpy refuses uint8 + (-1).
        wet = int(IS_WATER[block]) - int(IS_WATER[old])
        if wet:
            self.water_bricks[b_idx] = int(self.water_bricks[b_idx]) + wet
            self.water_sections[s_idx] = int(self.water_sections[s_idx]) + wet
        delta = int(block != 0) - int(old != 0)
        if delta:
            self.bricks[b_idx] = int(self.bricks[b_idx]) + delta
            self.sections[s_idx] = int(self.sections[s_idx]) + delta
            self._update_heights(xi, y, zi, block != 0)
        cover = int(self.cover[zi, xi])
        if LIGHT_BLOCKING[block] and y + 1 > cover:
            self.cover[zi, xi] = y + 1
        elif y + 1 == cover and not LIGHT_BLOCKING[block]:
            stack = self.blocks[:, zi >> 2, xi >> 2].reshape(WORLD_HEIGHT, BRICK * BRICK)
            below = np.flatnonzero(LIGHT_BLOCKING[stack[:y, ((zi & 3) << 2) | (xi & 3)]])
            self.cover[zi, xi] = int(below[-1]) + 1 if below.size else 0
        return True

    def _update_heights(self, xi: int, y: int, zi: int, added: bool) -> None:
        h4 = (zi // BRICK, xi // BRICK)
        h16 = (zi // S, xi // S)
        if added:
            if y + 1 > self.heights4[h4]:
                self.heights4[h4] = y + 1
                self.heights16[h16] = max(int(self.heights16[h16]), y + 1)
        elif y + 1 == self.heights4[h4]:
            # The 4×4 column is one brick stack: rows of 16 blocks per y.
            cell = self.blocks[:, h4[0], h4[1]].reshape(WORLD_HEIGHT, BRICK * BRICK)
            self.heights4[h4] = _column_top(cell != 0).max()
            z0, x0 = h16[0] * S // BRICK, h16[1] * S // BRICK
            self.heights16[h16] = self.heights4[z0 : z0 + S // BRICK, x0 : x0 + S // BRICK].max()

    def fill(self, x0: int, y0: int, z0: int, x1: int, y1: int, z1: int, block: int) -> None:
        """Set every block of the inclusive box (for tests and tools)."""
        for y in range(min(y0, y1), max(y0, y1) + 1):
            for z in range(min(z0, z1), max(z0, z1) + 1):
                for x in range(min(x0, x1), max(x0, x1) + 1):
                    self.set_block(x, y, z, block)

    # -- building -----------------------------------------------------------
    @classmethod
    def from_world(cls, world, center: tuple[float, float], radius: int = 112) -> WorldView:
        """A view of ``world`` (anything with ``section(key)``, e.g. `World`)
        around ``center`` = (x, z), loading every section within ``radius``
        blocks (in x and z) of it."""
        view = cls(radius=radius, center=center)
        for key in view.missing_sections(radius):
            view.set_section(key, world.section(key))
        return view
