"""Deterministic terrain: heightmap, biomes, water, caves and trees from a seed.

The generator works on whole columns (16 × 128 × 16 blocks, ``[y, z, x]``)
with numpy and keeps a small LRU of recent columns, so the eight sections of
a column cost one column generation.

How a column is made (everything is a pure function of the seed and the
world position, never of the order columns are generated in):

1. **Climate** — four low-frequency 2D fBm fields (continent, mountains,
   temperature, humidity) are evaluated on a coarse grid aligned to multiples
   of 4 blocks and bilinearly interpolated (they change slowly; this is a
   large saving). Biome weights are smooth functions of them, and heights
   blend the biomes' shapes through those weights, so borders make no cliffs.
2. **Height** — sea floor / shore / land from the continent field, plus a
   detail fBm whose amplitude depends on the biome, plus ridged mountains.
3. **Surface** — per biome: grass over dirt (plains, forest, low mountains),
   sand (desert, beaches, shallow sea floor), gravel (deep sea floor), bare
   stone and snow on peaks; water fills everything below ``SEA_LEVEL``;
   bedrock at ``y = 0``.
4. **Caves** — "spaghetti" tunnels where two 3D noise fields are both near
   zero (``a² + b² < t``). The 3D noise is evaluated on a lattice every 4
   blocks and trilinearly interpolated, like Minecraft. Near the sea the
   tunnels stay a few blocks below the lowest neighbouring floor, so no cave
   opens into the ocean.
5. **Trees** — at most one per 5 × 5 cell, at a hashed offset, with a
   probability set by the biome. A column looks at all cells within two
   blocks of it, so it places the canopies of its neighbours' trees too:
   canopies are continuous across column borders. Leaves only fill air and
   trunks only replace air or leaves, so overlapping trees give the same
   result in any order.

Queries: `surface_height(x, z)` is the highest solid block of the generated
column (tree blocks included); `spawn_point()` is the feet position on the
nearest dry terrain block to (0, 0) with air at feet and head height;
`surface(xs, zs)` gives heights and biomes of many points without generating
columns (for maps, tests and the spawn search).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from world.blocks import BLOCKS, BlockId
from world.coords import SEA_LEVEL, SECTION_SIZE, SECTIONS_Y, WORLD_HEIGHT, SectionKey
from world.noise import Fbm2, Fbm3, derive_seed, fbm2_many, fbm3_many, hash2

S = SECTION_SIZE
MARGIN = 2  # canopy radius: a column needs the trees of cells this far outside it
WIN = S + 2 * MARGIN  # side of the 2D window a column evaluates
COARSE = 4  # climate grid and cave lattice spacing (blocks)
TREE_CELL = 5  # one tree at most per 5 × 5 cell ...
TREE_JITTER = 3  # ... at offset 0..2, so trunks are at least 3 apart
MAX_TERRAIN = WORLD_HEIGHT - 12  # room for the tallest tree above the highest ground
STONE_LINE = 84  # mountains: bare stone above this height ...
SNOW_LINE = 96  # ... and snow above this one


class Biome(IntEnum):
    OCEAN = 0
    BEACH = 1
    PLAINS = 2
    FOREST = 3
    DESERT = 4
    MOUNTAINS = 5


# Per-biome surface block, block under it and how deep that layer goes.
_SAND, _GRASS, _DIRT = BlockId.SAND, BlockId.GRASS, BlockId.DIRT
_TOP = np.array([_SAND, _SAND, _GRASS, _GRASS, _SAND, _GRASS], dtype=np.uint8)
_SUB = np.array([_SAND, _SAND, _DIRT, _DIRT, _SAND, _DIRT], dtype=np.uint8)
_DEPTH = np.array([3, 3, 3, 3, 4, 2])
# Chance that a tree cell holds a tree, per biome (only on grass above the sea).
_TREE_CHANCE = np.array([0.0, 0.0, 0.05, 0.8, 0.0, 0.25])


@dataclass(frozen=True, slots=True)
class Surface:
    """Terrain shape at a set of (x, z) points, before caves and trees."""

    height: np.ndarray  # int64: y of the top terrain block
    biome: np.ndarray  # uint8 Biome codes
    top: np.ndarray  # uint8 surface block id
    sub: np.ndarray  # uint8 block under the surface
    depth: np.ndarray  # int64: how many `sub` blocks under the top one


def _smoothstep(lo: float, hi: float, v: np.ndarray) -> np.ndarray:
    t = np.clip((v - lo) * (1.0 / (hi - lo)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _lerp_axis(a: np.ndarray, axis: int, step: int) -> np.ndarray:
    """Upsample `a` by `step` along `axis` with linear interpolation.

    ``n`` lattice values become ``(n - 1) * step`` fine values, fine index
    ``i * step + k`` being ``lo + (hi - lo) * (k / step)``. `step` is a power
    of two, so the weights are exact and the result does not depend on which
    window the lattice came from.
    """
    a = np.moveaxis(a, axis, 0)
    lo, hi = a[:-1], a[1:]
    t = (np.arange(step, dtype=np.float64) / step).reshape((1, step) + (1,) * (a.ndim - 1))
    fine = lo[:, None] + (hi - lo)[:, None] * t
    fine = fine.reshape(((a.shape[0] - 1) * step, *a.shape[1:]))
    return np.moveaxis(fine, 0, axis)


class TerrainGenerator:
    """The default world generator (implements `world.generator.SectionGenerator`)."""

    def __init__(self, seed: int, cache_columns: int = 32) -> None:
        self.seed = int(seed)
        self._cache_size = max(1, cache_columns)
        self._columns: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the server may generate from a worker thread
        self._spawn: tuple[float, float, float] | None = None
        s = self.seed
        # Climate (coarse grid): continent decides sea and land, the others biomes.
        self._climate = (
            Fbm2(s, 1 / 640, octaves=4, salt="continent"),
            Fbm2(s, 1 / 360, octaves=3, salt="mountain"),
            Fbm2(s, 1 / 480, octaves=3, salt="temperature"),
            Fbm2(s, 1 / 300, octaves=2, salt="humidity"),
        )
        # Detail (every block): rolling hills and mountain ridges.
        self._detail = (
            Fbm2(s, 1 / 96, octaves=5, salt="hills"),
            Fbm2(s, 1 / 160, octaves=4, salt="ridges"),
        )
        # Caves: two fields whose common zero set is a network of tunnels.
        self._caves = (
            Fbm3(s, (1 / 56, 1 / 36, 1 / 56), octaves=2, gain=0.4, salt="cave-a"),
            Fbm3(s, (1 / 56, 1 / 36, 1 / 56), octaves=2, gain=0.4, salt="cave-b"),
        )
        self._tree_seed = derive_seed(s, "trees")

    # -- the SectionGenerator protocol ------------------------------------
    def generate_section(self, key: SectionKey) -> np.ndarray:
        sx, sy, sz = key
        if not 0 <= sy < SECTIONS_Y:
            raise ValueError(f"section y {sy} outside 0..{SECTIONS_Y - 1}")
        column = self.column(sx, sz)
        return column[sy * S : (sy + 1) * S].copy()

    def column(self, cx: int, cz: int) -> np.ndarray:
        """The read-only ``uint8[128, 16, 16]`` blocks of column (cx, cz), cached."""
        key = (int(cx), int(cz))
        with self._lock:
            col = self._columns.get(key)
            if col is not None:
                self._columns.move_to_end(key)
                return col
        col = self._generate_column(*key)
        col.flags.writeable = False
        with self._lock:
            self._columns[key] = col
            self._columns.move_to_end(key)
            while len(self._columns) > self._cache_size:
                self._columns.popitem(last=False)
        return col

    # -- queries the server and tests use ---------------------------------
    def surface_height(self, x: int, z: int) -> int:
        """y of the highest solid block at (x, z) (trees included), -1 if none."""
        col = self.column(x >> 4, z >> 4)
        solid = BLOCKS.solid[col[:, z & 15, x & 15]]
        ys = np.flatnonzero(solid)
        return int(ys[-1]) if ys.size else -1

    def spawn_point(self) -> tuple[float, float, float]:
        """Feet position on dry ground near (0, 0): the nearest column whose top
        is a terrain block above the sea with air at feet and head height."""
        if self._spawn is None:
            self._spawn = self._find_spawn()
        return self._spawn

    def surface(self, x: np.ndarray, z: np.ndarray) -> Surface:
        """Terrain height, biome and surface blocks at any (x, z) points."""
        x = np.asarray(x, dtype=np.int64)
        z = np.asarray(z, dtype=np.int64)
        x, z = np.broadcast_arrays(x, z)
        # The same coarse corners and interpolation arithmetic as the column
        # window path, so both give bit-identical values.
        x0 = (x // COARSE) * COARSE
        z0 = (z // COARSE) * COARSE
        tx = (x - x0) / COARSE
        tz = (z - z0) / COARSE
        corners = [
            fbm2_many(self._climate, x0 + dx, z0 + dz) for dz in (0, COARSE) for dx in (0, COARSE)
        ]
        climate = []
        for i in range(len(self._climate)):
            c00, c10, c01, c11 = (c[i] for c in corners)
            a = c00 + (c10 - c00) * tx
            b = c01 + (c11 - c01) * tx
            climate.append(a + (b - a) * tz)
        detail = fbm2_many(self._detail, x, z)
        return self._shape(*climate, *detail)

    def biome(self, x: int, z: int) -> Biome:
        return Biome(int(self.surface(np.array([x]), np.array([z])).biome[0]))

    # -- terrain shape -----------------------------------------------------
    def _window_surface(self, xmin: int, zmin: int, n: int) -> Surface:
        """`surface` over the n × n block square at (xmin, zmin), indexed [z, x]."""
        # Coarse grid covering the window, aligned to multiples of COARSE.
        cx0 = (xmin // COARSE) * COARSE
        cz0 = (zmin // COARSE) * COARSE
        nx = (xmin + n - 1 - cx0) // COARSE + 2
        nz = (zmin + n - 1 - cz0) // COARSE + 2
        gx = cx0 + COARSE * np.arange(nx, dtype=np.int64)
        gz = cz0 + COARSE * np.arange(nz, dtype=np.int64)
        coarse = fbm2_many(self._climate, gx[None, :], gz[:, None])
        ox, oz = xmin - cx0, zmin - cz0
        climate = []
        for c in coarse:
            f = _lerp_axis(_lerp_axis(c, 1, COARSE), 0, COARSE)
            climate.append(f[oz : oz + n, ox : ox + n])
        xs = np.arange(xmin, xmin + n, dtype=np.int64)
        zs = np.arange(zmin, zmin + n, dtype=np.int64)
        detail = fbm2_many(self._detail, xs[None, :], zs[:, None])
        return self._shape(*climate, *detail)

    def _shape(
        self,
        continent: np.ndarray,
        mountain: np.ndarray,
        temperature: np.ndarray,
        humidity: np.ndarray,
        hills: np.ndarray,
        ridges: np.ndarray,
    ) -> Surface:
        continent = continent + 0.04  # about a third of the world is sea
        land = _smoothstep(-0.06, 0.1, continent)
        mount = _smoothstep(0.04, 0.26, mountain) * land
        desert = _smoothstep(0.06, 0.18, temperature) * (1.0 - mount)
        # Sea floor to shore to lowland follows the continent field; hills get
        # flatter in the desert; ridged noise (sharp crests) makes mountains.
        base = SEA_LEVEL + 1.0 + np.clip(continent * 70.0, -22.0, 9.0)
        amp = (6.0 - 3.0 * desert) * (0.4 + 0.6 * land)
        ridge = 1.0 - np.abs(ridges) * 2.0
        ridge = np.clip(ridge, 0.0, 1.0)
        peaks = mount * (14.0 + 46.0 * ridge * ridge)
        h = base + amp * hills * 2.0 + peaks
        height = np.clip(np.floor(h), 3, MAX_TERRAIN).astype(np.int64)

        biome = np.where(humidity > 0.04, Biome.FOREST, Biome.PLAINS).astype(np.uint8)
        biome[desert >= 0.5] = Biome.DESERT
        biome[mount >= 0.5] = Biome.MOUNTAINS
        low = height <= SEA_LEVEL + 1
        biome[low & (biome != Biome.MOUNTAINS)] = Biome.BEACH
        biome[height < SEA_LEVEL - 1] = Biome.OCEAN

        top = _TOP[biome].astype(np.uint8)
        sub = _SUB[biome].astype(np.uint8)
        depth = _DEPTH[biome]
        deep = (biome == Biome.OCEAN) & (height < SEA_LEVEL - 8)
        top[deep] = BlockId.GRAVEL
        sub[deep] = BlockId.GRAVEL
        rock = height >= STONE_LINE
        top[rock] = BlockId.STONE
        depth = np.where(rock, 0, depth)
        top[height >= SNOW_LINE] = BlockId.SNOW
        # Mountain foot that reaches below the sea: sand, like a beach.
        wet = low & (top == BlockId.GRASS)
        top[wet] = BlockId.SAND
        sub[wet] = BlockId.SAND
        return Surface(height, biome, top, sub, depth)

    # -- columns -------------------------------------------------------------
    def _generate_column(self, cx: int, cz: int) -> np.ndarray:
        x0, z0 = cx * S, cz * S
        win = self._window_surface(x0 - MARGIN, z0 - MARGIN, WIN)
        inner = slice(MARGIN, MARGIN + S)
        h = win.height[inner, inner]
        col = self._fill(h, win.top[inner, inner], win.sub[inner, inner], win.depth[inner, inner])
        self._carve_caves(col, x0, z0, win.height)
        self._plant_trees(col, x0, z0, win)
        return col

    @staticmethod
    def _fill(h: np.ndarray, top: np.ndarray, sub: np.ndarray, depth: np.ndarray) -> np.ndarray:
        y = np.arange(WORLD_HEIGHT, dtype=np.int64)[:, None, None]
        above = np.where(y <= SEA_LEVEL, np.uint8(BlockId.WATER), np.uint8(BlockId.AIR))
        ground = np.where(y >= (h - depth)[None], sub[None], np.uint8(BlockId.STONE))
        ground = np.where(y == h[None], top[None], ground)
        col = np.where(y > h[None], above, ground)
        col[0] = BlockId.BEDROCK
        return col

    def _carve_caves(self, col: np.ndarray, x0: int, z0: int, wheight: np.ndarray) -> None:
        # Highest y a tunnel may reach per column: the surface itself on dry
        # land; a few blocks under the lowest neighbouring floor near water.
        n = wheight.shape[0]
        m = MARGIN
        hmin = wheight[m - 1 : m + S + 1, m - 1 : m + S + 1]
        hmin = np.minimum(np.minimum(hmin[:-2], hmin[1:-1]), hmin[2:])
        hmin = np.minimum(np.minimum(hmin[:, :-2], hmin[:, 1:-1]), hmin[:, 2:])
        h = wheight[m : n - m, m : n - m]
        limit = np.where(hmin <= SEA_LEVEL + 1, hmin - 5, h)
        ytop = int(limit.max())
        if ytop < 2:
            return
        ny = ytop // COARSE + 2  # lattice rows covering 0..ytop
        gy = COARSE * np.arange(ny, dtype=np.float64)
        g = COARSE * np.arange(S // COARSE + 1, dtype=np.float64)
        a, b = fbm3_many(
            self._caves, (x0 + g)[None, None, :], gy[:, None, None], (z0 + g)[None, :, None]
        )
        dens = a * a + b * b
        dens = _lerp_axis(_lerp_axis(_lerp_axis(dens, 0, COARSE), 1, COARSE), 2, COARSE)
        dens = dens[: ytop + 1]
        y = np.arange(ytop + 1, dtype=np.int64)[:, None, None]
        # Wider tunnels deep down, thinner ones higher up, and few, narrow
        # openings through the last blocks under the surface.
        thr = np.where(y < 32, 0.012, 0.008)
        thr = np.where(y > (h - 4)[None], thr * 0.4, thr)
        carve = (dens < thr) & (y <= limit[None]) & (y >= 1)
        col[: ytop + 1][carve] = BlockId.AIR

    def _plant_trees(self, col: np.ndarray, x0: int, z0: int, win: Surface) -> None:
        lo_x, lo_z = x0 - MARGIN, z0 - MARGIN
        kx = np.arange(lo_x // TREE_CELL, (lo_x + WIN - 1) // TREE_CELL + 1, dtype=np.int64)
        kz = np.arange(lo_z // TREE_CELL, (lo_z + WIN - 1) // TREE_CELL + 1, dtype=np.int64)
        kx, kz = np.meshgrid(kx, kz)
        r = hash2(kx, kz, self._tree_seed)
        tx = kx * TREE_CELL + (r % TREE_JITTER).astype(np.int64)
        tz = kz * TREE_CELL + ((r >> np.uint32(8)) % TREE_JITTER).astype(np.int64)
        wx, wz = tx - lo_x, tz - lo_z
        ok = (wx >= 0) & (wx < WIN) & (wz >= 0) & (wz < WIN)
        wx, wz, r = wx[ok], wz[ok], r[ok]
        biome = win.biome[wz, wx]
        chance = (r >> np.uint32(16)).astype(np.float64) / 65536.0
        h = win.height[wz, wx]
        ok = (chance < _TREE_CHANCE[biome]) & (win.top[wz, wx] == BlockId.GRASS)
        ok &= h > SEA_LEVEL
        if not ok.any():
            return
        # Column-local trunk positions and trunk heights 4..6.
        lx, lz, h = wx[ok] - MARGIN, wz[ok] - MARGIN, h[ok]
        trunk = 4 + ((r[ok] >> np.uint32(12)) % np.uint32(3)).astype(np.int64)
        ytop = h + trunk
        # Leaves: (dy from trunk top, dz, dx) offsets of a small oak canopy.
        ly = ytop[:, None] + _CANOPY[None, :, 0]
        lz_ = lz[:, None] + _CANOPY[None, :, 1]
        lx_ = lx[:, None] + _CANOPY[None, :, 2]
        inside = (lx_ >= 0) & (lx_ < S) & (lz_ >= 0) & (lz_ < S)
        ly, lz_, lx_ = ly[inside], lz_[inside], lx_[inside]
        air = col[ly, lz_, lx_] == BlockId.AIR
        col[ly[air], lz_[air], lx_[air]] = BlockId.LEAVES
        # Trunks (only those standing in this column).
        own = (lx >= 0) & (lx < S) & (lz >= 0) & (lz < S)
        for x, z, y0, y1 in zip(lx[own], lz[own], h[own], ytop[own], strict=True):
            stem = col[y0 + 1 : y1 + 1, z, x]
            stem[(stem == BlockId.AIR) | (stem == BlockId.LEAVES)] = BlockId.WOOD
            if col[y0, z, x] == BlockId.AIR:  # a cave opened under the tree
                col[y0, z, x] = BlockId.DIRT

    # -- spawn ---------------------------------------------------------------
    def _find_spawn(self) -> tuple[float, float, float]:
        for radius in (32, 128, 512, 2048):
            step = 1 if radius <= 32 else radius // 32
            axis = np.arange(-radius, radius + 1, step, dtype=np.int64)
            xs, zs = np.meshgrid(axis, axis)
            surf = self.surface(xs, zs)
            dry = (surf.height > SEA_LEVEL) & (surf.biome != Biome.OCEAN)
            if not dry.any():
                continue
            d2 = xs * xs + zs * zs
            # Nearest first; ties broken by (x, z) so the choice is unique.
            order = np.lexsort((zs[dry], xs[dry], d2[dry]))
            for i in order[:256]:
                x, z = int(xs[dry][i]), int(zs[dry][i])
                feet = self._standable(x, z)
                if feet is not None:
                    return (x + 0.5, float(feet), z + 0.5)
        return (0.5, float(WORLD_HEIGHT), 0.5)  # no land at all: fall from the sky

    def _standable(self, x: int, z: int) -> int | None:
        col = self.column(x >> 4, z >> 4)
        stack = col[:, z & 15, x & 15]
        y = self.surface_height(x, z)
        if y < 1 or y + 2 >= WORLD_HEIGHT:
            return None
        ground = int(stack[y])
        if ground in (BlockId.LEAVES, BlockId.WOOD) or not BLOCKS.solid[ground]:
            return None
        if stack[y + 1] != BlockId.AIR or stack[y + 2] != BlockId.AIR:
            return None
        return y + 1


def _canopy() -> np.ndarray:
    offsets = []
    for dy, radius in ((-2, 2), (-1, 2), (0, 1), (1, 1)):
        for dz in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                corner = abs(dx) == radius and abs(dz) == radius
                if corner and (radius == 2 or dy == 1):
                    continue  # rounded: no corners on the wide layers, a plus on top
                offsets.append((dy, dz, dx))
    return np.array(offsets, dtype=np.int64)


_CANOPY = _canopy()
