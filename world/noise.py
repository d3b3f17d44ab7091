"""Deterministic, vectorised gradient noise (2D and 3D) and fractal sums (fBm).

"The same seed gives the same world on every machine", so everything here is
built from operations whose results IEEE 754 and numpy pin down exactly:

* lattice gradients come from an integer hash (uint32 multiply / xor-shift,
  wrapping arithmetic) of the lattice coordinates and a 32-bit seed: no
  Python ``hash()``, no random generator state, no dependence on evaluation
  order or on the shape of the batch a point is evaluated in;
* the float maths is ``+ - * floor`` in float64 only (no ``sin``/``exp`` whose
  last bit may differ between libm builds), each element computed alone (no
  reductions across a batch, octaves summed in a fixed order).

Gradient tables use integer components, so there are no rounded constants.
Output of a single octave is roughly in ``[-1, 1]``; fBm is normalised by the
sum of its octave amplitudes so it stays in the same range.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_P_X = np.uint32(0x8DA6B343)  # large odd multipliers spread lattice coords
_P_Y = np.uint32(0xD8163841)
_P_Z = np.uint32(0xCB1AB31F)
_M_1 = np.uint32(0x7FEB352D)  # "lowbias32" finaliser (Chris Wellons)
_M_2 = np.uint32(0x846CA68B)

# 2D: 8 directions of equal length sqrt(5), none axis-aligned (fewer grid artefacts).
_G2_X = np.array([1, 2, 2, 1, -1, -2, -2, -1], dtype=np.float64)
_G2_Z = np.array([2, 1, -1, -2, -2, -1, 1, 2], dtype=np.float64)
_SCALE_2 = 1.0 / 1.6  # peak |value| of one octave is about 1.58 with |g| = sqrt(5)

# 3D: Perlin's 12 cube-edge directions, padded to 16 so a 4-bit index picks one.
_G3 = np.array(
    [
        (1, 1, 0),
        (-1, 1, 0),
        (1, -1, 0),
        (-1, -1, 0),
        (1, 0, 1),
        (-1, 0, 1),
        (1, 0, -1),
        (-1, 0, -1),
        (0, 1, 1),
        (0, -1, 1),
        (0, 1, -1),
        (0, -1, -1),
        (1, 1, 0),
        (0, -1, 1),
        (-1, 1, 0),
        (0, -1, -1),
    ],
    dtype=np.float64,
)
_G3_X, _G3_Y, _G3_Z = (np.ascontiguousarray(_G3[:, i]) for i in range(3))


def derive_seed(seed: int, *salt: object) -> int:
    """A 32-bit seed for one noise field, from the world seed and a label.

    blake2b over the decimal text is the same everywhere, for any size of int.
    """
    text = ":".join([str(int(seed)), *(str(s) for s in salt)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


def to_u32(values: np.ndarray) -> np.ndarray:
    """Integers (any sign) to uint32 by wrapping modulo 2**32."""
    return (np.asarray(values, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32)


def mix32(h: np.ndarray) -> np.ndarray:
    """Avalanche a uint32 array (every input bit affects every output bit)."""
    h = h ^ (h >> np.uint32(16))
    h = h * _M_1
    h = h ^ (h >> np.uint32(15))
    h = h * _M_2
    return h ^ (h >> np.uint32(16))


def hash2(ix: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """uint32 hash of integer lattice points (x, z) under a 32-bit seed."""
    return mix32((to_u32(ix) * _P_X + to_u32(iz) * _P_Z) ^ np.uint32(seed))


def hash3(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """uint32 hash of integer lattice points (x, y, z) under a 32-bit seed."""
    return mix32((to_u32(ix) * _P_X + to_u32(iy) * _P_Y + to_u32(iz) * _P_Z) ^ np.uint32(seed))


def _seed_u32(seed: int | np.ndarray) -> np.ndarray:
    # A seed per point (broadcast) lets several fields share one vectorised call.
    return np.asarray(seed, dtype=np.int64).astype(np.uint32)


def _fade(t: np.ndarray) -> np.ndarray:
    # 6t^5 - 15t^4 + 10t^3: zero first and second derivative at the lattice.
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _cell(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lattice cell (hashed axis term as uint32) and the fraction inside it."""
    f = np.floor(v)
    return to_u32(f.astype(np.int64)), v - f


