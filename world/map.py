"""The voxel map: loaded sections, block reads and edits, change tracking.

`World` knows nothing about networking. Sections come from the store when it
holds a modified copy, otherwise from the generator (untouched sections are
never stored). Every edit is recorded twice: as a block change for whoever
broadcasts them, and as a dirty section for whoever persists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from world.blocks import BLOCKS, BlockId
from world.codec import decode_section
from world.coords import (
    SECTION_MASK,
    SECTION_SHIFT,
    WORLD_HEIGHT,
    BlockPos,
    SectionKey,
    in_world,
    valid_section_key,
)
from world.generator import SectionGenerator


class SectionSource(Protocol):
    """Where modified sections live (the SQLite store implements it)."""

    def load_section(self, key: SectionKey) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class BlockChange:
    x: int
    y: int
    z: int
    old: int
    new: int

    @property
    def pos(self) -> BlockPos:
        return (self.x, self.y, self.z)


class EditError(ValueError):
    """An edit the world cannot take (outside the world, unknown block)."""


class World:
    def __init__(self, generator: SectionGenerator, store: SectionSource | None = None) -> None:
        self.generator = generator
        self.store = store
        self.sections: dict[SectionKey, np.ndarray] = {}
        self._changes: list[BlockChange] = []
        self._dirty: set[SectionKey] = set()

    @property
    def seed(self) -> int:
        return self.generator.seed

    # -- sections -----------------------------------------------------------
    def section(self, key: SectionKey) -> np.ndarray:
        """The live array of a section, loading or generating it on first use."""
        arr = self.sections.get(key)
        if arr is None:
            if not valid_section_key(key):
                raise EditError(f"section {key} is outside the world")
            data = self.store.load_section(key) if self.store is not None else None
            arr = decode_section(data) if data is not None else self.generator.generate_section(key)
            self.sections[key] = arr
        return arr

    def is_loaded(self, key: SectionKey) -> bool:
        return key in self.sections

    def evict(self, keys: list[SectionKey]) -> int:
        """Forget clean sections (they can be reloaded); returns how many went."""
        n = 0
        for key in keys:
            if key not in self._dirty and self.sections.pop(key, None) is not None:
                n += 1
        return n

    # -- blocks -------------------------------------------------------------
    def get_block(self, x: int, y: int, z: int) -> int:
        if y < 0:
            return BlockId.BEDROCK  # the floor is solid, so nothing falls out
        if y >= WORLD_HEIGHT:
            return BlockId.AIR
        arr = self.section((x >> SECTION_SHIFT, y >> SECTION_SHIFT, z >> SECTION_SHIFT))
        return int(arr[y & SECTION_MASK, z & SECTION_MASK, x & SECTION_MASK])

    def set_block(self, x: int, y: int, z: int, block: int) -> int:
        """Write one block; returns the old id. Raises `EditError` if impossible."""
        if not in_world(x, y, z):
            raise EditError(f"block ({x}, {y}, {z}) is outside the world")
        if not (isinstance(block, int) and 0 <= block < 256 and BLOCKS.known[block]):
            raise EditError(f"unknown block id {block!r}")
        key = (x >> SECTION_SHIFT, y >> SECTION_SHIFT, z >> SECTION_SHIFT)
        arr = self.section(key)
        idx = (y & SECTION_MASK, z & SECTION_MASK, x & SECTION_MASK)
        old = int(arr[idx])
        if old != block:
            arr[idx] = block
            self._dirty.add(key)
            self._changes.append(BlockChange(x, y, z, old, block))
        return old

    def set_blocks(self, positions: np.ndarray, blocks: np.ndarray | int) -> list[BlockChange]:
        """Batched edit of many blocks (explosions); returns the changes made."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1, 3)
        values = np.broadcast_to(np.asarray(blocks, dtype=np.int64), (len(positions),))
        start = len(self._changes)
        for (x, y, z), b in zip(positions.tolist(), values.tolist(), strict=True):
            self.set_block(x, y, z, b)
        return self._changes[start:]

    # -- change tracking ----------------------------------------------------
    def drain_changes(self) -> list[BlockChange]:
        """Block changes since the last drain (for broadcasting), oldest first."""
        changes, self._changes = self._changes, []
        return changes

    def take_dirty(self) -> set[SectionKey]:
        """Sections modified since the last take (for persisting)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def mark_dirty(self, keys: set[SectionKey]) -> None:
        """Put sections back in the dirty set (a commit that failed)."""
        self._dirty |= keys
