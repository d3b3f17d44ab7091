"""World geometry: section size, height range, and coordinate conversions.

Sections are 16×16×16 numpy ``uint8`` arrays indexed ``[y, z, x]`` (y-major:
horizontal layers are contiguous, which suits terrain compression and
vertical scans). A section key is ``(sx, sy, sz)`` = block coords >> 4.
"""

from __future__ import annotations

SECTION_SIZE = 16
SECTION_SHIFT = 4
SECTION_MASK = SECTION_SIZE - 1
WORLD_HEIGHT = 128  # blocks y in [0, WORLD_HEIGHT)
SECTIONS_Y = WORLD_HEIGHT // SECTION_SIZE
SEA_LEVEL = 62
# Horizontal extent is unbounded in principle; this bound keeps int32 maths and
# msgpack ints small and rejects absurd coordinates early.
WORLD_LIMIT_XZ = 1 << 24

SectionKey = tuple[int, int, int]
BlockPos = tuple[int, int, int]


def section_key(x: int, y: int, z: int) -> SectionKey:
    return (x >> SECTION_SHIFT, y >> SECTION_SHIFT, z >> SECTION_SHIFT)


def local_index(x: int, y: int, z: int) -> tuple[int, int, int]:
    """Index of block (x, y, z) inside its section array: ``[y, z, x]``."""
    return (y & SECTION_MASK, z & SECTION_MASK, x & SECTION_MASK)


def in_height(y: int) -> bool:
    return 0 <= y < WORLD_HEIGHT


def in_world(x: int, y: int, z: int) -> bool:
    return (
        0 <= y < WORLD_HEIGHT
        and -WORLD_LIMIT_XZ <= x < WORLD_LIMIT_XZ
        and (-WORLD_LIMIT_XZ <= z < WORLD_LIMIT_XZ)
    )


def valid_section_key(key: SectionKey) -> bool:
    sx, sy, sz = key
    lim = WORLD_LIMIT_XZ >> SECTION_SHIFT
    return 0 <= sy < SECTIONS_Y and -lim <= sx < lim and -lim <= sz < lim
