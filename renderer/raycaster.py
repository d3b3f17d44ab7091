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
distance.

Everything is inlined into one parallel loop (numba would otherwise
reference-count every array argument on every call, per pixel). Rows are
interleaved between threads (row = k, k + n, k + 2n, ...), so the cheap sky
rows and the expensive horizon rows are spread evenly.

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
N_PARAMS = 48

I_WX0, I_WZ0, I_MASK = 0, 1, 2  # window origin (blocks), width - 1
I_TARGET = 4  # 3: x, y, z
I_HAS_TARGET = 7
I_AVATARS = 8  # how many rows of the avatar array are live
I_THREADS = 9
I_BRICK_BITS = 10  # log2 of the window width in bricks
I_TILE = 11  # tile size (pixels) of the beam pre-pass; 0 = off
N_INTS = 12

# avatar rows: box min (3), box max (3), body rgb (3), head rgb (3),
# y where the head starts, face index (0..5) the avatar looks out of
A_MIN, A_MAX, A_BODY, A_HEAD, A_HEAD_Y, A_FACE = 0, 3, 6, 9, 12, 13
AVATAR_FIELDS = 14

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
def _occ(blocks, tables, x, y, z, wx0, wz0, mask, lb):
    """1 if the voxel darkens its neighbours' corners (outside the view: 0)."""
    if y < 0 or y >= H_WORLD:
        return 0
    if ((x - wx0) | (z - wz0)) & ~mask:
        return 0
    xi = x & mask
    zi = z & mask
    return tables[T_OCCLUDES + blocks[(_brick_index(xi, y, zi, lb) << 6) | _local(xi, y, zi)]]


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
    a = 1.0 - math.exp(-prm[P_WATER_SIGMA] * (t1 - t0))
    f = _fog(t0, prm)
    r += trans * a * ((1.0 - f) * prm[P_WATER_COLOR] + f * skr)
    g += trans * a * ((1.0 - f) * prm[P_WATER_COLOR + 1] + f * skg)
    b += trans * a * ((1.0 - f) * prm[P_WATER_COLOR + 2] + f * skb)
    return r, g, b, trans * (1.0 - a)


