"""The ray-casting kernel (numba): one primary ray per pixel through the voxels.

Traversal is Amanatides & Woo's DDA with empty-space skipping. Before a
voxel is read the ray looks for the largest empty cell around it: a 16×16
or 4×4 column above its highest block (``heights16``/``heights4``), an
empty 16³ section or 4³ brick, or (under water) a section or brick of
nothing but water. It crosses such a cell in one step and re-derives the
DDA state where it leaves it. Inside an occupied brick it steps voxel by
voxel on local coordinates (the brick is one 64-byte line of the
brick-major block array). Rays stop at the view distance, at the edge of
the view's window, or once they climb above the highest block in view.

A beam pre-pass saves the pixels most of that walk: one ray per screen tile
marches over the column heights (maxed over neighbouring cells, with the
tile's beam radius as vertical margin) while the whole beam is provably in
the air, and every pixel of the tile starts its own ray there. It only
skips air, so the frame is identical with or without it.

Along the way the ray composites front to back: water and glass faces and
the water volume (Beer-Lambert absorption) tint and partly cover what lies
behind; leaves texels with alpha 0 let the ray through; an opaque face, an
avatar box or the sky ends it. Surfaces get a mip-mapped texel, per-face
sun shading, vertex-style ambient occlusion from the 8 neighbours of the
face, a sky-visibility term (``cover``) and distance fog towards the sky
colour of the same ray, so far terrain melts into the sky at the view
distance. A pixel tests only the avatar boxes whose screen rectangle
(projected once a frame, `_avatar_rects`) holds it.

Optionally (``ints[I_SUB]``) the frame is traced coarse to fine, in three
passes: first every 4th pixel of every 4th row, then the rest of the even
rows and columns, then the others. A traced pixel records a plain-hit key
(the plane of the opaque or leaf face that ended its ray, and the water
surface it crossed, if any, with nothing else composited in front; or
`KEY_SKY` for a ray that met nothing; or, for a ray that went through a
hole in the leaf face it met first, that face's key marked `KEY_HOLE`),
its voxel and texel, and how far it went in air (to the face, or to the
water's surface). A pixel of a later pass whose 2 or 4
neighbours of the pass before (left/right, above/below or the corners)
share a key (holes or not) is drawn without a trace: the sky
by its colour, a face by `_reuse` (ray/plane intersection, a check that the
voxels there are what a trace would meet, then the same texel, light,
water and fog terms) or, where all of them drew one texel of one face,
as the mean of their colours (`TEX_SHIFT`). The rest
are traced, starting just short of the nearest point where one of the
neighbours' rays left the air, where all of them have a key: their rays
bracket this one, so it meets nothing before either, and the long rays
along silhouettes and the horizon skip most of their walk (a ray that
`_reuse` found going through a hole in a leaf face starts at that face).
Rays are interpolated
directions from one eye and faces are convex, so the picture is the full
trace's but for rare edge pixels where a block pokes between the traced
rays (tests and ``bench render`` measure the difference: tens of pixels
in a million off by more than 8/255).

Each thread's rows are one call of `_rows`, in which everything is inlined
and nothing is reference-counted (numba would otherwise count every array
handed to a helper, per pixel, atomically); the parallel loop around it
stays tiny, because numba's parallel passes grow superlinearly with the
loop body (the trace inlined there took 3-7 minutes to compile, now about
one). Rows are interleaved between threads (row = k, k + n, k + 2n, ...),
so the cheap sky rows and the expensive horizon rows are spread evenly.
Within a row of a reusing pass, one loop draws what the traced pixels
around allow and lists the rest (``pending``, per thread), and a second
loop traces those: kept apart, the short loop's values stay in registers.

The kernel is bound by latency, not arithmetic: a pixel costs the chain
of dependent steps from its coordinates to its texel and its colour, and
the processor overlaps little else with it. So rays start from the raw
(unnormalised) direction where they can (the normalisation's square root
and division run beside the plane intersection or the DDA's set-up, for
the shading), the mip level is chosen without a division, water depth is
tested on its absorption rather than with a log, and every array index is
unsigned (`_u`: numba then adds no negative-index fix-up, whose axis
lengths the register allocator would have to keep).

Parameters travel in two flat arrays (``prm`` float64, ``ints`` int64)
indexed by the constants below; `renderer.Renderer` fills them.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, prange

from world.blocks import BLOCKS, BlockId
from world.coords import WORLD_HEIGHT

# numba was imported before the renderer package could set NUMBA_CACHE_DIR:
# the cache locator reads the config when the kernels below are decorated.
if not numba.config.CACHE_DIR and os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

# -- block kinds, by id ---------------------------------------------------------
KIND_AIR, KIND_OPAQUE, KIND_CUTOUT, KIND_WATER, KIND_GLASS = 0, 1, 2, 3, 4
# What a ray is inside of: consecutive voxels of the same medium have no
# face between them (a lake is one volume, a glass wall one pane).
MEDIUM_NONE, MEDIUM_WATER, MEDIUM_GLASS, MEDIUM_NEVER = 0, 1, 2, 3


def block_tables(slot_of_block: np.ndarray) -> np.ndarray:
    """``int64[1024]``: per block id, its kind, medium, whether it occludes (AO)
    and its atlas slot, at offsets T_KIND, T_MEDIUM, T_OCCLUDES and T_SLOT."""
    kind = np.full(256, KIND_OPAQUE, dtype=np.uint8)  # unknown ids draw as "missing"
    medium = np.full(256, MEDIUM_NEVER, dtype=np.uint8)
    occludes = np.zeros(256, dtype=np.uint8)
    kind[BlockId.AIR] = KIND_AIR
    medium[BlockId.AIR] = MEDIUM_NONE
    for b in BLOCKS:
        if b.id == BlockId.AIR:
            continue
        if b.fluid_level is not None:
            kind[b.id], medium[b.id] = KIND_WATER, MEDIUM_WATER
        elif b.id == BlockId.GLASS:
            kind[b.id], medium[b.id] = KIND_GLASS, MEDIUM_GLASS
        elif b.id == BlockId.LEAVES:
            kind[b.id] = KIND_CUTOUT
        occludes[b.id] = kind[b.id] in (KIND_OPAQUE, KIND_CUTOUT)
    for i in range(256):
        if not BLOCKS.known[i]:
            occludes[i] = 1
    return np.concatenate([kind, medium, occludes, slot_of_block]).astype(np.int64)


# offsets of the rows of the flat block tables
T_KIND, T_MEDIUM, T_OCCLUDES, T_SLOT = 0, 256, 512, 768

# -- parameter layout -----------------------------------------------------------
P_OX, P_OY, P_OZ = 0, 1, 2
P_FWD = 3  # 3 values
P_RIGHT = 6
P_UP = 9
P_TAN_H, P_TAN_V = 12, 13
P_VIEW, P_FOG_START = 14, 15
P_PIX_ANGLE = 16  # radians a pixel spans (texture LOD, outline width)
P_SUN = 17  # 3: unit vector towards the sun
P_ZENITH = 20  # 3: sky colour straight up
P_HORIZON = 23  # 3: sky colour at and below the horizon
P_SUN_COLOR = 26  # 3
P_WATER_COLOR = 29  # 3: colour of deep water
P_WATER_SIGMA = 32  # absorption per block of water
P_WATER_ALPHA = 33  # how much a water surface covers, looking straight down
P_AO = 34  # ambient occlusion strength (0 = off)
P_SHADOW = 35  # light left on faces the sky cannot see
P_FACE_SHADE = 36  # 6: +x, -x, +y, -y, +z, -z
P_FOG = 42  # 1 = fog on
P_OUTLINE = 43  # 3: colour of the target outline
P_AO_FAR = 46  # AO fades out up to this distance (costly and invisible far away)
P_FOG_SCALE = 47  # 1 / (view distance - fog start)
P_AO_FAR_INV = 48  # 1 / P_AO_FAR (a multiplication in the shading, not a division)
N_PARAMS = 49

I_WX0, I_WZ0, I_MASK = 0, 1, 2  # window origin (blocks), width - 1
I_TARGET = 4  # 3: x, y, z
I_HAS_TARGET = 7
I_AVATARS = 8  # how many rows of the avatar array are live
I_THREADS = 9
I_BRICK_BITS = 10  # log2 of the window width in bricks
I_TILE = 11  # tile size (pixels) of the beam pre-pass; 0 = off
I_SUB = 12  # 1 = trace coarse to fine, reusing the coarser passes' hits (module doc)
N_INTS = 13

# A plain-hit key (see `_trace`): the face index (3 bits), the plane's
# coordinate (12 bits), a deep-water flag, the water surface's y + 1 (0: none).
KEY_FACE_BITS = 3
KEY_DEEP = 1 << 15
KEY_WATER_SHIFT = 16
# The ray met nothing and composited nothing: the sky's own colour.
KEY_SKY = 1 << 40
# The ray met air, then a leaf face, and went on through a hole in it: that
# face's key with this bit. The pixels around meet the same face (`_rows`
# reuses it for them where their own texel is not a hole).
KEY_HOLE = 1 << 41
# A plain face hit's `_vox_key` carries the texel it drew (`_surface`: mip
# level, and row and column at that level, 11 bits) above the voxel's
# bits, which a window of at most `MAX_WINDOW` blocks keeps below bit 52.
# Where the neighbours of a pixel of a later pass all drew one texel of one
# face, so does the pixel (its hit lies between theirs on the plane, and a
# texel is convex): `_rows` blends their colours instead of shading it
# (light and fog vary smoothly).
TEX_SHIFT = 52
MAX_WINDOW = 4096
VOX_BITS = (1 << 44) - 1  # a `_vox_key` >> 8 without the texel
# The per-thread AO cache (`_lit`): corners of the faces met lately, in a
# direct-mapped table (a face's pixels come back to it row after row).
AO_SLOTS = 256
AOC_SIZE = 2 * AO_SLOTS
# Subsampling (`_rows`): the first pass traces every 2**SUB_LEVELS-th pixel of
# every 2**SUB_LEVELS-th row; each later pass halves the spacing. A feature
# narrower than that spacing can fall between the traced rays: 4 pixels is
# a block beyond ~64 blocks at 640x360 (deep in the fog); 8 missed single
# blocks at half that distance, unfogged, and the checks that stop that
# cost what the fourth pass saves (docs/render-node.md, session 6).
SUB_LEVELS = 2
# Blocks short of the nearest neighbour's hit where a ray traced between
# neighbours that met only air starts (`_rows`).
BRACKET_MARGIN = 1.0

# avatar rows: box min (3), box max (3), body rgb (3), head rgb (3),
# y where the head starts, face index (0..5) the avatar looks out of; then
# the pixel rectangle its box covers (x0, x1, y0, y1), which `render_frame`
# fills (`_avatar_rects`)
A_MIN, A_MAX, A_BODY, A_HEAD, A_HEAD_Y, A_FACE, A_RECT = 0, 3, 6, 9, 12, 13, 14
AVATAR_FIELDS = 18
# A box with a corner closer than this in front of the eye (or behind it)
# may cover any pixel: its rectangle is the whole frame.
NEAR_PLANE = 0.05

H_WORLD = WORLD_HEIGHT
FAR = 1e30
# Cells a ray may step through (a ray across a 96-block view takes a few
# hundred): past this it ends as if at the view distance. Rays lying exactly
# in a cell boundary plane once looped forever and froze a render node.
MAX_STEPS = 20000


@njit(cache=True, fastmath=True, inline="always")
def _sky(dx, dy, dz, prm):
    """Sky colour along a direction: horizon to zenith, a halo and the sun."""
    # 1 - (1 - dy)^3: rises fast above the horizon like sqrt, without its latency
    e = 1.0 - dy if dy > 0.0 else 1.0
    h = 1.0 - e * e * e
    r = prm[P_HORIZON] + (prm[P_ZENITH] - prm[P_HORIZON]) * h
    g = prm[P_HORIZON + 1] + (prm[P_ZENITH + 1] - prm[P_HORIZON + 1]) * h
    b = prm[P_HORIZON + 2] + (prm[P_ZENITH + 2] - prm[P_HORIZON + 2]) * h
    s = dx * prm[P_SUN] + dy * prm[P_SUN + 1] + dz * prm[P_SUN + 2]
    if s > 0.8:  # (below, the halo is under 1/1000)
        s2 = s * s
        s8 = s2 * s2 * s2 * s2
        glow = 0.35 * s8 * s8 * s8 * s8  # s^32: a soft halo around the sun
        if s > 0.9993:
            glow = 1.0
        r += (prm[P_SUN_COLOR] - r) * glow
        g += (prm[P_SUN_COLOR + 1] - g) * glow
        b += (prm[P_SUN_COLOR + 2] - b) * glow
    return r, g, b


@njit(cache=True, fastmath=True, inline="always")
def _fog(t, prm):
    if prm[P_FOG] == 0.0:
        return 0.0
    f = (t - prm[P_FOG_START]) * prm[P_FOG_SCALE]
    if f <= 0.0:
        return 0.0
    if f >= 1.0:
        return 1.0
    return f * f * (3.0 - 2.0 * f)


@njit(cache=True, fastmath=True, inline="always")
def _brick_index(x, y, z, lb):
    """Index of the brick holding window slot (x, y, z) (x, z already masked)."""
    return ((y >> 2) << (lb + lb)) | ((z >> 2) << lb) | (x >> 2)


@njit(cache=True, fastmath=True, inline="always")
def _local(x, y, z):
    """Index of a voxel inside its brick's 64 bytes."""
    return ((y & 3) << 4) | ((z & 3) << 2) | (x & 3)


