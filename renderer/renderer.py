"""`Renderer`: draws a `WorldView` from a `Camera` into an RGB frame.

One object per output size. Everything the kernel needs that does not
change per frame (texture atlas, block tables, shading constants) is built
once; a frame only writes the camera and the avatars into preallocated
arrays and calls the compiled kernel, so the per-frame path allocates
nothing and runs no Python per pixel.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np

from renderer import raycaster as rc
from renderer.camera import Camera
from renderer.textures import build_atlas
from renderer.view import WorldView
from world.physics import HALF_WIDTH, PLAYER_HEIGHT

# numba's OpenMP workers (libgomp) spin-wait after every parallel loop by
# default. On a shared 2-core machine that spinning is CPU the encoder, the
# event loop and other sessions need: measured ~15-20 % of a frame's CPU
# time (`bench render` cpu_ms_per_frame), for no visible change in frame
# rate. libgomp reads this when numba first starts its threads, which is
# after this import; a value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RGB = tuple[float, float, float]
MAX_AVATARS = 64

# Distinct body colours for avatars that do not bring their own.
AVATAR_PALETTE: tuple[RGB, ...] = (
    (0.85, 0.25, 0.2),
    (0.2, 0.45, 0.85),
    (0.95, 0.75, 0.15),
    (0.6, 0.3, 0.75),
    (0.2, 0.7, 0.4),
    (0.9, 0.5, 0.2),
)
HEAD_COLOR: RGB = (0.86, 0.68, 0.55)
HEAD_SIZE = 0.5  # blocks at the top of the avatar box drawn as its head


class Avatar(NamedTuple):
    """Another player: feet centre, yaw and an optional body colour (0..1)."""

    x: float
    y: float
    z: float
    yaw: float
    color: RGB | None = None


@dataclass(frozen=True, slots=True)
class RenderSettings:
    sun: tuple[float, float, float] = (0.35, 0.85, 0.4)  # towards the sun (normalised on use)
    zenith: RGB = (0.32, 0.53, 0.9)
    horizon: RGB = (0.73, 0.84, 0.96)
    sun_color: RGB = (1.0, 0.97, 0.86)
    ambient: float = 0.55  # light on faces turned away from the sun
    ao: float = 0.5  # ambient occlusion strength; 0 turns it off
    ao_far: float = 40.0  # blocks; AO fades out towards this distance
    shadow: float = 0.6  # light left on faces the sky cannot see
    fog: bool = True
    fog_start: float = 0.4  # fraction of the view distance where fog begins
    water_color: RGB = (0.06, 0.22, 0.42)
    water_sigma: float = 0.18  # absorption per block travelled in water
    water_alpha: float = 0.35  # how much a water surface covers, seen from above
    outline: RGB = (0.05, 0.05, 0.05)


def face_shades(sun: Sequence[float], ambient: float) -> np.ndarray:
    """Light of the six faces (+x, -x, +y, -y, +z, -z), top face = 1."""
    s = np.asarray(sun, dtype=np.float64)
    s = s / np.linalg.norm(s)
    normals = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    light = ambient + (1 - ambient) * np.maximum(0.0, normals @ s)
    return light / light[2]


def beam_tile(width: int, height: int, view_distance: float, fov_deg: float = 70.0) -> int:
    """Pixel size of the beam pre-pass tiles: the largest power of two that
    keeps a tile's beam within 3 blocks of its middle ray at the view
    distance (the pre-pass checks a 4-block margin; past that it stops)."""
    pix = 2.0 * math.tan(math.radians(fov_deg) / 2) / height
    tile = 2
    while tile < 32 and (tile * 2) * 0.71 * pix * view_distance <= 3.0:
        tile *= 2
    return tile


@lru_cache(maxsize=1)
def _static_tables() -> tuple[np.ndarray, np.ndarray]:
    """(atlas, block tables): deterministic, so built once per process."""
    atlas, slots = build_atlas()
    atlas.flags.writeable = False
    tables = rc.block_tables(slots)
    tables.flags.writeable = False
    return atlas, tables


class Renderer:
    """Renders frames of ``width`` × ``height`` (see the module docstring).

    ``threads``: rows are split among this many numba threads (default: all);
    ``beams``: the tile pre-pass (frames are identical without it; since
    subsampled rays start where their neighbours' met nothing, it saves
    little: within 2 % either way on the benchmarks' paths);
    ``subsample``: trace coarse to fine, drawing a pixel from the hits of
    the traced pixels around it where they agree and starting
    the others' rays where theirs met nothing (`raycaster`'s docstring:
    ~45 % less CPU a frame on the `bench render` path; ~20 pixels in a
    million differ from a full trace by more than 8/255)."""

    def __init__(
        self,
        width: int,
        height: int,
        view_distance: float = 96.0,
        settings: RenderSettings | None = None,
        threads: int | None = None,
        beams: bool = True,
        subsample: bool = True,
    ) -> None:
        if view_distance <= 0:
            raise ValueError("view_distance must be positive")
        self.view_distance = float(view_distance)
        self.settings = settings or RenderSettings()
        self.threads = threads
        self.beams = beams
        self.subsample = subsample
        self._atlas, self._tables = _static_tables()
        self._prm = np.zeros(rc.N_PARAMS, dtype=np.float64)
        self._ints = np.zeros(rc.N_INTS, dtype=np.int64)
        self._avatars = np.zeros((MAX_AVATARS, rc.AVATAR_FIELDS), dtype=np.float64)
        # Scratch the kernel fills: dilated column heights (sized by the
        # view), each tile's beam start (by the frame), a per-thread AO cache.
        self._dil4 = np.zeros(0, dtype=np.uint8)
        self._dil16 = np.zeros(0, dtype=np.uint8)
        self._aocache = np.zeros((numba.config.NUMBA_NUM_THREADS, rc.AOC_SIZE), dtype=np.int64)
        self._fill_settings()
        self.resize(width, height)

    def resize(self, width: int, height: int) -> None:
        # (the kernel packs a pixel column in 16 bits: `raycaster._pend`)
        if not (1 <= width < 1 << 16 and 1 <= height < 1 << 16):
            raise ValueError(f"bad frame size {width}x{height}")
        self.width = int(width)
        self.height = int(height)
        self._frame = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        self.tile = beam_tile(self.width, self.height, self.view_distance) if self.beams else 0
        tiles = -(-self.width // max(1, self.tile)) * -(-self.height // max(1, self.tile))
        self._starts = np.zeros(max(1, tiles), dtype=np.float64)
        # plain-hit keys, voxels and distances of the even pixels (subsampling)
        self._keys = np.zeros(((self.height + 1) // 2, (self.width + 1) // 2), dtype=np.int64)
        self._voxs = np.zeros_like(self._keys)
        self._dists = np.zeros(self._keys.shape, dtype=np.float64)
        # per thread, the pixels of a row left to trace (`rc._rows`)
        self._pending = np.zeros((numba.config.NUMBA_NUM_THREADS, self.width), dtype=np.int64)

    def _fill_settings(self) -> None:
        s, p = self.settings, self._prm
        sun = np.asarray(s.sun, dtype=np.float64)
        p[rc.P_SUN : rc.P_SUN + 3] = sun / np.linalg.norm(sun)
        p[rc.P_ZENITH : rc.P_ZENITH + 3] = s.zenith
        p[rc.P_HORIZON : rc.P_HORIZON + 3] = s.horizon
        p[rc.P_SUN_COLOR : rc.P_SUN_COLOR + 3] = s.sun_color
        p[rc.P_WATER_COLOR : rc.P_WATER_COLOR + 3] = s.water_color
        p[rc.P_WATER_SIGMA] = s.water_sigma
        p[rc.P_WATER_ALPHA] = s.water_alpha
        p[rc.P_AO] = s.ao
        p[rc.P_AO_FAR] = s.ao_far
        p[rc.P_AO_FAR_INV] = 1.0 / s.ao_far if s.ao_far > 0 else 0.0
        p[rc.P_SHADOW] = s.shadow
        p[rc.P_FACE_SHADE : rc.P_FACE_SHADE + 6] = face_shades(s.sun, s.ambient)
        p[rc.P_FOG] = 1.0 if s.fog else 0.0
        p[rc.P_VIEW] = self.view_distance
        p[rc.P_FOG_START] = s.fog_start * self.view_distance
        p[rc.P_FOG_SCALE] = 1.0 / max(1e-9, self.view_distance - p[rc.P_FOG_START])
        p[rc.P_OUTLINE : rc.P_OUTLINE + 3] = s.outline

    @property
    def frame(self) -> np.ndarray:
        """The renderer's own output buffer (overwritten by the next frame)."""
        return self._frame

    def render(
        self,
        view: WorldView,
        camera: Camera,
        avatars: Sequence[Avatar | tuple] = (),
        target: tuple[int, int, int] | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Draw one frame; returns ``out`` (default: the reused `frame` buffer).

        ``avatars``: other players as ``(x, y, z, yaw[, rgb])`` feet
        positions; ``target``: block coordinates to outline."""
        if out is None:
            out = self._frame
        elif out.shape != (self.height, self.width, 3) or out.dtype != np.uint8:
            raise ValueError(f"out must be uint8[{self.height}, {self.width}, 3]")
        if view.size > rc.MAX_WINDOW:
            raise ValueError(f"a view window of {view.size} blocks is over {rc.MAX_WINDOW}")
        p, ints = self._prm, self._ints
        fwd, right, up = camera.basis()
        tan_h, tan_v = camera.tan_half_fov(self.width, self.height)
        p[rc.P_OX], p[rc.P_OY], p[rc.P_OZ] = (
            _off_grid(camera.x),
            _off_grid(camera.y),
            _off_grid(camera.z),
        )
        p[rc.P_FWD], p[rc.P_FWD + 1], p[rc.P_FWD + 2] = fwd
        p[rc.P_RIGHT], p[rc.P_RIGHT + 1], p[rc.P_RIGHT + 2] = right
        p[rc.P_UP], p[rc.P_UP + 1], p[rc.P_UP + 2] = up
        p[rc.P_TAN_H], p[rc.P_TAN_V] = tan_h, tan_v
        p[rc.P_PIX_ANGLE] = 2.0 * tan_v / self.height
        wx0, wz0 = view.origin
        ints[rc.I_WX0], ints[rc.I_WZ0] = wx0, wz0
        ints[rc.I_MASK] = view.mask
        ints[rc.I_BRICK_BITS] = (view.size // 4).bit_length() - 1
        if target is None:
            ints[rc.I_HAS_TARGET] = 0
        else:
            ints[rc.I_TARGET : rc.I_TARGET + 3] = target
            ints[rc.I_HAS_TARGET] = 1
        ints[rc.I_AVATARS] = self._fill_avatars(avatars)
        # The parallel loops take as many threads as the rows are split in
        # (a thread-local setting): one-thread frames wake no other thread.
        nt = min(self.threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)
        if numba.get_num_threads() != nt:
            numba.set_num_threads(nt)
        ints[rc.I_THREADS] = nt
        if self._aocache.shape[0] < nt:
            self._aocache = np.zeros((nt, rc.AOC_SIZE), dtype=np.int64)
        if self._pending.shape[0] < nt:
            self._pending = np.zeros((nt, self.width), dtype=np.int64)
        ints[rc.I_TILE] = self.tile
        ints[rc.I_SUB] = 1 if self.subsample else 0
        if self._dil4.size != (view.size // 4) ** 2:
            self._dil4 = np.zeros((view.size // 4) ** 2, dtype=np.uint8)
            self._dil16 = np.zeros((view.size // 16) ** 2, dtype=np.uint8)
        rc.render_frame(
            out,
            view.blocks_flat,
            view.bricks_flat,
            view.sections_flat,
            view.water_bricks_flat,
            view.water_sections_flat,
            view.heights4_flat,
            view.heights16_flat,
            view.cover,
            ints,
            p,
            self._atlas,
            self._tables,
            self._avatars,
            self._dil4,
            self._dil16,
            self._starts,
            self._aocache,
            self._keys,
            self._voxs,
            self._dists,
            self._pending,
        )
        return out

    def _fill_avatars(self, avatars: Sequence[Avatar | tuple]) -> int:
        a = self._avatars
        n = 0
        for i, av in enumerate(avatars[:MAX_AVATARS]):
            x, y, z, yaw = (float(v) for v in av[:4])
            color = av[4] if len(av) > 4 and av[4] is not None else None
            a[n, rc.A_MIN : rc.A_MIN + 3] = (x - HALF_WIDTH, y, z - HALF_WIDTH)
            a[n, rc.A_MAX : rc.A_MAX + 3] = (x + HALF_WIDTH, y + PLAYER_HEIGHT, z + HALF_WIDTH)
            a[n, rc.A_BODY : rc.A_BODY + 3] = color or AVATAR_PALETTE[i % len(AVATAR_PALETTE)]
            a[n, rc.A_HEAD : rc.A_HEAD + 3] = HEAD_COLOR
            a[n, rc.A_HEAD_Y] = y + PLAYER_HEIGHT - HEAD_SIZE
            # The box face closest to where the avatar looks gets the visor.
            fx, fz = math.sin(yaw), math.cos(yaw)
            if abs(fx) >= abs(fz):
                a[n, rc.A_FACE] = 0 if fx > 0 else 1
            else:
                a[n, rc.A_FACE] = 4 if fz > 0 else 5
            n += 1
        return n

    def warm_up(self, progress: Callable[[str], None] | None = None) -> float:
        return warm_up(progress)


def warm_up(progress: Callable[[str], None] | None = None) -> float:
    """Compile (or load from the disk cache) the kernel; returns the seconds taken.

    A first start compiles for tens of seconds; later starts load the cached
    machine code in well under a second. ``progress`` gets one line before
    and one after, for a client's loading screen."""
    if progress is not None:
        progress("compiling renderer (first start only)...")
    t0 = time.perf_counter()
    view = WorldView(radius=16)
    view.set_block(0, 60, 2, 1)
    Renderer(8, 8, view_distance=16).render(view, Camera(0.5, 61.0, 0.5), [(0.5, 60, 1.5, 0.0)])
    dt = time.perf_counter() - t0
    if progress is not None:
        progress(f"renderer ready ({dt:.1f} s)")
    return dt


def kernel_threadsafe() -> bool:
    """Whether frames may be rendered on several threads at once.

    numba's OpenMP and TBB threading layers allow it; its fallback
    (workqueue, where neither libgomp nor TBB is installed) aborts the
    process on a concurrent launch. Loads (or compiles) the kernel first if
    this process has not run it yet: the layer is chosen on the first launch."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process yet
        warm_up()
        layer = numba.threading_layer()
    return layer in ("omp", "tbb")


def _off_grid(v: float) -> float:
    """An eye exactly on a block boundary, moved 1e-4 block off it.

    A ray that then runs inside a boundary plane (eye at x = 0.0, yaw 0)
    made the kernel's traversal loop forever and froze a render node; the
    nudge is invisible and keeps every ray off the degenerate case."""
    return v + 1e-4 if v == math.floor(v) else v
