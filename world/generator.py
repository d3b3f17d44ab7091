"""The generator interface, plus a flat generator for tests and benchmarks."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from world.blocks import BlockId
from world.coords import SECTION_SIZE, SectionKey


class SectionGenerator(Protocol):
    """Makes the untouched content of any section, deterministically."""

    seed: int

    def generate_section(self, key: SectionKey) -> np.ndarray:
        """A fresh ``uint8[16, 16, 16]`` array (``[y, z, x]``) the caller may own."""
        ...


class FlatGenerator:
    """Bedrock at y=0, stone to ``height - 4``, dirt, a grass top at ``height - 1``."""

    def __init__(self, height: int = 16, seed: int = 0) -> None:
        self.seed = seed
        self.height = height
        column = np.zeros(256, dtype=np.uint8)  # padded so any section slices
        column[0] = BlockId.BEDROCK
        column[1 : max(1, height - 4)] = BlockId.STONE
        column[max(1, height - 4) : height - 1] = BlockId.DIRT
        if height >= 1:
            column[height - 1] = BlockId.GRASS
        self._column = column

    def generate_section(self, key: SectionKey) -> np.ndarray:
        y0 = key[1] * SECTION_SIZE
        layers = self._column[y0 : y0 + SECTION_SIZE]
        return np.broadcast_to(layers[:, None, None], (SECTION_SIZE,) * 3).copy()