@njit(cache=True, fastmath=True, inline="always")
def _u(i):
    """An index as unsigned: numba then skips its negative-index fix-up (a
    compare, an add of the axis length, and that length kept live)."""
    return np.uint64(i)


@njit(cache=True, fastmath=True, inline="always")
def _occ(blocks, tables, x, y, z, wx0, wz0, mask, lb):
    """1 if the voxel darkens its neighbours' corners (outside the view: 0)."""
    if y < 0 or y >= H_WORLD:
        return 0
    if ((x - wx0) | (z - wz0)) & ~mask:
        return 0
    xi = x & mask
    zi = z & mask
    return tables[
        _u(T_OCCLUDES + blocks[_u((_brick_index(xi, y, zi, lb) << 6) | _local(xi, y, zi))])
    ]


@njit(cache=True, fastmath=True, inline="always")
def _corner(s1, s2, c):
    if s1 and s2:
        return 3
    return s1 + s2 + c


@njit(cache=True, fastmath=True, inline="always")
def _ao_corners(blocks, tables, bx, by, bz, axis, wx0, wz0, mask, lb):
    """Occlusion (0..3) of a face's four corners, packed 2 bits each
    (mm, pm, mp, pp along the face's u and v axes), vertex-AO style.

    (bx, by, bz) is the voxel in front of the face."""
    if axis == 0:
        ux, uy, uz, vx, vy, vz = 0, 0, 1, 0, 1, 0
    elif axis == 1:
        ux, uy, uz, vx, vy, vz = 1, 0, 0, 0, 0, 1
    else:
        ux, uy, uz, vx, vy, vz = 1, 0, 0, 0, 1, 0
    um = _occ(blocks, tables, bx - ux, by - uy, bz - uz, wx0, wz0, mask, lb)
    up = _occ(blocks, tables, bx + ux, by + uy, bz + uz, wx0, wz0, mask, lb)
    vm = _occ(blocks, tables, bx - vx, by - vy, bz - vz, wx0, wz0, mask, lb)
    vp = _occ(blocks, tables, bx + vx, by + vy, bz + vz, wx0, wz0, mask, lb)
    mm = _occ(blocks, tables, bx - ux - vx, by - uy - vy, bz - uz - vz, wx0, wz0, mask, lb)
    pm = _occ(blocks, tables, bx + ux - vx, by + uy - vy, bz + uz - vz, wx0, wz0, mask, lb)
    mp = _occ(blocks, tables, bx - ux + vx, by - uy + vy, bz - uz + vz, wx0, wz0, mask, lb)
    pp = _occ(blocks, tables, bx + ux + vx, by + uy + vy, bz + uz + vz, wx0, wz0, mask, lb)
    return (
        _corner(um, vm, mm)
        | (_corner(up, vm, pm) << 2)
        | (_corner(um, vp, mp) << 4)
        | (_corner(up, vp, pp) << 6)
    )


@njit(cache=True, fastmath=True, inline="always")
def _ao_light(corners, fu, fv, strength):
    """Light left by AO at (fu, fv) on a face: bilinear between its corners."""
    if corners == 0:
        return 1.0
    k = strength / 3.0
    a_mm = 1.0 - k * (corners & 3)
    a_pm = 1.0 - k * ((corners >> 2) & 3)
    a_mp = 1.0 - k * ((corners >> 4) & 3)
    a_pp = 1.0 - k * ((corners >> 6) & 3)
    lo = a_mm + (a_pm - a_mm) * fu
    hi = a_mp + (a_pp - a_mp) * fu
    return lo + (hi - lo) * fv


@njit(cache=True, fastmath=True, inline="always")
def _need_sky(f, have, skr, skg, skb, dx, dy, dz, prm):
    """The sky colour of the ray, computed the first time fog needs it
    (most near hits never do)."""
    if f > 0.0 and not have:
        skr, skg, skb = _sky(dx, dy, dz, prm)
        have = True
    return have, skr, skg, skb


@njit(cache=True, fastmath=True, inline="always")
def _water_volume(r, g, b, trans, t0, t1, prm, skr, skg, skb):
    """Composite the water the ray crossed from t0 to t1 (Beer-Lambert)."""
    return _water_cover(r, g, b, trans, math.exp(-prm[P_WATER_SIGMA] * (t1 - t0)), t0, prm, skr,
                        skg, skb)  # fmt: skip


@njit(cache=True, fastmath=True, inline="always")
def _water_cover(r, g, b, trans, left, t0, prm, skr, skg, skb):
    """Composite water entered at t0 that lets ``left`` of the light through."""
    a = 1.0 - left
    f = _fog(t0, prm)
    r += trans * a * ((1.0 - f) * prm[P_WATER_COLOR] + f * skr)
    g += trans * a * ((1.0 - f) * prm[P_WATER_COLOR + 1] + f * skg)
    b += trans * a * ((1.0 - f) * prm[P_WATER_COLOR + 2] + f * skb)
    return r, g, b, trans * (1.0 - a)


@njit(cache=True, fastmath=True, inline="always")
def _water_surface(r, g, b, trans, t, cos, cr, cg, cb, ca, light, prm, have_sky, skr, skg, skb,
                   dx, dy, dz):  # fmt: skip
    """Composite the top of the water (texel ``cr, cg, cb, ca``, more
    mirror-like at grazing angles: Fresnel, roughly) met ``t`` along the ray."""
    c1 = 1.0 - cos
    c2 = c1 * c1
    fres = c2 * c1 * 0.75
    a = prm[P_WATER_ALPHA] * ca
    a = a + (1.0 - a) * fres
    f = _fog(t, prm)
    have_sky, skr, skg, skb = _need_sky(f, have_sky, skr, skg, skb, dx, dy, dz, prm)
    wr = cr * light * (1.0 - fres) + prm[P_HORIZON] * fres
    wg = cg * light * (1.0 - fres) + prm[P_HORIZON + 1] * fres
    wb = cb * light * (1.0 - fres) + prm[P_HORIZON + 2] * fres
    r += trans * a * ((1.0 - f) * wr + f * skr)
    g += trans * a * ((1.0 - f) * wg + f * skg)
    b += trans * a * ((1.0 - f) * wb + f * skb)
    return r, g, b, trans * (1.0 - a), have_sky, skr, skg, skb


@njit(cache=True, fastmath=True, inline="always")
def _hit_key(face, vx, vy, vz, wx0, wz0):
    """One int for the plane of a voxel's face: the face index and the
    plane's coordinate along the face's axis (from the window's corner)."""
    axis = face >> 1
    side = 1 - (face & 1)  # +x, +y, +z faces lie on the voxel's far side
    if axis == 0:
        p = vx + side - wx0
    elif axis == 1:
        p = vy + side
    else:
        p = vz + side - wz0
    return (p << KEY_FACE_BITS) | face


@njit(cache=True, fastmath=True, inline="always")
def _vox_key(xi, y, zi, bid):
    """One int for a voxel (window x, y, window z) and its block id."""
    return (((((xi << 20) | zi) << 12) | y) << 8) | bid


