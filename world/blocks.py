"""The block registry: the one definition of every block type.

Block ids are small integers stored in section arrays (``uint8``). Flowing
water levels are separate ids (like modern Minecraft's flattened block
states), so a section stays one array and the codec needs no second layer.
Vectorised code uses the lookup tables (``BlockRegistry.solid`` etc.),
indexed by block id.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

MAX_WATER_LEVEL = 7


class BlockId(IntEnum):
    """Stable numeric ids. Never renumber: ids are stored on disk and on the wire."""

    AIR = 0
    STONE = 1
    DIRT = 2
    GRASS = 3
    SAND = 4
    GRAVEL = 5
    WATER = 6  # a source block (level 0)
    WOOD = 7
    LEAVES = 8
    PLANKS = 9
    GLASS = 10
    BRICK = 11
    TNT = 12
    BEDROCK = 13
    SNOW = 14
    COBBLESTONE = 15
    # 16..22: flowing water, level 1 (next to a source) .. 7 (thinnest)
    WATER_1 = 16
    WATER_2 = 17
    WATER_3 = 18
    WATER_4 = 19
    WATER_5 = 20
    WATER_6 = 21
    WATER_7 = 22


@dataclass(frozen=True, slots=True)
class Block:
    id: int
    name: str
    solid: bool  # collides with players and stops rays of explosions' damage walk
    transparent: bool  # light and view pass (air, water, glass, leaves)
    color: tuple[int, int, int]  # base colour of the procedural texture (sRGB)
    texture: str  # key of the procedural texture generator
    falls: bool = False  # sand and gravel fall when unsupported
    fluid_level: int | None = None  # 0 = source, 1..7 flowing; None = not a fluid
    replaceable: bool = False  # a placement may overwrite it (air, water)
    breakable: bool = True  # bedrock is not
    placeable: bool = True  # players may place it
    blast_resistance: float = 1.0


def _water(level: int) -> Block:
    return Block(
        id=BlockId.WATER if level == 0 else BlockId.WATER_1 + level - 1,
        name="water" if level == 0 else f"water_{level}",
        solid=False,
        transparent=True,
        color=(48, 92, 200),
        texture="water",
        fluid_level=level,
        replaceable=True,
        breakable=False,
        placeable=level == 0,
        blast_resistance=100.0,
    )


_DEFAULT_BLOCKS: tuple[Block, ...] = (
    Block(
        BlockId.AIR,
        "air",
        solid=False,
        transparent=True,
        color=(0, 0, 0),
        texture="none",
        replaceable=True,
        breakable=False,
        placeable=False,
        blast_resistance=0.0,
    ),
    Block(BlockId.STONE, "stone", True, False, (125, 125, 125), "stone", blast_resistance=6.0),
    Block(BlockId.DIRT, "dirt", True, False, (134, 96, 67), "dirt", blast_resistance=0.5),
    Block(BlockId.GRASS, "grass", True, False, (95, 159, 53), "grass", blast_resistance=0.6),
    Block(
        BlockId.SAND, "sand", True, False, (219, 207, 163), "sand", falls=True, blast_resistance=0.5
    ),
    Block(BlockId.GRAVEL, "gravel", True, False, (136, 126, 126), "gravel", falls=True),
    _water(0),
    Block(BlockId.WOOD, "wood", True, False, (102, 81, 51), "wood", blast_resistance=2.0),
    Block(BlockId.LEAVES, "leaves", True, True, (60, 130, 40), "leaves", blast_resistance=0.2),
    Block(BlockId.PLANKS, "planks", True, False, (162, 130, 78), "planks", blast_resistance=3.0),
    Block(BlockId.GLASS, "glass", True, True, (200, 230, 240), "glass", blast_resistance=0.3),
    Block(BlockId.BRICK, "brick", True, False, (150, 74, 58), "brick", blast_resistance=6.0),
    Block(BlockId.TNT, "tnt", True, False, (200, 40, 30), "tnt", blast_resistance=0.0),
    Block(
        BlockId.BEDROCK,
        "bedrock",
        True,
        False,
        (50, 50, 50),
        "bedrock",
        breakable=False,
        placeable=False,
        blast_resistance=1e9,
    ),
    Block(BlockId.SNOW, "snow", True, False, (240, 245, 250), "snow", blast_resistance=0.2),
    Block(
        BlockId.COBBLESTONE,
        "cobblestone",
        True,
        False,
        (110, 110, 110),
        "cobble",
        blast_resistance=6.0,
    ),
    *(_water(level) for level in range(1, MAX_WATER_LEVEL + 1)),
)


class BlockRegistry:
    """All block types, by id and by name, plus id-indexed lookup tables."""

    def __init__(self, blocks: tuple[Block, ...]) -> None:
        ids = [b.id for b in blocks]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate block id in registry")
        if max(ids) > 255:
            raise ValueError("block ids must fit in uint8")
        self._by_id: dict[int, Block] = {b.id: b for b in blocks}
        self._by_name: dict[str, Block] = {b.name: b for b in blocks}
        n = 256
        self.solid = np.zeros(n, dtype=np.bool_)
        self.transparent = np.ones(n, dtype=np.bool_)
        self.falls = np.zeros(n, dtype=np.bool_)
        self.is_fluid = np.zeros(n, dtype=np.bool_)
        self.fluid_level = np.full(n, -1, dtype=np.int8)
        self.replaceable = np.zeros(n, dtype=np.bool_)
        self.blast_resistance = np.full(n, 1e9, dtype=np.float32)
        self.color = np.zeros((n, 3), dtype=np.uint8)
        self.known = np.zeros(n, dtype=np.bool_)
        for b in blocks:
            self.known[b.id] = True
            self.solid[b.id] = b.solid
            self.transparent[b.id] = b.transparent
            self.falls[b.id] = b.falls
            self.is_fluid[b.id] = b.fluid_level is not None
            self.fluid_level[b.id] = -1 if b.fluid_level is None else b.fluid_level
            self.replaceable[b.id] = b.replaceable
            self.blast_resistance[b.id] = b.blast_resistance
            self.color[b.id] = b.color
        for table in (
            self.solid,
            self.transparent,
            self.falls,
            self.is_fluid,
            self.fluid_level,
            self.replaceable,
            self.blast_resistance,
            self.color,
            self.known,
        ):
            table.flags.writeable = False

    def __contains__(self, block_id: object) -> bool:
        return isinstance(block_id, int) and block_id in self._by_id

    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, block_id: int) -> Block:
        try:
            return self._by_id[block_id]
        except KeyError:
            raise KeyError(f"unknown block id {block_id}") from None

    def by_name(self, name: str) -> Block:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown block name {name!r}") from None

    def water_id(self, level: int) -> int:
        if not 0 <= level <= MAX_WATER_LEVEL:
            raise ValueError(f"water level {level} outside 0..{MAX_WATER_LEVEL}")
        return int(BlockId.WATER) if level == 0 else int(BlockId.WATER_1) + level - 1


BLOCKS = BlockRegistry(_DEFAULT_BLOCKS)
"""The registry every service uses (immutable)."""