@njit(cache=True, fastmath=True, inline="always")
def _trace(ox, oy, oz, dx, dy, dz, t0, top_y, blocks, bricks, secs, wbricks, wsecs, heights4,
           heights16, cover, ints, prm, atlas, tables, avatars, aoc):  # fmt: skip
    """Colour (r, g, b in 0..1) seen along one ray, starting at ``t0`` (the
    beam pre-pass showed only air before it).

    The ray alternates between traversal (tight loops) and events: a voxel
    whose medium differs from the one the ray is in (a face to shade or
    composite), or leaving water into an empty cell. ``top_y``: no block at
    or above it. ``aoc``: this thread's AO cache (the last face's corners)."""
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
    invx = 1.0 / dx if dx != 0.0 else FAR
    invy = 1.0 / dy if dy != 0.0 else FAR
    invz = 1.0 / dz if dz != 0.0 else FAR
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
        ta = (avatars[i, A_MIN] - ox) * invx
        tb = (avatars[i, A_MAX] - ox) * invx
        ax = 0
        tn = min(ta, tb)
        tf = max(ta, tb)
        ta = (avatars[i, A_MIN + 1] - oy) * invy
        tb = (avatars[i, A_MAX + 1] - oy) * invy
        if min(ta, tb) > tn:
            tn = min(ta, tb)
            ax = 1
        tf = min(tf, max(ta, tb))
        ta = (avatars[i, A_MIN + 2] - oz) * invz
        tb = (avatars[i, A_MAX + 2] - oz) * invz
        if min(ta, tb) > tn:
            tn = min(ta, tb)
            ax = 2
        tf = min(tf, max(ta, tb))
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
            h = int(heights16[col16])
            if vy >= h:
                ylo = h
            elif secs[((vy >> 4) << (ls + ls)) | col16] == 0:
                ylo = vy & -16
                yhi = ylo + 16
            else:
                csz = 4
                h = int(heights4[((zi >> 2) << lb) | (xi >> 2)])
                if vy >= h:
                    ylo = h
                elif bricks[_brick_index(xi, vy, zi, lb)] == 0:
                    ylo = vy & -4
                    yhi = ylo + 4
                else:
                    skip = False
            in_water = False
            if not skip and medium == MEDIUM_WATER:
                # Under water, a section or brick of nothing but water is
                # crossed in one step too (the ray stays in water).
                if wsecs[((vy >> 4) << (ls + ls)) | col16] == 4096:
                    in_water = True
                    csz = 16
                elif wbricks[_brick_index(xi, vy, zi, lb)] == 64:
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
                bid = blocks[base | (ly << 4) | (lz << 2) | lx]
                # (in air, the common case, any block is an event: no table)
                if (bid != 0) if medium == MEDIUM_NONE else (tables[T_MEDIUM + bid] != medium):
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
                        or bricks[_brick_index(nx & mask, ny, nz & mask, lb)] == 0
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
            continue
        k = tables[T_KIND + bid]
        if axis < 0:
            # The eye is inside this voxel: no face to draw.
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
            hx = ox + dx * t
            hy = oy + dy * t
            hz = oz + dz * t
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
            # Mip level: texels under one pixel (faces seen edge-on show more).
            foot = t * prm[P_PIX_ANGLE] * 16.0 / max(cos, 0.3)
            lod = 0
            if foot > 1.5:
                lod = 1
                if foot > 3.0:
                    lod = 2
                    if foot > 6.0:
                        lod = 3
                        if foot > 12.0:
                            lod = 4
            s = tables[T_SLOT + bid]
            cr = atlas[lod, s, fk, tv, tu, 0]
            cg = atlas[lod, s, fk, tv, tu, 1]
            cb = atlas[lod, s, fk, tv, tu, 2]
            ca = atlas[lod, s, fk, tv, tu, 3]
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
                    # the voxel in front of the face
                    bx = vx - stx if axis == 0 else vx
                    by = vy - sty if axis == 1 else vy
                    bz = vz - stz if axis == 2 else vz
                    # out of the sky's light (under a tree, in a cave)?
                    if (
                        by < H_WORLD
                        and not (((bx - wx0) | (bz - wz0)) & notmask)
                        and by < cover[bz & mask, bx & mask]
                    ):
                        light *= prm[P_SHADOW]
                    if prm[P_AO] > 0.0 and t < prm[P_AO_FAR]:
                        # Neighbouring pixels mostly see the same face: its
                        # corners are kept (per thread) for the next pixel.
                        if (
                            aoc[0] != bx
                            or aoc[1] != by
                            or aoc[2] != bz
                            or aoc[3] != axis
                            or aoc[5] == 0
                        ):
                            aoc[0] = bx
                            aoc[1] = by
                            aoc[2] = bz
                            aoc[3] = axis
                            aoc[4] = _ao_corners(
                                blocks, tables, bx, by, bz, axis, wx0, wz0, mask, lb
                            )
                            aoc[5] = 1
                        fade = min(1.0, 2.0 * (1.0 - t / prm[P_AO_FAR]))
                        light *= _ao_light(aoc[4], fu, fv, prm[P_AO] * fade)
                f = _fog(t, prm)
                have_sky, skr, skg, skb = _need_sky(f, have_sky, skr, skg, skb, dx, dy, dz, prm)
                r += trans * ((1.0 - f) * cr * light + f * skr)
                g += trans * ((1.0 - f) * cg * light + f * skg)
                b += trans * ((1.0 - f) * cb * light + f * skb)
                trans = 0.0
                break
            if k == KIND_WATER:
                # More mirror-like at grazing angles (Fresnel, roughly).
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
                trans *= 1.0 - a
                medium = MEDIUM_WATER
                tw0 = t
                # Deeper than this, what lies behind shows less than 5 %.
                tlim = min(tray, t + math.log(max(trans * 20.0, 1.0)) / prm[P_WATER_SIGMA])
            elif k == KIND_GLASS:
                f = _fog(t, prm)
                have_sky, skr, skg, skb = _need_sky(f, have_sky, skr, skg, skb, dx, dy, dz, prm)
                r += trans * ca * ((1.0 - f) * cr * light + f * skr)
                g += trans * ca * ((1.0 - f) * cg * light + f * skg)
                b += trans * ca * ((1.0 - f) * cb * light + f * skb)
                trans *= 1.0 - ca
                medium = MEDIUM_GLASS
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
    return r, g, b


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
def _pixel(out, px, py, sy, t0, top, sx0, sxs, blocks, bricks, secs, wbricks, wsecs, heights4,
           heights16, cover, ints, prm, atlas, tables, avatars, aoc):  # fmt: skip
    """Trace one pixel (``sy``: its row's screen coordinate) and write it."""
    sx = sx0 + px * sxs
    dx = prm[P_FWD] + sx * prm[P_RIGHT] + sy * prm[P_UP]
    dy = prm[P_FWD + 1] + sx * prm[P_RIGHT + 1] + sy * prm[P_UP + 1]
    dz = prm[P_FWD + 2] + sx * prm[P_RIGHT + 2] + sy * prm[P_UP + 2]
    n = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
    r, g, b = _trace(
        prm[P_OX], prm[P_OY], prm[P_OZ], dx * n, dy * n, dz * n, t0, top,
        blocks, bricks, secs, wbricks, wsecs, heights4, heights16, cover, ints, prm, atlas, tables,
        avatars, aoc,
    )  # fmt: skip
    out[py, px, 0] = int(min(max(r, 0.0), 1.0) * 255.0 + 0.5)
    out[py, px, 1] = int(min(max(g, 0.0), 1.0) * 255.0 + 0.5)
    out[py, px, 2] = int(min(max(b, 0.0), 1.0) * 255.0 + 0.5)