@njit(cache=True, fastmath=True, inline="always")
def _surface(hx, hy, hz, foot, vx, vy, vz, axis, stx, sty, stz, dx, dy, dz, dlen, bid, prm, atlas,
             tables):  # fmt: skip
    """Where a ray along (dx, dy, dz), of length ``dlen`` (1 for a unit
    vector), entering voxel (vx, vy, vz) across ``axis`` meets its face, at
    (hx, hy, hz): (fu, fv) on the face, the face index, |(dx, dy, dz)| along
    the axis (|cos| of the incidence times ``dlen``), the mip-mapped texel
    (r, g, b, alpha) and which texel of its level that is (`TEX_SHIFT`).
    ``foot``: the hit's distance times the pixel angle, 16 (texels a block)
    and ``dlen``."""
    if axis == 0:
        fu = hz - vz
        fv = hy - vy
        face = 0 if stx < 0 else 1
        fk = 1
        cos = abs(dx)
    elif axis == 1:
        fu = hx - vx
        fv = hz - vz
        face = 2 if sty < 0 else 3
        fk = 0 if sty < 0 else 2
        cos = abs(dy)
    else:
        fu = hx - vx
        fv = hy - vy
        face = 4 if stz < 0 else 5
        fk = 1
        cos = abs(dz)
    fu = min(max(fu, 0.0), 0.99999)
    fv = min(max(fv, 0.0), 0.99999)
    tu = int(fu * 16.0)
    # Side textures read left to right seen from outside the block.
    if (face == 0) | (face == 5):
        tu = 15 - tu
    tv = int(fv * 16.0) if axis == 1 else 15 - int(fv * 16.0)
    # Mip level: texels under one pixel (faces seen edge-on show more). The
    # footprint is t * pixel angle * 16 / max(cos, 0.3), compared without
    # the division (both sides times dlen): one step less between the hit
    # and the texel's load.
    c = max(cos, 0.3 * dlen)
    lod = 0
    if foot > 1.5 * c:
        lod = 1
        if foot > 3.0 * c:
            lod = 2
            if foot > 6.0 * c:
                lod = 3
                if foot > 12.0 * c:
                    lod = 4
    lo = _u(lod)
    s = _u(tables[_u(T_SLOT + bid)])
    k = _u(fk)
    v = _u(tv)
    u = _u(tu)
    return (
        fu, fv, face, cos, atlas[lo, s, k, v, u, 0], atlas[lo, s, k, v, u, 1],
        atlas[lo, s, k, v, u, 2], atlas[lo, s, k, v, u, 3],
        (lod << 8) | ((tv >> lod) << 4) | (tu >> lod),
    )  # fmt: skip


@njit(cache=True, fastmath=True, inline="always")
def _lit(light, t, vx, vy, vz, axis, stx, sty, stz, fu, fv, blocks, tables, cover, ints, prm,
         aoc):  # fmt: skip
    """``light`` (the face's sun shading) times the sky-visibility and
    ambient-occlusion terms of an opaque face at (fu, fv), ``t`` away."""
    wx0 = ints[I_WX0]
    wz0 = ints[I_WZ0]
    mask = ints[I_MASK]
    lb = ints[I_BRICK_BITS]
    # the voxel in front of the face
    bx = vx - stx if axis == 0 else vx
    by = vy - sty if axis == 1 else vy
    bz = vz - stz if axis == 2 else vz
    # out of the sky's light (under a tree, in a cave)?
    if (
        by < H_WORLD
        and not (((bx - wx0) | (bz - wz0)) & ~mask)
        and by < cover[_u(bz & mask), _u(bx & mask)]
    ):
        light *= prm[P_SHADOW]
    if prm[P_AO] > 0.0 and t < prm[P_AO_FAR]:
        # Neighbouring pixels mostly see the same faces: their corners are
        # kept (per thread, per frame) in a small table keyed by the face
        # (the voxel in front, from the window's corner, and the axis).
        key = (((((bx - wx0 + 1) << 9) | (bz - wz0 + 1)) << 8 | (by + 1)) << 2) | axis
        slot = 2 * (((key * -7046029254386353131) >> 40) & (AO_SLOTS - 1))  # Fibonacci hash
        if aoc[slot] != key:
            aoc[slot] = key
            aoc[slot + 1] = _ao_corners(blocks, tables, bx, by, bz, axis, wx0, wz0, mask, lb)
        fade = min(1.0, 2.0 * (1.0 - t * prm[P_AO_FAR_INV]))
        light *= _ao_light(aoc[slot + 1], fu, fv, prm[P_AO] * fade)
    return light


