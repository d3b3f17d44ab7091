"""A bot's lazy view of the world: sections kept compressed until read.

A bot at view distance 64 holds hundreds of sections but reads a handful
(the ground around it). Decoding them all would cost each bot ~20 µs × 400
sections at join and 4 KiB each in memory; keeping the wire bytes and
decoding on first read costs nothing for sections never looked at.
"""

from __future__ import annotations

import numpy as np

from world.codec import CodecError, decode_section
from world.coords import SECTION_MASK, SECTION_SHIFT, WORLD_HEIGHT, SectionKey


class LazyReplica:
    """Received sections by key: wire bytes, decoded on first block read."""

    __slots__ = ("_arrays", "_raw", "bad_sections")

    def __init__(self) -> None:
        self._raw: dict[SectionKey, bytes] = {}
        self._arrays: dict[SectionKey, np.ndarray] = {}
        self.bad_sections = 0  # sections whose bytes did not decode (server bug)

    def __len__(self) -> int:
        return len(self._raw) + len(self._arrays)

    def __contains__(self, key: object) -> bool:
        return key in self._arrays or key in self._raw

    @property
    def decoded(self) -> int:
        return len(self._arrays)

    def add_section(self, key: SectionKey, data: bytes) -> None:
        self._arrays.pop(key, None)
        self._raw[key] = data

    def unload(self, key: SectionKey) -> None:
        self._arrays.pop(key, None)
        self._raw.pop(key, None)

    def _array(self, key: SectionKey) -> np.ndarray | None:
        arr = self._arrays.get(key)
        if arr is None:
            data = self._raw.pop(key, None)
            if data is None:
                return None
            try:
                arr = decode_section(data)
            except CodecError:
                self.bad_sections += 1
                return None
            self._arrays[key] = arr
        return arr

    def get_block(self, x: int, y: int, z: int) -> int | None:
        """The block id, or None where the bot has not received that section."""
        if not 0 <= y < WORLD_HEIGHT:
            return None
        arr = self._array((x >> SECTION_SHIFT, y >> SECTION_SHIFT, z >> SECTION_SHIFT))
        if arr is None:
            return None
        return int(arr[y & SECTION_MASK, z & SECTION_MASK, x & SECTION_MASK])

    def set_block(self, x: int, y: int, z: int, block: int) -> None:
        """Apply a delta; deltas for sections we do not hold are ignored (they come whole)."""
        if not 0 <= y < WORLD_HEIGHT:
            return
        arr = self._array((x >> SECTION_SHIFT, y >> SECTION_SHIFT, z >> SECTION_SHIFT))
        if arr is not None:
            arr[y & SECTION_MASK, z & SECTION_MASK, x & SECTION_MASK] = block