def gradient2(x: np.ndarray, z: np.ndarray, seed: int | np.ndarray) -> np.ndarray:
    """One octave of 2D gradient (Perlin) noise at float64 points, ~[-1, 1]."""
    x = np.asarray(x, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    cx, fx = _cell(x)
    cz, fz = _cell(z)
    hx0 = cx * _P_X
    hx1 = hx0 + _P_X
    hz0 = cz * _P_Z
    hz1 = hz0 + _P_Z
    s = _seed_u32(seed)
    fx1 = fx - 1.0
    fz1 = fz - 1.0

    def corner(hx: np.ndarray, hz: np.ndarray, dx: np.ndarray, dz: np.ndarray) -> np.ndarray:
        g = mix32((hx + hz) ^ s) >> np.uint32(29)  # top bits are the best mixed
        return _G2_X[g] * dx + _G2_Z[g] * dz

    u = _fade(fx)
    v = _fade(fz)
    n00 = corner(hx0, hz0, fx, fz)
    n10 = corner(hx1, hz0, fx1, fz)
    n01 = corner(hx0, hz1, fx, fz1)
    n11 = corner(hx1, hz1, fx1, fz1)
    a = n00 + (n10 - n00) * u
    b = n01 + (n11 - n01) * u
    return (a + (b - a) * v) * _SCALE_2


def gradient3(x: np.ndarray, y: np.ndarray, z: np.ndarray, seed: int | np.ndarray) -> np.ndarray:
    """One octave of 3D gradient (improved Perlin) noise at float64 points, ~[-1, 1]."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    cx, fx = _cell(x)
    cy, fy = _cell(y)
    cz, fz = _cell(z)
    hx = (cx * _P_X, cx * _P_X + _P_X)
    hy = (cy * _P_Y, cy * _P_Y + _P_Y)
    hz = (cz * _P_Z, cz * _P_Z + _P_Z)
    dx = (fx, fx - 1.0)
    dy = (fy, fy - 1.0)
    dz = (fz, fz - 1.0)
    s = _seed_u32(seed)

    def corner(i: int, j: int, k: int) -> np.ndarray:
        g = mix32((hx[i] + hy[j] + hz[k]) ^ s) >> np.uint32(28)
        return _G3_X[g] * dx[i] + _G3_Y[g] * dy[j] + _G3_Z[g] * dz[k]

    u = _fade(fx)
    v = _fade(fy)
    w = _fade(fz)
    # Lerp along x, then y, then z; each corner is computed once.
    x00 = corner(0, 0, 0)
    x00 = x00 + (corner(1, 0, 0) - x00) * u
    x10 = corner(0, 1, 0)
    x10 = x10 + (corner(1, 1, 0) - x10) * u
    x01 = corner(0, 0, 1)
    x01 = x01 + (corner(1, 0, 1) - x01) * u
    x11 = corner(0, 1, 1)
    x11 = x11 + (corner(1, 1, 1) - x11) * u
    y0 = x00 + (x10 - x00) * v
    y1 = x01 + (x11 - x01) * v
    return y0 + (y1 - y0) * w


class Fbm2:
    """Seeded multi-octave 2D gradient noise: ``Fbm2(seed, 1/128, octaves=5)(x, z)``.

    Each octave has its own derived seed and a fractional offset, so octaves
    do not all vanish together at integer lattice points.
    """

    def __init__(
        self,
        seed: int,
        frequency: float,
        octaves: int = 4,
        lacunarity: float = 2.0,
        gain: float = 0.5,
        salt: object = "fbm2",
    ) -> None:
        if octaves < 1:
            raise ValueError("octaves must be >= 1")
        self.seed = seed
        self.octaves = octaves
        self.frequencies = [frequency * lacunarity**i for i in range(octaves)]
        amps = [gain**i for i in range(octaves)]
        total = sum(amps)
        self.amplitudes = [a / total for a in amps]
        self.seeds = [derive_seed(seed, salt, i) for i in range(octaves)]
        # Offsets in [0, 64) with 1/256 steps: exact in float64.
        self.offsets = [(s & 0x3FFF) / 256.0 for s in self.seeds]

    def __call__(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return fbm2_many([self], x, z)[0]


class Fbm3:
    """Seeded multi-octave 3D gradient noise with per-axis frequencies."""

    def __init__(
        self,
        seed: int,
        frequency: tuple[float, float, float],
        octaves: int = 2,
        lacunarity: float = 2.0,
        gain: float = 0.5,
        salt: object = "fbm3",
    ) -> None:
        if octaves < 1:
            raise ValueError("octaves must be >= 1")
        self.seed = seed
        self.octaves = octaves
        self.frequencies = [tuple(f * lacunarity**i for f in frequency) for i in range(octaves)]
        amps = [gain**i for i in range(octaves)]
        total = sum(amps)
        self.amplitudes = [a / total for a in amps]
        self.seeds = [derive_seed(seed, salt, i) for i in range(octaves)]
        self.offsets = [(s & 0x3FFF) / 256.0 for s in self.seeds]

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return fbm3_many([self], x, y, z)[0]


def _rows(values: list[float], ndim: int) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape((-1,) + (1,) * ndim)


def fbm2_many(fields: Sequence[Fbm2], x: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
    """Several 2D fields at the same points in one vectorised noise call.

    numpy has a fixed cost per operation, so one call over every octave of
    every field is much faster on small batches; results are bit-identical
    to evaluating each field alone (same per-element arithmetic).
    """
    x, z = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(z, np.float64))
    octs = [(f, o) for f in fields for o in range(f.octaves)]
    freq = _rows([f.frequencies[o] for f, o in octs], x.ndim)
    off = _rows([f.offsets[o] for f, o in octs], x.ndim)
    seed = np.asarray([f.seeds[o] for f, o in octs], dtype=np.int64).reshape(freq.shape)
    g = gradient2(x[None] * freq + off, z[None] * freq - off, seed)
    out, row = [], 0
    for f in fields:
        total = np.zeros(x.shape)
        for a in f.amplitudes:  # fixed order: the sum is the same on every machine
            total = total + a * g[row]
            row += 1
        out.append(total)
    return out


def fbm3_many(
    fields: Sequence[Fbm3], x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> list[np.ndarray]:
    """Several 3D fields at the same points in one vectorised noise call."""
    x, y, z = np.broadcast_arrays(
        np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(z, np.float64)
    )
    octs = [(f, o) for f in fields for o in range(f.octaves)]
    fx = _rows([f.frequencies[o][0] for f, o in octs], x.ndim)
    fy = _rows([f.frequencies[o][1] for f, o in octs], x.ndim)
    fz = _rows([f.frequencies[o][2] for f, o in octs], x.ndim)
    off = _rows([f.offsets[o] for f, o in octs], x.ndim)
    seed = np.asarray([f.seeds[o] for f, o in octs], dtype=np.int64).reshape(fx.shape)
    g = gradient3(x[None] * fx + off, y[None] * fy - off, z[None] * fz + 0.5 * off, seed)
    out, row = [], 0
    for f in fields:
        total = np.zeros(x.shape)
        for a in f.amplitudes:
            total = total + a * g[row]
            row += 1
        out.append(total)
    return out