@njit(cache=True, fastmath=True, inline="always")
def _trace(ox, oy, oz, dx, dy, dz, invx, invy, invz, px, py, t0, t1, top_y, blocks, bricks, secs,
           wbricks, wsecs, heights4, heights16, cover, ints, prm, atlas, tables, avatars,
           aoc):  # fmt: skip
    """Colour (r, g, b in 0..1) seen along one ray, starting at ``t0`` (the
    beam pre-pass showed only air before it) or at ``t1`` if that is later
    and in air (the traced rays around it met nothing before); (px, py):
    its pixel, for the avatars' rectangles. Returns the colour, then its
    plain-hit key, `_vox_key` (with the texel, `TEX_SHIFT`) and how far
    it went in air before the face (or the water's surface above it; else
    -1, -1, FAR). The key is
    the `_hit_key` of the opaque (or leaf) face that ended the ray, no
    outline on it, where nothing was composited in front of it but,
    perhaps, the top of the water and the water below (its y in the key's
    high bits); that water surface and `KEY_DEEP` where the ray was cut
    short in deep water; `KEY_SKY` where it met nothing at all; or the key
    of the leaf face it met first with `KEY_HOLE` (its `_vox_key` -1, its
    distance that face's) where it went on through a hole there.

    The ray alternates between traversal (tight loops) and events: a voxel
    whose medium differs from the one the ray is in (a face to shade or
    composite), or leaving water into an empty cell. ``top_y``: no block at
    or above it. ``aoc``: this thread's AO cache (`AOC_SIZE`)."""
    wx0 = ints[I_WX0]
    wz0 = ints[I_WZ0]
    mask = ints[I_MASK]
    notmask = ~mask
    lb = ints[I_BRICK_BITS]
    ls = lb - 2  # log2 of the window width in sections
    view = prm[P_VIEW]
    have_sky = False
    skr = 0.0
    skg = 0.0
    skb = 0.0

    stx = 1 if dx >= 0.0 else -1
    sty = 1 if dy >= 0.0 else -1
    stz = 1 if dz >= 0.0 else -1
    tdx = abs(invx)
    tdy = abs(invy)
    tdz = abs(invz)
    # offsets of the far planes of a voxel (1 when stepping up, 0 down)
    px1 = 1 if stx > 0 else 0
    py1 = 1 if sty > 0 else 0
    pz1 = 1 if stz > 0 else 0

    # Nearest avatar box: the voxel march stops at it.
    tlim = view
    av = -1
    av_axis = 0
    for i in range(ints[I_AVATARS]):
        if not _in_rect(px, py, avatars, i):
            continue
        tn, tf, ax = _avatar_slabs(avatars, i, ox, oy, oz, invx, invy, invz)
        if tn <= tf and tn > 0.0 and tn < tlim:
            tlim = tn
            av = i
            av_axis = ax
    tray = tlim  # where the ray ends (view distance or an avatar)

    r = 0.0
    g = 0.0
    b = 0.0
    trans = 1.0
    medium = MEDIUM_NONE
    tw0 = 0.0  # where the ray entered water
    axis = -1  # axis of the last step (-1: the ray starts in this voxel)
    t = 0.0
    # What the ray composited so far: 1 nothing (no water, glass, leaf
    # hole, start inside a block), 2 only the top of the water (at y = wp)
    # and the water under it, 0 anything else.
    clean = 1
    wp = 0
    hit = -1
    hv = -1
    th = FAR  # how far the ray went in air before its plain hit (or the water's top)

    # Bring a ray from above (or below) the world to its top (bottom) face.
    inside = True
    if oy >= H_WORLD:
        if dy >= 0.0:
            inside = False
        else:
            t = (H_WORLD - oy) * invy
            axis = 1
    elif oy < 0.0:
        if dy <= 0.0:
            inside = False
        else:
            t = -oy * invy
            axis = 1
    if t1 > t0 and inside:
        # The traced rays around this one met nothing before t1 (`_rows`):
        # start there too, if the voxel there is air.
        x1 = math.floor(ox + dx * t1)
        y1 = math.floor(oy + dy * t1)
        z1 = math.floor(oz + dz * t1)
        if 0 <= y1 < H_WORLD and not (((x1 - wx0) | (z1 - wz0)) & notmask):
            xm = x1 & mask
            zm = z1 & mask
            if blocks[_u((_brick_index(xm, y1, zm, lb) << 6) | _local(xm, y1, zm))] == 0:
                t0 = t1
    if t0 > t and inside:
        # The tile's beam showed nothing but air up to t0: start there.
        t = t0
        axis = -1
    if t >= tlim:
        inside = False

    vx = 0
    vy = 0
    vz = 0
    tmx = FAR
    tmy = FAR
    tmz = FAR
    if inside:
        vx = math.floor(ox + dx * t)
        vy = min(max((math.floor(oy + dy * t)), 0), H_WORLD - 1)
        vz = math.floor(oz + dz * t)
        tmx = (vx + px1 - ox) * invx
        tmy = (vy + py1 - oy) * invy
        tmz = (vz + pz1 - oz) * invz

    bid = 0
    steps = 0  # a bound on the walk: a degenerate ray must end, not hang a frame
    while inside:
        # -- traversal: 0 = the ray ended, 1 = a voxel event, 2 = left water
        event = 0
        steps += 1
        if steps > MAX_STEPS:
            break
        while True:
            steps += 1
            if steps > MAX_STEPS:
                break
            if vy < 0 or (vy >= top_y and dy >= 0.0):
                break
            if ((vx - wx0) | (vz - wz0)) & notmask:
                break  # left the loaded window
            xi = vx & mask
            zi = vz & mask
            skip = True
            csz = 16
            ylo = 0
            yhi = H_WORLD
            col16 = ((zi >> 4) << ls) | (xi >> 4)
            h = int(heights16[_u(col16)])
            if vy >= h:
                ylo = h
            elif secs[_u(((vy >> 4) << (ls + ls)) | col16)] == 0:
                ylo = vy & -16
                yhi = ylo + 16
            else:
                csz = 4
                h = int(heights4[_u(((zi >> 2) << lb) | (xi >> 2))])
                if vy >= h:
                    ylo = h
                elif bricks[_u(_brick_index(xi, vy, zi, lb))] == 0:
                    ylo = vy & -4
                    yhi = ylo + 4
                else:
                    skip = False
            in_water = False
            if not skip and medium == MEDIUM_WATER:
                # Under water, a section or brick of nothing but water is
                # crossed in one step too (the ray stays in water).
                if wsecs[_u(((vy >> 4) << (ls + ls)) | col16)] == 4096:
                    in_water = True
                    csz = 16
                elif wbricks[_u(_brick_index(xi, vy, zi, lb))] == 64:
                    in_water = True
                if in_water:
                    skip = True
                    ylo = vy & -csz
                    yhi = ylo + csz
            if skip:
                if medium != MEDIUM_NONE and not in_water:
                    event = 2
                    break
                cm = -csz
                cx0 = vx & cm
                cz0 = vz & cm
                ex = (cx0 + csz * px1 - ox) * invx
                ey = ((yhi if sty > 0 else ylo) - oy) * invy
                ez = (cz0 + csz * pz1 - oz) * invz
                if ex <= ey and ex <= ez:
                    t = ex
                    axis = 0
                    vx = cx0 + csz if stx > 0 else cx0 - 1
                    vy = min(max((math.floor(oy + dy * t)), ylo), yhi - 1)
                    vz = min(max((math.floor(oz + dz * t)), cz0), cz0 + csz - 1)
                elif ey <= ez:
                    t = ey
                    axis = 1
                    vy = yhi if sty > 0 else ylo - 1
                    vx = min(max((math.floor(ox + dx * t)), cx0), cx0 + csz - 1)
                    vz = min(max((math.floor(oz + dz * t)), cz0), cz0 + csz - 1)
                else:
                    t = ez
                    axis = 2
                    vz = cz0 + csz if stz > 0 else cz0 - 1
                    vx = min(max((math.floor(ox + dx * t)), cx0), cx0 + csz - 1)
                    vy = min(max((math.floor(oy + dy * t)), ylo), yhi - 1)
                tmx = (vx + px1 - ox) * invx
                tmy = (vy + py1 - oy) * invy
                tmz = (vz + pz1 - oz) * invz
                if t >= tlim:
                    break
                continue
            # An occupied brick: plain DDA until the ray leaves it, on local
            # coordinates (0..3) so the loop keeps few values live and
            # leaving the brick is one test.
            base = _brick_index(xi, vy, zi, lb) << 6
            lx = vx & 3
            ly = vy & 3
            lz = vz & 3
            vx &= -4  # (the brick's corner while stepping)
            vy &= -4
            vz &= -4
            while True:
                steps += 1
                if steps > MAX_STEPS:
                    break
                bid = blocks[_u(base | (ly << 4) | (lz << 2) | lx)]
                # (in air, the common case, any block is an event: no table)
                if (bid != 0) if medium == MEDIUM_NONE else (tables[_u(T_MEDIUM + bid)] != medium):
                    event = 1
                    break
                if tmx < tmy:
                    if tmx < tmz:
                        axis = 0
                        lx += stx
                        tmx += tdx
                    else:
                        axis = 2
                        lz += stz
                        tmz += tdz
                elif tmy < tmz:
                    axis = 1
                    ly += sty
                    tmy += tdy
                else:
                    axis = 2
                    lz += stz
                    tmz += tdz
                if (lx | ly | lz) & -4:
                    # Into the next brick: if that one holds blocks too, go
                    # on stepping there without the empty-cell checks.
                    nx = vx + lx
                    ny = vy + ly
                    nz = vz + lz
                    tn = tmx - tdx if axis == 0 else (tmy - tdy if axis == 1 else tmz - tdz)
                    if (
                        ny < 0
                        or ny >= top_y
                        or tn >= tlim
                        or (((nx - wx0) | (nz - wz0)) & notmask)
                        or bricks[_u(_brick_index(nx & mask, ny, nz & mask, lb))] == 0
                    ):
                        break  # left the brick for an empty one (or the view)
                    base = _brick_index(nx & mask, ny, nz & mask, lb) << 6
                    vx = nx & -4
                    vy = ny & -4
                    vz = nz & -4
                    lx = nx & 3
                    ly = ny & 3
                    lz = nz & 3
            vx += lx
            vy += ly
            vz += lz
            # The entry of the current voxel: the plane crossed last.
            if axis == 0:
                t = tmx - tdx
            elif axis == 1:
                t = tmy - tdy
            elif axis == 2:
                t = tmz - tdz
            if t >= tlim:
                event = 0  # the ray ended before this voxel
                break
            if event != 0:
                break

        # -- the event
        if event == 0:
            break
        if medium == MEDIUM_WATER:
            have_sky, skr, skg, skb = _need_sky(
                _fog(tw0, prm), have_sky, skr, skg, skb, dx, dy, dz, prm
            )
            r, g, b, trans = _water_volume(r, g, b, trans, tw0, t, prm, skr, skg, skb)
            tlim = tray
        medium = MEDIUM_NONE
        if event == 2:
            clean = 0
            continue
        k = tables[_u(T_KIND + bid)]
        if axis < 0:
            # The eye is inside this voxel: no face to draw. (In a leaf
            # block, nothing is composited either: the rays keep their keys,
            # so a frame flown through a tree is not traced pixel by pixel.)
            if not (k == KIND_CUTOUT and t == 0.0):
                clean = 0
            if k == KIND_WATER:
                medium = MEDIUM_WATER
                tw0 = t
                tlim = min(tray, t + math.log(max(trans * 20.0, 1.0)) / prm[P_WATER_SIGMA])
            elif k == KIND_GLASS:
                medium = MEDIUM_GLASS
            elif k == KIND_OPAQUE:
                trans = 0.0  # inside a solid block: black
                break
        elif k != KIND_AIR:
            # Where the ray enters this voxel, and the texel there.
            fu, fv, face, cos, cr, cg, cb, ca, tex = _surface(
                ox + dx * t, oy + dy * t, oz + dz * t, t * prm[P_PIX_ANGLE] * 16.0, vx, vy, vz,
                axis, stx, sty, stz, dx, dy, dz, 1.0, bid, prm, atlas, tables,
            )  # fmt: skip
            light = prm[P_FACE_SHADE + face]
            outline = False
            if (
                ints[I_HAS_TARGET] != 0
                and vx == ints[I_TARGET]
                and vy == ints[I_TARGET + 1]
                and vz == ints[I_TARGET + 2]
            ):
                # the targeted block: dark edges about 1.5 pixels wide
                e = min(min(fu, 1.0 - fu), min(fv, 1.0 - fv))
                outline = e < max(0.015, 1.5 * t * prm[P_PIX_ANGLE])
            if outline or k == KIND_OPAQUE or (k == KIND_CUTOUT and ca >= 0.5):
                if outline:
                    cr = prm[P_OUTLINE]
                    cg = prm[P_OUTLINE + 1]
                    cb = prm[P_OUTLINE + 2]
                else:
                    light = _lit(light, t, vx, vy, vz, axis, stx, sty, stz, fu, fv, blocks,
                                 tables, cover, ints, prm, aoc)  # fmt: skip
                    if clean != 0:
                        hit = _hit_key(face, vx, vy, vz, wx0, wz0) | (wp << KEY_WATER_SHIFT)
                        hv = _vox_key(vx & mask, vy, vz & mask, bid) | (tex << TEX_SHIFT)
                        th = t if clean == 1 else tw0  # (in water: from its surface)
                f = _fog(t, prm)
                have_sky, skr, skg, skb = _need_sky(f, have_sky, skr, skg, skb, dx, dy, dz, prm)
                r += trans * ((1.0 - f) * cr * light + f * skr)
                g += trans * ((1.0 - f) * cg * light + f * skg)
                b += trans * ((1.0 - f) * cb * light + f * skb)
                trans = 0.0
                break
            wclean = 0
            if k == KIND_WATER:
                r, g, b, trans, have_sky, skr, skg, skb = _water_surface(
                    r, g, b, trans, t, cos, cr, cg, cb, ca, light, prm, have_sky, skr, skg, skb,
                    dx, dy, dz,
                )  # fmt: skip
                medium = MEDIUM_WATER
                tw0 = t
                # Deeper than this, what lies behind shows less than 5 %.
                tlim = min(tray, t + math.log(max(trans * 20.0, 1.0)) / prm[P_WATER_SIGMA])
                if clean == 1 and face == 2:
                    wclean = 2
                    wp = vy + 1
            elif k == KIND_GLASS:
                f = _fog(t, prm)
                have_sky, skr, skg, skb = _need_sky(f, have_sky, skr, skg, skb, dx, dy, dz, prm)
                r += trans * ca * ((1.0 - f) * cr * light + f * skr)
                g += trans * ca * ((1.0 - f) * cg * light + f * skg)
                b += trans * ca * ((1.0 - f) * cb * light + f * skb)
                trans *= 1.0 - ca
                medium = MEDIUM_GLASS
            elif clean == 1:
                # Through a hole in the first face it met: the key of that
                # face, marked, and its distance (`_rows` brackets by it).
                hit = _hit_key(face, vx, vy, vz, wx0, wz0) | KEY_HOLE
                th = t
            clean = wclean  # (a face that did not stop the ray)
        else:
            # Out of water (or glass) into air: the water's keys are off.
            clean = 0
        if trans < 0.02:
            break
        # Step past this voxel so the traversal does not see it again.
        if tmx < tmy:
            if tmx < tmz:
                t = tmx
                axis = 0
                vx += stx
                tmx += tdx
            else:
                t = tmz
                axis = 2
                vz += stz
                tmz += tdz
        elif tmy < tmz:
            t = tmy
            axis = 1
            vy += sty
            tmy += tdy
        else:
            t = tmz
            axis = 2
            vz += stz
            tmz += tdz
        if t >= tlim:
            break

    if trans > 0.0:
        if medium == MEDIUM_WATER:
            if tlim < tray:
                # Cut short in deep water: the rest is water too.
                f = _fog(tw0, prm)
                have_sky, skr, skg, skb = _need_sky(f, have_sky, skr, skg, skb, dx, dy, dz, prm)
                r += trans * ((1.0 - f) * prm[P_WATER_COLOR] + f * skr)
                g += trans * ((1.0 - f) * prm[P_WATER_COLOR + 1] + f * skg)
                b += trans * ((1.0 - f) * prm[P_WATER_COLOR + 2] + f * skb)
                trans = 0.0
                if clean == 2:
                    hit = KEY_DEEP | (wp << KEY_WATER_SHIFT)
                    th = tw0
            else:
                have_sky, skr, skg, skb = _need_sky(
                    _fog(tw0, prm), have_sky, skr, skg, skb, dx, dy, dz, prm
                )
                r, g, b, trans = _water_volume(r, g, b, trans, tw0, min(t, tlim), prm, skr, skg,
                                               skb)  # fmt: skip
        if trans <= 0.0:
            pass
        elif av >= 0:
            # An avatar: flat colours, a head, a darker visor on its front.
            hy = oy + dy * tlim
            st = stx if av_axis == 0 else (sty if av_axis == 1 else stz)
            face = 2 * av_axis + (1 if st > 0 else 0)
            light = prm[P_FACE_SHADE + face]
            c = A_BODY
            if hy >= avatars[av, A_HEAD_Y]:
                c = A_HEAD
                if face == int(avatars[av, A_FACE]) and hy < avatars[av, A_MAX + 1] - 0.25:
                    light *= 0.35
            f = _fog(tlim, prm)
            have_sky, skr, skg, skb = _need_sky(f, have_sky, skr, skg, skb, dx, dy, dz, prm)
            r += trans * ((1.0 - f) * avatars[av, c] * light + f * skr)
            g += trans * ((1.0 - f) * avatars[av, c + 1] * light + f * skg)
            b += trans * ((1.0 - f) * avatars[av, c + 2] * light + f * skb)
        else:
            have_sky, skr, skg, skb = _need_sky(1.0, have_sky, skr, skg, skb, dx, dy, dz, prm)
            r += trans * skr
            g += trans * skg
            b += trans * skb
            if clean == 1 and medium == MEDIUM_NONE:
                hit = KEY_SKY
    return r, g, b, hit, hv, th


