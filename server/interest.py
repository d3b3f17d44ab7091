"""Interest management: which sections a subscriber should hold.

A subscriber (a player, or a render node with several view centres) holds
the section columns whose horizontal distance from a centre's column is
within its view radius, all heights included. What it still lacks waits in
a queue ordered nearest first (3-D distance, so the centre's own layer leads)
and the simulation sends a budget of it per tick. Sections are dropped
(`unload`) only beyond the radius plus a hysteresis margin, so walking back
and forth along a border does not resend the same sections.

All the work happens when a centre crosses into another section (or the
view changes), never per tick: the desired set comes from a precomputed,
distance-sorted offset table shifted by numpy, and the per-tick cost is
popping the queue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from world.coords import SECTION_SHIFT, SECTIONS_Y, WORLD_LIMIT_XZ, SectionKey

_LIMIT = WORLD_LIMIT_XZ >> SECTION_SHIFT  # |sx|, |sz| bound of valid sections
_PACK = 1 << 22  # packs (sx, sy, sz) into one int64 for numpy set maths


@lru_cache(maxsize=64)
def offset_table(radius: float, cy: int) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets (n, 3) [dx, sy, dz], d2 (n,))`` of the columns within
    ``radius`` section widths, every height, sorted by 3-D distance from
    height ``cy``. Read-only arrays: cached and shared."""
    r = math.floor(radius)
    d = np.arange(-r, r + 1)
    dx, dz = np.meshgrid(d, d, indexing="ij")
    keep = dx * dx + dz * dz <= radius * radius
    dx, dz = dx[keep], dz[keep]
    sy = np.arange(SECTIONS_Y)
    dx3 = np.repeat(dx, SECTIONS_Y)
    dz3 = np.repeat(dz, SECTIONS_Y)
    sy3 = np.tile(sy, len(dx))
    d2 = dx3 * dx3 + dz3 * dz3 + (sy3 - cy) ** 2
    order = np.argsort(d2, kind="stable")
    offsets = np.stack([dx3, sy3, dz3], axis=1)[order].astype(np.int64)
    d2 = d2[order].astype(np.int64)
    offsets.flags.writeable = False
    d2.flags.writeable = False
    return offsets, d2


def centre_key(x: float, y: float, z: float) -> SectionKey:
    """The section a centre (block coordinates) is in, height clamped to the world."""
    sy = min(max(math.floor(y) >> SECTION_SHIFT, 0), SECTIONS_Y - 1)
    return (math.floor(x) >> SECTION_SHIFT, sy, math.floor(z) >> SECTION_SHIFT)


def _pack(keys: np.ndarray) -> np.ndarray:
    return ((keys[:, 0] + _PACK) * _PACK + (keys[:, 2] + _PACK)) * 16 + keys[:, 1]


def desired_sections(centres: list[SectionKey], radius: float) -> np.ndarray:
    """Section keys ``(n, 3)`` within ``radius`` columns of any centre, nearest first."""
    if not centres:
        return np.zeros((0, 3), dtype=np.int64)
    parts, dists = [], []
    for cx, cy, cz in centres:
        offsets, d2 = offset_table(radius, cy)
        parts.append(offsets + np.array([cx, 0, cz], dtype=np.int64))
        dists.append(d2)
    if len(parts) == 1:
        keys = parts[0]
    else:
        keys = np.concatenate(parts)
        order = np.argsort(np.concatenate(dists), kind="stable")
        keys = keys[order]
        _, first = np.unique(_pack(keys), return_index=True)
        keys = keys[np.sort(first)]  # the nearest copy of each key, in distance order
    inside = (np.abs(keys[:, 0]) < _LIMIT) & (np.abs(keys[:, 2]) < _LIMIT)
    return keys if inside.all() else keys[inside]


def column_distance(keys: np.ndarray, centres: list[SectionKey]) -> np.ndarray:
    """Horizontal distance (in section widths) of each key's column to the nearest centre."""
    c = np.asarray(centres, dtype=np.float64)
    dx = keys[:, 0:1].astype(np.float64) - c[None, :, 0]
    dz = keys[:, 2:3].astype(np.float64) - c[None, :, 2]
    return np.sqrt((dx * dx + dz * dz).min(axis=1))


@dataclass(slots=True)
class SectionInterest:
    """What one subscriber holds (``sent``), still wants (``queue``), must
    drop (``unload``) and holds out of date (``stale``, ``resend``)."""

    radius: float = 0.0  # section widths
    hysteresis: float = 1.5
    centres: list[SectionKey] = field(default_factory=list)
    sent: set[SectionKey] = field(default_factory=set)
    queue: list[SectionKey] = field(default_factory=list)  # nearest first
    qpos: int = 0
    stale: set[SectionKey] = field(default_factory=set)  # re-send, coalesced
    resend: set[SectionKey] = field(default_factory=set)  # re-send this tick
    unload: list[SectionKey] = field(default_factory=list)  # to tell the client

    def retarget(self, centres: list[SectionKey], radius: float) -> bool:
        """Move the interest; recomputes only if a centre section or the radius changed."""
        if centres == self.centres and radius == self.radius:
            return False
        self.centres = centres
        self.radius = radius
        wanted = desired_sections(centres, radius)
        sent = self.sent
        self.queue = [k for k in map(tuple, wanted.tolist()) if k not in sent]
        self.qpos = 0
        if sent:
            held = np.array(list(sent), dtype=np.int64)
            if centres:
                far = column_distance(held, centres) > radius + self.hysteresis
                gone = [tuple(k) for k in held[far].tolist()]
            else:
                gone = [tuple(k) for k in held.tolist()]
            for key in gone:
                sent.discard(key)
                self.stale.discard(key)
                self.resend.discard(key)
            self.unload.extend(gone)
        return True

    def pending(self) -> int:
        return len(self.queue) - self.qpos

    def is_far(self, key: SectionKey, fraction: float) -> bool:
        """Whether ``key``'s column is farther than ``fraction`` of the radius from every centre."""
        limit = (self.radius * fraction) ** 2
        sx, _, sz = key
        for cx, _, cz in self.centres:
            dx, dz = sx - cx, sz - cz
            if dx * dx + dz * dz <= limit:
                return False
        return True

    def mark_sent(self, key: SectionKey) -> None:
        self.sent.add(key)
        self.stale.discard(key)
        self.resend.discard(key)
