"""Procedural 16×16 block textures and the atlas the ray-caster samples.

No image assets: every texture is drawn from deterministic numpy noise
(PCG64 seeded per texture key), so every machine builds the same atlas and a
client and a render node show the same picture.

The atlas is ``float32[LODS, slots, 3, 16, 16, 4]``: mip level, texture
slot, face kind (top, side, bottom), row (0 = top of a side face), column,
RGBA in 0..1. Every mip level is stored upsampled back to 16×16 so the
kernel indexes all levels the same way. Alpha 0 is a hole (leaves); for
glass and water, alpha is how much of the texel covers what lies behind.
``slot_of_block[id]`` maps a block id to its slot; unknown ids get a
magenta "missing" texture rather than indexing out of range.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from world.blocks import BLOCKS, BlockId

T = 16  # texels per block edge
LODS = 5  # 16, 8, 4, 2, 1 texels per block edge
FACE_TOP, FACE_SIDE, FACE_BOTTOM = 0, 1, 2
TEXTURE_SEED = 0x5C1F7C4A

Tex = np.ndarray  # float32[16, 16, 4]
FaceSet = tuple[Tex, Tex, Tex]  # top, side, bottom


# -- noise helpers -------------------------------------------------------------
def _white(rng: np.random.Generator) -> np.ndarray:
    return rng.random((T, T))


def _smooth(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Tileable value noise: a ``cells``×``cells`` lattice, bilinear to 16×16."""
    grid = rng.random((cells, cells))
    pos = (np.arange(T) + 0.5) * cells / T - 0.5
    i0 = np.floor(pos).astype(np.int64)
    f = pos - i0
    f = f * f * (3 - 2 * f)
    i0 %= cells
    i1 = (i0 + 1) % cells
    rows0 = grid[i0][:, i0] * (1 - f)[None, :] + grid[i0][:, i1] * f[None, :]
    rows1 = grid[i1][:, i0] * (1 - f)[None, :] + grid[i1][:, i1] * f[None, :]
    return rows0 * (1 - f)[:, None] + rows1 * f[:, None]


def _fbm(rng: np.random.Generator) -> np.ndarray:
    n = 0.5 * _smooth(rng, 2) + 0.3 * _smooth(rng, 4) + 0.2 * _smooth(rng, 8)
    return (n - n.min()) / max(1e-6, float(n.max() - n.min()))