@njit(cache=True, fastmath=True, inline="always")
def _avatar_slabs(avatars, i, ox, oy, oz, invx, invy, invz):
    """Where the ray from (ox, oy, oz) enters and leaves avatar ``i``'s box
    (slab test; it misses where enter > leave) and the axis it enters across."""
    ta = (avatars[i, A_MIN] - ox) * invx
    tb = (avatars[i, A_MAX] - ox) * invx
    tn, tf, ax = _slab(avatars, i, 1, oy, invy, min(ta, tb), max(ta, tb), 0)
    return _slab(avatars, i, 2, oz, invz, tn, tf, ax)


@njit(cache=True, fastmath=True, inline="always")
def _slab(avatars, i, axis, o, inv, tn, tf, ax):
    """The slab test's step for one more axis of avatar ``i``'s box: the
    entry (and the axis it is across) and exit so far, narrowed by it."""
    ta = (avatars[i, A_MIN + axis] - o) * inv
    tb = (avatars[i, A_MAX + axis] - o) * inv
    if min(ta, tb) > tn:
        tn = min(ta, tb)
        ax = axis
    return tn, min(tf, max(ta, tb)), ax


@njit(cache=True, fastmath=True, inline="always")
def _in_rect(px, py, avatars, i):
    """Whether pixel (px, py) lies in avatar ``i``'s rectangle (`_avatar_rects`)."""
    return (
        avatars[i, A_RECT] <= px <= avatars[i, A_RECT + 1]
        and avatars[i, A_RECT + 2] <= py <= avatars[i, A_RECT + 3]
    )


@njit(cache=True, fastmath=True, inline="always")
def _avatar_rects(avatars, n, width, height, sx0, sxs, prm):
    """Fill each live avatar's pixel rectangle: every pixel whose ray can
    meet its box lies inside, so the per-pixel avatar tests (every pixel
    drawn from its neighbours makes one) skip the boxes far from it.

    A box wholly in front of the eye projects inside the hull of its
    corners' projections, so the corners' pixel bounds, a pixel wider each
    way, hold it; one reaching the near plane may cover anything (the whole
    frame), and one wholly behind the eye nothing (an empty rectangle)."""
    ox = prm[P_OX]
    oy = prm[P_OY]
    oz = prm[P_OZ]
    for i in range(n):
        x0 = FAR
        x1 = -FAR
        y0 = FAR
        y1 = -FAR
        behind = 0
        near = False
        for c in range(8):
            vx = avatars[i, A_MAX if c & 1 else A_MIN] - ox
            vy = avatars[i, (A_MAX if c & 2 else A_MIN) + 1] - oy
            vz = avatars[i, (A_MAX if c & 4 else A_MIN) + 2] - oz
            zc = vx * prm[P_FWD] + vy * prm[P_FWD + 1] + vz * prm[P_FWD + 2]
            if zc < NEAR_PLANE:
                near = True
                if zc <= 0.0:
                    behind += 1
                continue
            sx = (vx * prm[P_RIGHT] + vy * prm[P_RIGHT + 1] + vz * prm[P_RIGHT + 2]) / zc
            sy = (vx * prm[P_UP] + vy * prm[P_UP + 1] + vz * prm[P_UP + 2]) / zc
            # inverse of `_ray_dir`'s column and `_rows`' row coordinates
            px = (sx - sx0) / sxs
            py = (1.0 - sy / prm[P_TAN_V]) * 0.5 * height - 0.5
            x0 = min(x0, px)
            x1 = max(x1, px)
            y0 = min(y0, py)
            y1 = max(y1, py)
        if behind == 8:
            x0, x1, y0, y1 = 1.0, 0.0, 1.0, 0.0
        elif near:
            x0, x1, y0, y1 = -1.0, float(width), -1.0, float(height)
        else:
            x0 = math.floor(x0) - 1.0
            x1 = math.ceil(x1) + 1.0
            y0 = math.floor(y0) - 1.0
            y1 = math.ceil(y1) + 1.0
        avatars[i, A_RECT] = x0
        avatars[i, A_RECT + 1] = x1
        avatars[i, A_RECT + 2] = y0
        avatars[i, A_RECT + 3] = y1


@njit(cache=True, fastmath=True, inline="always")
def _pixel_dir(px, py, width, height, prm):
    """Unit direction of the ray through (continuous) pixel coordinates."""
    sx = (2.0 * px / width - 1.0) * prm[P_TAN_H]
    sy = (1.0 - 2.0 * py / height) * prm[P_TAN_V]
    dx = prm[P_FWD] + sx * prm[P_RIGHT] + sy * prm[P_UP]
    dy = prm[P_FWD + 1] + sx * prm[P_RIGHT + 1] + sy * prm[P_UP + 1]
    dz = prm[P_FWD + 2] + sx * prm[P_RIGHT + 2] + sy * prm[P_UP + 2]
    n = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
    return dx * n, dy * n, dz * n


@njit(cache=True, fastmath=True, inline="always")
def _beam_start(x0, y0, x1, y1, width, height, dil4, dil16, top, ints, prm):
    """How far every ray of the pixel rectangle [x0, x1] × [y0, y1] (pixel
    centres) is sure to meet nothing but air.

    One ray down the middle of the rectangle stands for all of them: at
    distance t they are all within ``k * t`` of it (k: the widest chord
    between its direction and a corner's). Where the middle ray is at
    least that far above the highest block of every column around it
    (``dil4``/``dil16``: column heights maxed over the 3 × 3 neighbouring
    cells, so 4 or 16 blocks of margin sideways), the whole beam is in
    the air. The march stops where that may no longer hold; the pixels
    start their own rays there."""
    ox = prm[P_OX]
    oy = prm[P_OY]
    oz = prm[P_OZ]
    view = prm[P_VIEW]
    if oy < 0.0 or oy >= H_WORLD:
        return 0.0
    cx, cy, cz = _pixel_dir(0.5 * (x0 + x1) + 0.5, 0.5 * (y0 + y1) + 0.5, width, height, prm)
    k = 0.0
    min_dy = cy
    for corner in range(4):
        qx = (x0 if corner & 1 else x1) + 0.5
        qy = (y0 if corner & 2 else y1) + 0.5
        ax, ay, az = _pixel_dir(qx, qy, width, height, prm)
        k = max(k, math.sqrt((ax - cx) ** 2 + (ay - cy) ** 2 + (az - cz) ** 2))
        min_dy = min(min_dy, ay)
    k = k * 1.02 + 1e-6
    # Beyond this the beam is wider than the 4-block sideways margin.
    tmax = min(view, 4.0 / k)
    mask = ints[I_MASK]
    notmask = ~mask
    lb = ints[I_BRICK_BITS]
    ls = lb - 2
    wx0 = ints[I_WX0]
    wz0 = ints[I_WZ0]
    invx = 1.0 / cx if cx != 0.0 else FAR
    invz = 1.0 / cz if cz != 0.0 else FAR
    t = 0.0
    steps = 0
    while t < tmax and steps < MAX_STEPS:
        steps += 1
        py = oy + cy * t - k * t - 1e-3  # the lowest any ray of the beam can be
        if min_dy >= 0.0 and py >= top:
            return view  # every ray climbs away above everything: all sky
        ix = math.floor(ox + cx * t)
        iz = math.floor(oz + cz * t)
        if ((ix - wx0) | (iz - wz0)) & notmask:
            return t
        xi = ix & mask
        zi = iz & mask
        h = float(dil16[((zi >> 4) << ls) | (xi >> 4)])
        csz = 16
        if py < h:
            h = float(dil4[((zi >> 2) << lb) | (xi >> 2)])
            csz = 4
            if py < h:
                return t
        # Where the middle ray leaves this column cell.
        cx0 = ix & -csz
        cz0 = iz & -csz
        # A zero component never leaves through that pair of sides (its product
        # with FAR would be 0 or -FAR for an origin on or past the side).
        ex = (cx0 + (csz if cx > 0.0 else 0) - ox) * invx if cx != 0.0 else FAR
        ez = (cz0 + (csz if cz > 0.0 else 0) - oz) * invz if cz != 0.0 else FAR
        t1 = max(t, min(ex, ez))  # and the march only ever goes forward
        if oy + cy * t1 - k * t1 - 1e-3 >= h:
            t = t1 + 1e-4
        else:
            # The beam's underside reaches the blocks inside this cell.
            return max(t, (h + 1e-3 - oy) / (cy - k))
    return min(t, tmax)