@njit(parallel=True, cache=True, fastmath=True)
def render_frame(out, blocks, bricks, secs, wbricks, wsecs, heights4, heights16, cover, ints, prm,
                 atlas, tables, avatars, dil4, dil16, starts, aocache):  # fmt: skip
    """Fill ``out`` (uint8[H, W, 3]) with the frame seen from the camera in ``prm``.

    ``dil4``, ``dil16`` and ``starts`` are scratch buffers (the dilated
    column heights and each tile's beam start); ``ints[I_TILE] == 0`` turns
    the beam pre-pass off."""
    height = out.shape[0]
    width = out.shape[1]
    nt = ints[I_THREADS]
    tile = ints[I_TILE]
    tiles_x = (width + tile - 1) // tile if tile > 0 else 1
    tiles_y = (height + tile - 1) // tile if tile > 0 else 1
    # No block at or above ``top`` anywhere in the view: rays climbing past
    # it are done (exact, where the view's own top_y is per section).
    top = 0
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
    for k in prange(nt):
        aoc = aocache[k]
        aoc[5] = 0  # the view may have changed since the last frame
        for py in range(k, height, nt):
            row = (py >> tbits) * tiles_x if tile > 0 else 0
            sy = (1.0 - 2.0 * (py + 0.5) / height) * prm[P_TAN_V]
            for px in range(width):
                t0 = starts[row + (px >> tbits)] if tile > 0 else 0.0
                _pixel(
                    out, px, py, sy, t0, top, sx0, sxs, blocks, bricks, secs, wbricks, wsecs,
                    heights4, heights16, cover, ints, prm, atlas, tables, avatars, aoc,
                )  # fmt: skip