def _cells(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Tileable Voronoi: per texel, the index of its nearest seed and the gap
    between the nearest and second-nearest distance (small on cell borders)."""
    pts = rng.random((n, 2)) * T
    yy, xx = np.mgrid[0:T, 0:T] + 0.5
    d = np.full((n, T, T), np.inf)
    for oy in (-T, 0, T):
        for ox in (-T, 0, T):
            dy = yy[None] - (pts[:, 0, None, None] + oy)
            dx = xx[None] - (pts[:, 1, None, None] + ox)
            d = np.minimum(d, np.hypot(dx, dy))
    order = np.sort(d, axis=0)
    return np.argmin(d, axis=0), order[1] - order[0]


def _rgba(base: tuple[float, float, float] | np.ndarray, shade: np.ndarray, alpha=1.0) -> Tex:
    base = np.asarray(base, dtype=np.float64)
    rgb = np.clip(base[None, None, :] / 255.0 * shade[:, :, None], 0.0, 1.0)
    a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (T, T))
    return np.dstack([rgb, a]).astype(np.float32)


# -- one generator per texture key ----------------------------------------------
def _stone(rng, base) -> FaceSet:
    n = 0.65 * _fbm(rng) + 0.35 * _white(rng)
    t = _rgba(base, 0.78 + 0.4 * n)
    return t, t, t


def _dirt(rng, base) -> FaceSet:
    w = _white(rng)
    shade = 0.78 + 0.3 * w + 0.12 * _smooth(rng, 4)
    shade[w > 0.92] *= 0.75  # pebbles
    t = _rgba(base, shade)
    return t, t, t


def _grass(rng, base) -> FaceSet:
    top = _rgba(base, 0.72 + 0.25 * _white(rng) + 0.2 * _fbm(rng))
    bottom = _dirt(rng, BLOCKS.get(BlockId.DIRT).color)[0]
    side = bottom.copy()
    drip = 2 + (rng.random(T) * 3).astype(np.int64)  # green reaches 2..4 rows down
    for x in range(T):
        side[: drip[x], x] = top[: drip[x], x]
    return top, side, bottom


def _sand(rng, base) -> FaceSet:
    t = _rgba(base, 0.9 + 0.12 * _white(rng) + 0.06 * _smooth(rng, 4))
    return t, t, t


def _gravel(rng, base) -> FaceSet:
    idx, gap = _cells(rng, 14)
    tone = 0.7 + 0.45 * rng.random(14)
    shade = tone[idx] * np.where(gap < 0.6, 0.7, 1.0) + 0.08 * _white(rng)
    t = _rgba(base, shade)
    return t, t, t


def _water(rng, base) -> FaceSet:
    yy, xx = np.mgrid[0:T, 0:T]
    waves = 0.5 + 0.5 * np.sin((xx + 2.5 * np.sin(yy * 0.8)) * (2 * np.pi / 8))
    t = _rgba(base, 0.85 + 0.2 * waves + 0.08 * _smooth(rng, 4))
    return t, t, t


def _wood(rng, base) -> FaceSet:
    xx = np.arange(T)[None, :].repeat(T, 0)
    bark = 0.75 + 0.18 * np.sin(xx * 1.9 + 3 * _smooth(rng, 4)) + 0.12 * _white(rng)
    side = _rgba(base, bark)
    yy, xx = np.mgrid[0:T, 0:T] + 0.5
    r = np.hypot(xx - T / 2, yy - T / 2) + 0.8 * _smooth(rng, 4)
    rings = 0.85 + 0.15 * np.cos(r * 2.4)
    top = _rgba((176, 142, 88), rings + 0.06 * _white(rng))
    edge = r > 6.8  # the bark seen end-on
    top[edge] = side[edge]
    return top, side, top


def _leaves(rng, base) -> FaceSet:
    shade = 0.65 + 0.3 * _white(rng) + 0.25 * _smooth(rng, 4)
    alpha = (_white(rng) > 0.27).astype(np.float64)  # about a quarter are holes
    t = _rgba(base, shade, alpha)
    return t, t, t


def _planks(rng, base) -> FaceSet:
    yy, xx = np.mgrid[0:T, 0:T]
    grain = 0.88 + 0.1 * np.sin(xx * 0.9 + 6 * _smooth(rng, 2)) + 0.08 * _white(rng)
    board = yy // 4
    tone = 0.9 + 0.15 * rng.random(4)
    shade = grain * tone[board]
    shade[yy % 4 == 3] *= 0.62  # seam under every board
    joint = (xx == (board * 5 + 3) % T) & (yy % 4 != 3)
    shade[joint] *= 0.7
    t = _rgba(base, shade)
    return t, t, t


def _glass(rng, base) -> FaceSet:
    yy, xx = np.mgrid[0:T, 0:T]
    alpha = np.full((T, T), 0.12)
    frame = (xx == 0) | (yy == 0) | (xx == T - 1) | (yy == T - 1)
    alpha[frame] = 0.85
    streak = ((xx + yy == 9) | (xx + yy == 11)) & (xx > 2) & (xx < 9)
    alpha[streak] = 0.5
    shade = np.where(frame, 0.8, 1.05) + 0.02 * _white(rng)
    t = _rgba(base, shade, alpha)
    return t, t, t


def _brick(rng, base) -> FaceSet:
    yy, xx = np.mgrid[0:T, 0:T]
    row = yy // 4
    mortar = (yy % 4 == 3) | ((xx + 4 * (row % 2)) % 8 == 7)
    brick_id = row * 2 + (xx + 4 * (row % 2)) // 8
    tone = 0.85 + 0.25 * rng.random(16)
    shade = tone[brick_id % 16] * (0.88 + 0.15 * _white(rng))
    t = _rgba(base, shade)
    t[mortar] = _rgba((170, 165, 155), 0.9 + 0.1 * _white(rng))[mortar]
    return t, t, t


def _tnt(rng, base) -> FaceSet:
    yy, xx = np.mgrid[0:T, 0:T]
    side = _rgba(base, 0.85 + 0.2 * _white(rng))
    band = (yy >= 5) & (yy <= 10)
    side[band] = _rgba((235, 235, 225), np.ones((T, T)))[band]
    # "TNT" in the band: two 3-wide T's around a 4-wide N
    letters = np.zeros((T, T), dtype=bool)
    for x0 in (1, 12):
        letters[6, x0 : x0 + 3] = True
        letters[6:10, x0 + 1] = True
    letters[6:10, 6] = letters[6:10, 9] = True
    letters[7, 7] = letters[8, 8] = True
    side[letters] = np.array([0.12, 0.1, 0.1, 1.0], dtype=np.float32)
    top = _rgba((190, 60, 50), 0.85 + 0.2 * _white(rng))
    fuse = (np.abs(yy - 7.5) < 1.6) & (np.abs(xx - 7.5) < 1.6)
    top[fuse] = np.array([0.2, 0.2, 0.2, 1.0], dtype=np.float32)
    bottom = _rgba((120, 110, 100), 0.9 + 0.2 * _white(rng))
    return top, side, bottom


def _bedrock(rng, base) -> FaceSet:
    t = _rgba(base, 0.6 + 0.8 * _white(rng) * _smooth(rng, 4))
    return t, t, t


def _snow(rng, base) -> FaceSet:
    t = _rgba(base, 0.94 + 0.06 * _white(rng))
    return t, t, t


def _cobble(rng, base) -> FaceSet:
    idx, gap = _cells(rng, 9)
    tone = 0.8 + 0.4 * rng.random(9)
    shade = tone[idx] * (0.9 + 0.15 * _white(rng))
    shade[gap < 0.9] = 0.55
    t = _rgba(base, shade)
    return t, t, t


def _missing(rng, base) -> FaceSet:
    yy, xx = np.mgrid[0:T, 0:T]
    check = ((yy // 8 + xx // 8) % 2).astype(np.float64)
    t = np.dstack([check, np.zeros((T, T)), check, np.ones((T, T))]).astype(np.float32)
    return t, t, t


GENERATORS: dict[str, Callable[[np.random.Generator, tuple[int, int, int]], FaceSet]] = {
    "stone": _stone,
    "dirt": _dirt,
    "grass": _grass,
    "sand": _sand,
    "gravel": _gravel,
    "water": _water,
    "wood": _wood,
    "leaves": _leaves,
    "planks": _planks,
    "glass": _glass,
    "brick": _brick,
    "tnt": _tnt,
    "bedrock": _bedrock,
    "snow": _snow,
    "cobble": _cobble,
}


def _mip(level0: np.ndarray, lod: int) -> np.ndarray:
    """Average 2^lod × 2^lod texel blocks (colour weighted by alpha, so holes
    do not darken leaves) and repeat them back up to 16×16."""
    if lod == 0:
        return level0
    k = 1 << lod
    n = T // k
    blocks = level0.reshape(*level0.shape[:-3], n, k, n, k, 4)
    a = blocks[..., 3:4]
    a_sum = a.sum(axis=(-4, -2))
    rgb = (blocks[..., :3] * a).sum(axis=(-4, -2)) / np.maximum(a_sum, 1e-6)
    avg = np.concatenate([rgb, a_sum / (k * k)], axis=-1)
    return np.repeat(np.repeat(avg, k, axis=-3), k, axis=-2)


def build_atlas() -> tuple[np.ndarray, np.ndarray]:
    """``(atlas, slot_of_block)`` for every block in the registry."""
    blocks = [b for b in BLOCKS if b.texture != "none"]
    slots = len(blocks) + 2  # slot 0: air (unused), last: missing
    missing = slots - 1
    level0 = np.zeros((slots, 3, T, T, 4), dtype=np.float32)
    slot_of_block = np.full(256, missing, dtype=np.int64)
    slot_of_block[0] = 0
    level0[missing] = np.stack(_missing(None, (0, 0, 0)))
    for slot, block in enumerate(blocks, start=1):
        # Seeded by the texture key, so all water levels share one texture.
        rng = np.random.default_rng([TEXTURE_SEED, zlib.crc32(block.texture.encode())])
        faces = GENERATORS[block.texture](rng, block.color)
        level0[slot] = np.stack(faces)
        slot_of_block[block.id] = slot
    atlas = np.stack([_mip(level0, lod) for lod in range(LODS)]).astype(np.float32)
    return np.ascontiguousarray(atlas), slot_of_block