@njit(cache=True, fastmath=True, inline="always")
def _dilate(src, dst, bits):
    """dst = src maxed over each cell's 3 × 3 neighbours (square grid of
    2^bits cells a side, wrapping around like the view)."""
    n = 1 << bits
    m = n - 1
    for zc in range(n):
        for xc in range(n):
            h = 0
            for dz in range(-1, 2):
                row = ((zc + dz) & m) << bits
                for dx in range(-1, 2):
                    h = max(h, src[row | ((xc + dx) & m)])
            dst[(zc << bits) | xc] = h


@njit(cache=True, fastmath=True, inline="always")
def _ray_raw(px, sy, sx0, sxs, prm):
    """The direction of pixel column ``px``'s ray in the row at screen
    coordinate ``sy``, not normalised (linear in both)."""
    sx = sx0 + px * sxs
    dx = prm[P_FWD] + sx * prm[P_RIGHT] + sy * prm[P_UP]
    dy = prm[P_FWD + 1] + sx * prm[P_RIGHT + 1] + sy * prm[P_UP + 1]
    dz = prm[P_FWD + 2] + sx * prm[P_RIGHT + 2] + sy * prm[P_UP + 2]
    return dx, dy, dz


@njit(cache=True, fastmath=True, inline="always")
def _ray(px, sy, sx0, sxs, prm):
    """Pixel column ``px``'s ray in the row at screen coordinate ``sy``: its
    raw direction (`_ray_raw`), that vector's length and the unit direction.
    Work from the raw one where a hit is wanted fast: the length's square
    root and division then run beside it."""
    ux, uy, uz = _ray_raw(px, sy, sx0, sxs, prm)
    ulen = math.sqrt(ux * ux + uy * uy + uz * uz)
    n = 1.0 / ulen
    return ux, uy, uz, ulen, ux * n, uy * n, uz * n


@njit(cache=True, fastmath=True, inline="always")
def _ray_dir(px, sy, sx0, sxs, prm):
    """The unit direction of pixel column ``px``'s ray in the row at screen
    coordinate ``sy``."""
    _ux, _uy, _uz, _ulen, dx, dy, dz = _ray(px, sy, sx0, sxs, prm)
    return dx, dy, dz


@njit(cache=True, fastmath=True, inline="always")
def _put(out, px, py, r, g, b):
    """Write a pixel's colour (0..1 per channel) as bytes."""
    y = _u(py)
    x = _u(px)
    out[y, x, 0] = int(min(max(r, 0.0), 1.0) * 255.0 + 0.5)
    out[y, x, 1] = int(min(max(g, 0.0), 1.0) * 255.0 + 0.5)
    out[y, x, 2] = int(min(max(b, 0.0), 1.0) * 255.0 + 0.5)


@njit(cache=True, fastmath=True, inline="always")
def _avatar_before(t, dx, dy, dz, px, py, ints, prm, avatars):
    """Whether the eye's ray along (dx, dy, dz), pixel (px, py)'s, enters an
    avatar box before ``t``."""
    if ints[I_AVATARS] == 0:
        return False
    ox = prm[P_OX]
    oy = prm[P_OY]
    oz = prm[P_OZ]
    invx = 1.0 / dx if dx != 0.0 else FAR
    invy = 1.0 / dy if dy != 0.0 else FAR
    invz = 1.0 / dz if dz != 0.0 else FAR
    for i in range(ints[I_AVATARS]):
        if not _in_rect(px, py, avatars, i):
            continue
        tn, tf, _ax = _avatar_slabs(avatars, i, ox, oy, oz, invx, invy, invz)
        if tn <= tf and tn > 0.0 and tn < t:
            return True
    return False


@njit(cache=True, fastmath=True, inline="always")
def _pixel(out, px, py, sy, t0, t1, top, sx0, sxs, blocks, bricks, secs, wbricks, wsecs,
           heights4, heights16, cover, ints, prm, atlas, tables, avatars, aoc):  # fmt: skip
    """Trace one pixel (``sy``: its row's screen coordinate) and write it;
    returns the ray's plain-hit key, `_vox_key` and hit distance (`_trace`)."""
    # The DDA's steps (1 / the unit direction) as ulen / u: beside the
    # square root, not after it.
    ux, uy, uz, ulen, dx, dy, dz = _ray(px, sy, sx0, sxs, prm)
    r, g, b, hit, hv, th = _trace(
        prm[P_OX], prm[P_OY], prm[P_OZ], dx, dy, dz,
        ulen / ux if ux != 0.0 else FAR, ulen / uy if uy != 0.0 else FAR,
        ulen / uz if uz != 0.0 else FAR, px, py, t0, t1, top,
        blocks, bricks, secs, wbricks, wsecs, heights4, heights16, cover, ints, prm, atlas, tables,
        avatars, aoc,
    )  # fmt: skip
    _put(out, px, py, r, g, b)
    return hit, hv, th


@njit(cache=True, fastmath=True, inline="always")
def _reuse_sky(out, px, py, sy, sx0, sxs, ints, prm, avatars):
    """Shade pixel (px, py) as sky, as the traced rays around it all were;
    False (nothing written) where an avatar box lies on its ray."""
    dx, dy, dz = _ray_dir(px, sy, sx0, sxs, prm)
    if _avatar_before(prm[P_VIEW], dx, dy, dz, px, py, ints, prm, avatars):
        return False
    r, g, b = _sky(dx, dy, dz, prm)
    _put(out, px, py, r, g, b)
    return True


@njit(cache=True, fastmath=True, inline="always")
def _reuse(out, px, py, sy, key, v0, v1, v2, v3, sx0, sxs, blocks, cover, ints, prm, atlas,
           tables, avatars, aoc, wet):  # fmt: skip
    """Shade pixel (px, py) from the plain-hit ``key`` (see `_trace`) the rays
    of the pixels around it share; returns the `_vox_key` of the face drawn
    (with its texel; -1 in deep water) and how far the ray went in air (to
    the face, or to the water's surface), or writes nothing where it
    cannot and returns (-3, the face's distance) for a hole in a leaf face
    met in air, else (-2, 0).

    The pixel's ray direction lies between its neighbours' (directions are
    linear in the pixel coordinates, from one eye), so it meets each plane
    of the key between their hits: a ray/plane intersection per plane,
    checks that the voxels there are what a full trace would meet (water
    under the surface with air above, an opaque or leaf block behind the
    face with air or water in front, a leaf texel that is not a hole), then
    the same compositing, texel, light and fog as `_trace`. Nothing stopped
    the neighbours' rays in front of the planes; a block whose silhouette
    falls between them (under 2 pixels: only near the view distance at
    small sizes) is the one way to differ from a full trace, by a pixel.
    Avatars and the outlined block are checked here. ``v0``..``v3``: the
    neighbours' `_vox_key`; where the face is one of theirs, its block and
    what lies in front are known without reading the view (a cache miss
    each, most of the cost here)."""
    # The hit on the key's plane comes from the raw direction (ux, uy, uz):
    # its division is then the only step between the pixel and the voxel and
    # texel it reads; the unit direction and the distance are for the shading.
    ux, uy, uz, ulen, dx, dy, dz = _ray(px, sy, sx0, sxs, prm)
    ox = prm[P_OX]
    oy = prm[P_OY]
    oz = prm[P_OZ]
    view = prm[P_VIEW]
    mask = ints[I_MASK]
    wx0 = ints[I_WX0]
    wz0 = ints[I_WZ0]
    lb = ints[I_BRICK_BITS]
    tx = ints[I_TARGET] if ints[I_HAS_TARGET] != 0 else -(1 << 40)
    ty = ints[I_TARGET + 1]
    tz = ints[I_TARGET + 2]
    stx = 1 if ux >= 0.0 else -1
    sty = 1 if uy >= 0.0 else -1
    stz = 1 if uz >= 0.0 else -1
    have_sky = False
    skr = 0.0
    skg = 0.0
    skb = 0.0
    r = 0.0
    g = 0.0
    b = 0.0
    trans = 1.0
    medium = MEDIUM_NONE
    tw = 0.0
    reach = 0.0  # below the surface: 20x what of the bottom shows through it
    left = 1.0  # what the water in front lets through
    # ``wet`` is a literal at each call: the copy for keys with no water
    # folds the water's terms away (fewer live values in the common case).
    wp = key >> KEY_WATER_SHIFT if wet else 0
    if wp > 0:
        # The top of the water, as `_trace` composites it.
        if uy >= 0.0:
            return -2, 0.0
        twu = (wp - oy) / uy
        tw = twu * ulen
        if not (tw > 0.0 and tw < view):
            return -2, 0.0
        vx = math.floor(ox + ux * twu)
        vy = wp - 1
        vz = math.floor(oz + uz * twu)
        if (((vx - wx0) | (vz - wz0)) & ~mask) != 0 or vy >= H_WORLD - 1:
            return -2, 0.0
        if vx == tx and vy == ty and vz == tz:
            return -2, 0.0
        xm = vx & mask
        zm = vz & mask
        bid = blocks[_u((_brick_index(xm, vy, zm, lb) << 6) | _local(xm, vy, zm))]
        if tables[_u(T_KIND + bid)] != KIND_WATER:
            return -2, 0.0
        if blocks[_u((_brick_index(xm, vy + 1, zm, lb) << 6) | _local(xm, vy + 1, zm))] != 0:
            return -2, 0.0
        fu, fv, face, cos, cr, cg, cb, ca, _tex = _surface(
            ox + ux * twu, oy + uy * twu, oz + uz * twu, tw * prm[P_PIX_ANGLE] * 16.0, vx, vy, vz,
            1, stx, sty, stz, dx, dy, dz, 1.0, bid, prm, atlas, tables,
        )  # fmt: skip
        light = prm[P_FACE_SHADE + face]
        r, g, b, trans, have_sky, skr, skg, skb = _water_surface(
            r, g, b, 1.0, tw, cos, cr, cg, cb, ca, light, prm, have_sky, skr, skg, skb, dx, dy, dz
        )
        medium = MEDIUM_WATER
        # `_trace` goes no deeper than where the bottom would show under 5 %
        # (ln(20 trans) / sigma below the surface); the tests below ask the
        # same of the water's absorption, exp(-sigma d), with no log.
        reach = trans * 20.0
    deep = wet and (key & KEY_DEEP) != 0
    t = view
    tu = 0.0
    vx = 0
    vy = 0
    vz = 0
    axis = 0
    k = KIND_AIR
    bid = 0
    tex = 0
    if deep:
        if wp == 0 or reach * math.exp(-prm[P_WATER_SIGMA] * (view - tw)) >= 1.0:
            return -2, 0.0  # (the bottom would show before the view distance)
    else:
        face = key & ((1 << KEY_FACE_BITS) - 1)
        p = (key >> KEY_FACE_BITS) & ((KEY_DEEP - 1) >> KEY_FACE_BITS)
        axis = face >> 1
        side = 1 - (face & 1)  # even faces (+x, +y, +z) lie on the far side
        # The voxel behind the plane where the ray meets it, and the one in front.
        if axis == 0:
            if (stx < 0) != (side == 1) or ux == 0.0:
                return -2, 0.0
            tu = (p + wx0 - ox) / ux
            vx = p + wx0 - side
            vy = math.floor(oy + uy * tu)
            vz = math.floor(oz + uz * tu)
            fx = vx - stx
            fy = vy
            fz = vz
        elif axis == 1:
            if (sty < 0) != (side == 1) or uy == 0.0:
                return -2, 0.0
            tu = (p - oy) / uy
            vx = math.floor(ox + ux * tu)
            vy = p - side
            vz = math.floor(oz + uz * tu)
            fx = vx
            fy = vy - sty
            fz = vz
        else:
            if (stz < 0) != (side == 1) or uz == 0.0:
                return -2, 0.0
            tu = (p + wz0 - oz) / uz
            vx = math.floor(ox + ux * tu)
            vy = math.floor(oy + uy * tu)
            vz = p + wz0 - side
            fx = vx
            fy = vy
            fz = vz - stz
        t = tu * ulen
        if not (t > tw and t < view):
            return -2, 0.0
        if medium == MEDIUM_WATER:
            left = math.exp(-prm[P_WATER_SIGMA] * (t - tw))
            if reach * left <= 1.0:
                return -2, 0.0  # too deep under water: a full trace goes deep
        if vy < 0 or vy >= H_WORLD or fy < 0:
            return -2, 0.0
        if (((vx - wx0) | (vz - wz0) | (fx - wx0) | (fz - wz0)) & ~mask) != 0:
            return -2, 0.0
        if vx == tx and vy == ty and vz == tz:
            return -2, 0.0  # its outline is drawn by `_trace`
        xm = vx & mask
        zm = vz & mask
        own = _vox_key(xm, vy, zm, 0) >> 8
        if ((v0 >> 8) & VOX_BITS) == own:
            bid = v0 & 255
        elif ((v1 >> 8) & VOX_BITS) == own:
            bid = v1 & 255
        elif ((v2 >> 8) & VOX_BITS) == own:
            bid = v2 & 255
        elif ((v3 >> 8) & VOX_BITS) == own:
            bid = v3 & 255
        else:
            bid = -1
        if bid >= 0:
            # A neighbour's ray ended on this very face, with the same medium
            # (the key says) in front of it.
            k = tables[_u(T_KIND + bid)]
        else:
            bid = blocks[_u((_brick_index(xm, vy, zm, lb) << 6) | _local(xm, vy, zm))]
            k = tables[_u(T_KIND + bid)]
            if k != KIND_OPAQUE and k != KIND_CUTOUT:
                return -2, 0.0
            if fy < H_WORLD:
                xm = fx & mask
                zm = fz & mask
                front = blocks[_u((_brick_index(xm, fy, zm, lb) << 6) | _local(xm, fy, zm))]
                if tables[_u(T_MEDIUM + front)] != medium:
                    return -2, 0.0
            elif medium != MEDIUM_NONE:
                return -2, 0.0
    if _avatar_before(t + 1e-6, dx, dy, dz, px, py, ints, prm, avatars):
        return -2, 0.0
    if deep:
        # Cut short in deep water: the rest is water too.
        f = _fog(tw, prm)
        have_sky, skr, skg, skb = _need_sky(f, have_sky, skr, skg, skb, dx, dy, dz, prm)
        r += trans * ((1.0 - f) * prm[P_WATER_COLOR] + f * skr)
        g += trans * ((1.0 - f) * prm[P_WATER_COLOR + 1] + f * skg)
        b += trans * ((1.0 - f) * prm[P_WATER_COLOR + 2] + f * skb)
    else:
        # (the footprint times ulen: tu * ulen * ulen, no square root)
        fu, fv, face, _cos, cr, cg, cb, ca, tex = _surface(
            ox + ux * tu, oy + uy * tu, oz + uz * tu,
            tu * (ux * ux + uy * uy + uz * uz) * prm[P_PIX_ANGLE] * 16.0, vx, vy, vz, axis,
            stx, sty, stz, ux, uy, uz, ulen, bid, prm, atlas, tables,
        )  # fmt: skip
        if k == KIND_CUTOUT and ca < 0.5:
            # A hole in the leaves: in air, `_rows` traces on from this face.
            return (-3 if medium == MEDIUM_NONE else -2), t
        if medium == MEDIUM_WATER:
            have_sky, skr, skg, skb = _need_sky(
                _fog(tw, prm), have_sky, skr, skg, skb, dx, dy, dz, prm
            )
            r, g, b, trans = _water_cover(r, g, b, trans, left, tw, prm, skr, skg, skb)
        light = _lit(prm[P_FACE_SHADE + face], t, vx, vy, vz, axis, stx, sty, stz, fu, fv, blocks,
                     tables, cover, ints, prm, aoc)  # fmt: skip
        f = _fog(t, prm)
        have_sky, skr, skg, skb = _need_sky(f, have_sky, skr, skg, skb, dx, dy, dz, prm)
        r += trans * ((1.0 - f) * cr * light + f * skr)
        g += trans * ((1.0 - f) * cg * light + f * skg)
        b += trans * ((1.0 - f) * cb * light + f * skb)
    _put(out, px, py, r, g, b)
    ta = tw if wp > 0 else t  # how far the ray went in air (`_trace`'s distance)
    if deep:
        return -1, ta
    return _vox_key(vx & mask, vy, vz & mask, bid) | (tex << TEX_SHIFT), ta


@njit(cache=True, fastmath=True, inline="always")
def _blend(out, px, py, x0, x1, y0, y1):
    """Pixel (px, py) as the mean of pixels (x0|x1, y0|y1) (two of them
    twice where x0 == x1 or y0 == y1)."""
    a = _u(y0)
    b = _u(y1)
    c = _u(x0)
    d = _u(x1)
    y = _u(py)
    x = _u(px)
    for ch in range(3):
        out[y, x, ch] = (
            np.int32(out[a, c, ch]) + np.int32(out[a, d, ch]) + np.int32(out[b, c, ch])
            + np.int32(out[b, d, ch]) + 2
        ) >> 2  # fmt: skip


@njit(cache=True, fastmath=True, inline="always")
def _no_avatar_rect(px, py, avatars, ints):
    """Whether no avatar box's screen rectangle holds pixel (px, py)."""
    for i in range(ints[I_AVATARS]):  # noqa: SIM110 (numba compiles no generator into all())
        if _in_rect(px, py, avatars, i):
            return False
    return True


@njit(cache=True, fastmath=True, inline="always")
def _nearest(dists, j0, j1, i0, i1):
    """The least distance kept for the neighbours in key rows j0, j1 and
    columns i0, i1."""
    return min(
        min(dists[_u(j0), _u(i0)], dists[_u(j0), _u(i1)]),
        min(dists[_u(j1), _u(i0)], dists[_u(j1), _u(i1)]),
    )


@njit(cache=True, fastmath=True, inline="always")
def _keep(keys, voxs, dists, px, py, key, vox, dist):
    """Record a pixel of a coarse pass for the next one to draw from."""
    y = _u(py >> 1)
    x = _u(px >> 1)
    keys[y, x] = key
    voxs[y, x] = vox
    dists[y, x] = dist


@njit(cache=True, fastmath=True, inline="always")
def _between(p, level, span):
    """Pixel column (or row) ``p`` in a reusing pass at ``level``: whether it
    lies between traced ones (1) or on one (0), and the key columns (rows)
    of its neighbours either side (the same one when on a traced one)."""
    o = (p >> level) & 1
    i0 = (p - o * span) >> 1
    return o, i0, i0 + span if o != 0 else i0


@njit(cache=True, fastmath=True, inline="always")
def _plane(key):
    """A plain-hit key without `KEY_HOLE`: the face the ray met first."""
    return key & ~KEY_HOLE if key >= 0 else key


@njit(cache=True, fastmath=True, inline="always")
def _pend(px, t):
    """A pixel column to trace and, where known, the distance of a leaf face
    its ray goes through a hole in (1/1024 block, rounded down; 0: none)."""
    return px | (np.int64(t * 1024.0) << 16)


@njit(cache=True, fastmath=True, inline="always")
def _unpend(p):
    """`_pend`'s column and distance, less 1/1024: in front of the face."""
    t = (p >> 16) * (1.0 / 1024.0)
    return p & 0xFFFF, t - 1.0 / 1024.0 if t > 0.0 else 0.0


# No reference counting in here (``_nrt=False``): with it, every array
# handed to an inlined helper was counted up and down per pixel, atomically,
# on counters both threads share (1.7x the CPU a frame). Nothing here
# allocates, and the caller holds every array for the whole call. numpy's
# error model: no zero-division checks on every division (8 % a frame; the
# walks already handle infinite steps).
@njit(cache=True, fastmath=True, _nrt=False, error_model="numpy")
def _rows(out, k, phase, tbits, tiles_x, top, sx0, sxs, blocks, bricks, secs, wbricks, wsecs,
          heights4, heights16, cover, ints, prm, atlas, tables, avatars, starts, aoc, keys,
          voxs, dists, pend):  # fmt: skip
    """Thread ``k``'s rows of pass ``phase`` (see `render_frame`): every
    pixel (full trace), or, subsampling (`SUB_LEVELS` = 2), the pixels of
    every 4th row and column (phase 0), the rest of the even rows and
    columns (1), the others (2)."""
    height = out.shape[0]
    width = out.shape[1]
    nt = ints[I_THREADS]
    tile = ints[I_TILE]
    sub = ints[I_SUB] != 0
    first = sub and phase == 0
    # Reusing levels: SUB_LEVELS - 1 .. 0, each between pixels of the pass
    # before, 2 << level apart.
    level = SUB_LEVELS - phase if sub and phase > 0 else -1
    if first:
        step = 1 << SUB_LEVELS
    elif level >= 1:
        step = 1 << level
    else:
        step = 1
    nrows = (height + step - 1) // step
    span = 1 << level if level >= 0 else 0  # pixels to the nearer neighbour
    if phase == 0:
        for i in range(0, AOC_SIZE, 2):
            aoc[i] = -1  # the view may have changed since the last frame
    mask = ints[I_MASK]
    # the outlined block's voxel (`_vox_key` >> 8), never blended
    tvox = -1
    if ints[I_HAS_TARGET] != 0:
        tx = ints[I_TARGET] & mask
        tvox = _vox_key(tx, ints[I_TARGET + 1], ints[I_TARGET + 2] & mask, 0) >> 8
    q = 0
    for m in range(k, nrows, nt):
        # While reusing, rows on the coarser grid hold half the work of the
        # others: with an even number of threads, swap the rows of every
        # other pair so each thread gets both kinds (still a permutation).
        if level >= 0 and (nt & 1) == 0 and (q & 1) == 1 and (m ^ 1) < nrows:
            m = m ^ 1
        q += 1
        py = m * step
        row = (py >> tbits) * tiles_x if tile > 0 else 0
        sy = (1.0 - 2.0 * (py + 0.5) / height) * prm[P_TAN_V]
        # key rows of the neighbours above (or on) and below this row
        yo, j0, j1 = _between(py, level, span) if level >= 0 else (0, py >> 1, py >> 1)
        # Two loops a row: the first draws what the pixels around allow
        # (the sky, a shared face) and lists the rest; the second traces
        # them. Apart, the short first loop keeps its values in registers
        # instead of sharing them with the long trace.
        n = 0
        for px in range(0, width, step):
            if level < 0:
                pend[_u(n)] = px
                n += 1
                continue
            xo, i0, i1 = _between(px, level, span)
            if (xo | yo) == 0:
                continue  # done in an earlier pass
            # The traced neighbours: left and right, above and below,
            # or the four corners; all must agree.
            # (A ray through a hole in a leaf face met that face too.)
            key = _plane(keys[_u(j0), _u(i0)])
            if (
                key != -1
                and xo != 0
                and (px + span >= width or _plane(keys[_u(j0), _u(i1)]) != key)
            ):
                key = -1
            if (
                key != -1
                and yo != 0
                and (
                    py + span >= height
                    or _plane(keys[_u(j1), _u(i0)]) != key
                    or (xo != 0 and _plane(keys[_u(j1), _u(i1)]) != key)
                )
            ):
                key = -1
            if key == KEY_SKY:
                if _reuse_sky(out, px, py, sy, sx0, sxs, ints, prm, avatars):
                    if level >= 1:
                        _keep(keys, voxs, dists, px, py, KEY_SKY, -1, FAR)
                    continue
            elif key >= 0:
                v0 = voxs[_u(j0), _u(i0)]
                v1 = voxs[_u(j0), _u(i1)]
                v2 = voxs[_u(j1), _u(i0)]
                v3 = voxs[_u(j1), _u(i1)]
                if (
                    key < KEY_DEEP
                    and v0 >= 0
                    and v0 == v1
                    and v0 == v2
                    and v0 == v3
                    and ((v0 >> 8) & VOX_BITS) != tvox
                    and _no_avatar_rect(px, py, avatars, ints)
                ):
                    # One texel of one face all round (`TEX_SHIFT`).
                    dx = xo * span
                    dy = yo * span
                    _blend(out, px, py, px - dx, px + dx, py - dy, py + dy)
                    if level >= 1:
                        # Its hit lies in that texel: no nearer than theirs
                        # less the texel's diagonal (sqrt(2) / 16 a level-0 texel).
                        lod = (v0 >> (TEX_SHIFT + 8)) & 7
                        th = _nearest(dists, j0, j1, i0, i1) - 0.09 * (1 << lod)
                        _keep(keys, voxs, dists, px, py, key, v0, th)
                    continue
                if key < KEY_DEEP:  # (no water surface, not deep)
                    hv, th = _reuse(
                        out, px, py, sy, key, v0, v1, v2, v3, sx0, sxs, blocks, cover,
                        ints, prm, atlas, tables, avatars, aoc, False,
                    )  # fmt: skip
                else:
                    hv, th = _reuse(
                        out, px, py, sy, key, v0, v1, v2, v3, sx0, sxs, blocks, cover,
                        ints, prm, atlas, tables, avatars, aoc, True,
                    )  # fmt: skip
                if hv >= -1:
                    if level >= 1:
                        _keep(keys, voxs, dists, px, py, key, hv, th)
                    continue
                if hv == -3:
                    pend[_u(n)] = _pend(px, th)
                    n += 1
                    continue
            pend[_u(n)] = px
            n += 1
        for i in range(n):
            px, t1 = _unpend(pend[_u(i)])
            t0 = starts[row + (px >> tbits)] if tile > 0 else 0.0
            # Where every neighbour's ray has a key (`_trace`), this one
            # meets nothing before the nearest point where one of theirs
            # left the air (its hit, or the water's surface) either (as in
            # `_reuse`), so it starts just short of it. Saves most of the
            # walk of the rays along silhouettes and the horizon, the
            # longest ones. (A ray through a hole in a leaf face that
            # `_reuse` found starts at that face.)
            if level >= 0 and t1 == 0.0:
                xo, i0, i1 = _between(px, level, span)
                if (
                    (xo == 0 or px + span < width)
                    and (yo == 0 or py + span < height)
                    and keys[_u(j0), _u(i0)] != -1
                    and keys[_u(j0), _u(i1)] != -1
                    and keys[_u(j1), _u(i0)] != -1
                    and keys[_u(j1), _u(i1)] != -1
                ):
                    t1 = _nearest(dists, j0, j1, i0, i1)
                    t1 = t1 - BRACKET_MARGIN if t1 < FAR else 0.0
            hit, hv, th = _pixel(
                out, px, py, sy, t0, t1, top, sx0, sxs, blocks, bricks, secs, wbricks, wsecs,
                heights4, heights16, cover, ints, prm, atlas, tables, avatars, aoc,
            )  # fmt: skip
            if first or level >= 1:
                _keep(keys, voxs, dists, px, py, hit, hv, th)


@njit(parallel=True, cache=True, fastmath=True, nogil=True)
def render_frame(out, blocks, bricks, secs, wbricks, wsecs, heights4, heights16, cover, ints, prm,
                 atlas, tables, avatars, dil4, dil16, starts, aocache, keys, voxs,
                 dists, pending):  # fmt: skip
    """Fill ``out`` (uint8[H, W, 3]) with the frame seen from the camera in ``prm``.

    ``dil4``, ``dil16``, ``starts``, ``keys``, ``voxs``, ``dists`` and
    ``pending`` are scratch buffers (the dilated column heights, each tile's
    beam start, the plain-hit keys, `_vox_key` and hit distances of the even
    pixels: each at least [(H + 1) // 2, (W + 1) // 2] when ``ints[I_SUB]``
    is set; per thread, a row's pixels left to trace: int64[threads, W]);
    ``ints[I_TILE] == 0`` turns the beam pre-pass off.

    With ``ints[I_SUB]`` the passes of the module docstring run one after
    the other, each split between the threads.
    """
    height = out.shape[0]
    width = out.shape[1]
    nt = ints[I_THREADS]
    tile = ints[I_TILE]
    tiles_x = (width + tile - 1) // tile if tile > 0 else 1
    tiles_y = (height + tile - 1) // tile if tile > 0 else 1
    # No block at or above ``top`` anywhere in the view: rays climbing past
    # it are done (exact, where the view's own top_y is per section).
    top = np.int64(0)  # (a literal 0 here made numba compile `_rows` twice)
    for i in range(heights16.size):
        top = max(top, heights16[i])
    if tile > 0:
        lb = ints[I_BRICK_BITS]
        _dilate(heights4, dil4, lb)
        _dilate(heights16, dil16, lb - 2)
        for i in prange(tiles_x * tiles_y):
            x0 = (i % tiles_x) * tile
            y0 = (i // tiles_x) * tile
            x1 = min(x0 + tile, width) - 1
            y1 = min(y0 + tile, height) - 1
            starts[i] = _beam_start(x0, y0, x1, y1, width, height, dil4, dil16, top, ints, prm)
    # Tiles are a power of two wide: pixel -> tile by shifts, not divisions.
    tbits = 0
    while (1 << tbits) < tile:
        tbits += 1
    # Ray directions before normalisation are linear in the pixel column.
    sx0 = -prm[P_TAN_H] * (1.0 - 1.0 / width)
    sxs = 2.0 * prm[P_TAN_H] / width
    _avatar_rects(avatars, ints[I_AVATARS], width, height, sx0, sxs, prm)
    # The rows are split between threads (row = k, k + nt, ...); each
    # thread's share is one call of `_rows`, which numba compiles as a plain
    # function: its parallel passes are superlinear in the size of a loop
    # body (the trace inlined into the parallel loop took minutes to
    # compile), and one call per thread costs nothing.
    for phase in range(SUB_LEVELS + 1 if ints[I_SUB] != 0 else 1):
        for k in prange(nt):
            # (prange hands out unsigned indices: an int64 keeps `_rows` to
            # one compiled signature)
            kk = np.int64(k)
            _rows(
                out, kk, phase, tbits, tiles_x, top, sx0, sxs, blocks, bricks, secs, wbricks,
                wsecs, heights4, heights16, cover, ints, prm, atlas, tables, avatars, starts,
                aocache[kk], keys, voxs, dists, pending[kk],
            )  # fmt: skip
