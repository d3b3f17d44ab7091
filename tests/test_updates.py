"""Block updates (falling blocks, water, TNT) against a real flat world.

`Loop` drives the updater the way the server tick does: run the tick, drain
the world's changes, notify the updater of them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from world.blocks import BLOCKS, BlockId
from world.coords import WORLD_LIMIT_XZ
from world.generator import FlatGenerator
from world.map import BlockChange, World
from world.updates import BlockUpdater

SURFACE = 16  # FlatGenerator(16): grass at y=15, the first air layer is y=16


class Loop:
    def __init__(self, world: World, **kwargs: int) -> None:
        self.world = world
        self.updater = BlockUpdater(world, **kwargs)
        self.t = 0
        self.changes: list[BlockChange] = []

    def edit(self, x: int, y: int, z: int, block: int) -> None:
        """A player edit between ticks, notified like the server does."""
        self.world.set_block(x, y, z, block)
        self.updater.notify(self.world.drain_changes())

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.t += 1
            self.updater.tick(self.t)
            changes = self.world.drain_changes()
            self.changes.extend(changes)
            self.updater.notify(changes)

    def block(self, x: int, y: int, z: int) -> int:
        return self.world.get_block(x, y, z)


@pytest.fixture
def loop() -> Loop:
    return Loop(World(FlatGenerator(16)))


def water(level: int) -> int:
    return BLOCKS.water_id(level)


def water_cells(loop: Loop, y: int, radius: int = 12) -> dict[tuple[int, int], int]:
    out = {}
    for x in range(-radius, radius + 1):
        for z in range(-radius, radius + 1):
            level = int(BLOCKS.fluid_level[loop.block(x, y, z)])
            if level >= 0:
                out[(x, z)] = level
    return out


# -- falling blocks -------------------------------------------------------------
def test_sand_falls_one_block_per_tick_and_lands(loop: Loop) -> None:
    loop.edit(0, 25, 0, BlockId.SAND)
    for expected in range(24, SURFACE - 1, -1):
        loop.run(1)
        assert loop.block(0, expected, 0) == BlockId.SAND
        assert loop.block(0, expected + 1, 0) == BlockId.AIR
    loop.run(5)
    assert loop.block(0, SURFACE, 0) == BlockId.SAND
    assert loop.block(0, SURFACE - 1, 0) == BlockId.GRASS
    assert loop.updater.pending == 0


def test_supported_sand_stays(loop: Loop) -> None:
    loop.edit(0, SURFACE, 0, BlockId.SAND)
    loop.run(5)
    assert loop.block(0, SURFACE, 0) == BlockId.SAND
    assert loop.changes == []


def test_gravel_tower_collapses(loop: Loop) -> None:
    for y in range(SURFACE, SURFACE + 4):
        loop.edit(0, y, 0, BlockId.DIRT)
    for y in range(SURFACE + 4, SURFACE + 9):
        loop.edit(0, y, 0, BlockId.GRAVEL)
    loop.run(3)
    assert loop.block(0, SURFACE + 8, 0) == BlockId.GRAVEL  # supported: nothing moved
    for y in range(SURFACE, SURFACE + 4):
        loop.edit(0, y, 0, BlockId.AIR)
    loop.run(30)
    column = [loop.block(0, y, 0) for y in range(SURFACE, SURFACE + 10)]
    assert column == [BlockId.GRAVEL] * 5 + [BlockId.AIR] * 5
    assert loop.updater.pending == 0


def test_sand_sinks_through_water(loop: Loop) -> None:
    for y in range(SURFACE, SURFACE + 3):
        loop.world.set_block(0, y, 0, BlockId.WATER)  # a column of sources
    loop.world.drain_changes()
    loop.edit(0, SURFACE + 3, 0, BlockId.SAND)
    loop.run(10)
    assert loop.block(0, SURFACE, 0) == BlockId.SAND


# -- water ----------------------------------------------------------------------
def test_water_spreads_with_increasing_levels_and_stops_at_7(loop: Loop) -> None:
    loop.edit(0, SURFACE, 0, BlockId.WATER)
    loop.run(4)
    assert loop.block(1, SURFACE, 0) == BlockId.AIR  # waits for the water interval
    loop.run(1)
    assert loop.block(1, SURFACE, 0) == water(1)
    loop.run(100)
    cells = water_cells(loop, SURFACE)
    # a diamond: level = Manhattan distance from the source, up to 7
    expected = {
        (x, z): abs(x) + abs(z) for x in range(-7, 8) for z in range(-7, 8) if abs(x) + abs(z) <= 7
    }
    assert cells == expected
    assert water_cells(loop, SURFACE - 1) == {}  # nothing soaks into the ground
    assert loop.updater.pending == 0  # settled, no churn


def test_removing_the_source_dries_the_flow(loop: Loop) -> None:
    loop.edit(0, SURFACE, 0, BlockId.WATER)
    loop.run(100)
    assert len(water_cells(loop, SURFACE)) == 113
    loop.edit(0, SURFACE, 0, BlockId.AIR)
    # the flow thins out a level per water interval (total volume falls) until dry
    volumes = []
    while water_cells(loop, SURFACE) and loop.t < 400:
        loop.run(loop.updater.water_interval)
        volumes.append(sum(8 - lv for lv in water_cells(loop, SURFACE).values()))
    assert volumes[-1] == 0
    assert all(b < a for a, b in itertools.pairwise(volumes))
    assert len(volumes) <= 10
    assert loop.block(0, SURFACE, 0) == BlockId.AIR
    loop.run(20)
    assert loop.updater.pending == 0


def test_placing_a_block_in_water_stops_the_flow(loop: Loop) -> None:
    # a one-wide channel along +x at z=0
    for x in range(-1, 12):
        for z in (-1, 1):
            loop.world.set_block(x, SURFACE, z, BlockId.STONE)
    loop.world.set_block(-1, SURFACE, 0, BlockId.STONE)
    loop.world.drain_changes()
    loop.edit(0, SURFACE, 0, BlockId.WATER)
    loop.run(60)
    assert [loop.block(x, SURFACE, 0) for x in range(9)] == [water(lv) for lv in range(8)] + [
        BlockId.AIR
    ]
    loop.edit(2, SURFACE, 0, BlockId.STONE)
    loop.run(100)
    assert loop.block(1, SURFACE, 0) == water(1)
    assert all(loop.block(x, SURFACE, 0) == BlockId.AIR for x in range(3, 9))


def test_waterfall_falls_and_spreads_where_it_lands(loop: Loop) -> None:
    for y in range(SURFACE, SURFACE + 5):
        loop.world.set_block(0, y, 0, BlockId.STONE)  # a pillar, top at y=21
    loop.world.drain_changes()
    loop.edit(0, SURFACE + 5, 0, BlockId.WATER)
    loop.run(150)
    # level 1 beside the source, falling water down the side of the pillar
    for y in range(SURFACE, SURFACE + 6):
        assert loop.block(1, y, 0) == water(1)
    # falling water does not spread sideways in mid-air
    assert loop.block(2, SURFACE + 3, 0) == BlockId.AIR
    # where it lands it spreads on with rising levels
    assert loop.block(2, SURFACE, 0) == water(2)
    assert loop.block(7, SURFACE, 0) == water(7)
    assert loop.block(8, SURFACE, 0) == BlockId.AIR
    assert loop.updater.pending == 0


# -- TNT ------------------------------------------------------------------------
def test_ignite_only_tnt(loop: Loop) -> None:
    assert not loop.updater.ignite(0, SURFACE - 1, 0)  # grass
    assert not loop.updater.ignite(0, 500, 0)  # outside the world
    loop.edit(0, SURFACE, 0, BlockId.TNT)
    assert loop.updater.ignite(0, SURFACE, 0)
    assert loop.updater.is_lit(0, SURFACE, 0)
    loop.run(10)
    assert not loop.updater.ignite(0, SURFACE, 0)  # already lit: the fuse is not reset
    loop.run(30)
    assert loop.updater.explosions == 1


def test_tnt_explodes_after_the_fuse_and_makes_a_crater(loop: Loop) -> None:
    loop.edit(0, SURFACE, 0, BlockId.TNT)
    assert loop.updater.ignite(0, SURFACE, 0)
    loop.run(39)
    assert loop.block(0, SURFACE, 0) == BlockId.TNT
    assert loop.changes == []
    loop.run(1)
    assert loop.block(0, SURFACE, 0) == BlockId.AIR
    assert loop.updater.explosions == 1
    for y in (SURFACE - 1, SURFACE - 2):  # grass and dirt right below are gone
        assert loop.block(0, y, 0) == BlockId.AIR
    destroyed = [c for c in loop.changes if c.new == BlockId.AIR]
    assert 20 < len(destroyed) < 800
    assert all(abs(c.x) <= 7 and abs(c.z) <= 7 and c.y >= SURFACE - 7 for c in destroyed)
    assert loop.block(6, SURFACE - 1, 6) == BlockId.GRASS  # far ground untouched


def test_bedrock_and_water_survive(loop: Loop) -> None:
    world = World(FlatGenerator(8))  # bedrock y=0, stone 1..3, dirt 4..6, grass 7
    lp = Loop(world)
    lp.edit(0, 1, 0, BlockId.TNT)
    lp.edit(2, 1, 0, BlockId.WATER)
    assert lp.updater.ignite(0, 1, 0)
    lp.run(40)
    assert lp.updater.explosions == 1
    assert lp.block(0, 1, 0) == BlockId.AIR
    assert lp.block(0, 2, 0) == BlockId.AIR or lp.block(1, 1, 0) == BlockId.AIR
    for x in range(-8, 9):
        for z in range(-8, 9):
            assert lp.block(x, 0, z) == BlockId.BEDROCK
    assert lp.block(2, 1, 0) == BlockId.WATER


class CountingWorld(World):
    """A real World that counts batched edits."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def set_blocks(self, positions, blocks):
        self.batches.append(len(np.asarray(positions).reshape(-1, 3)))
        return super().set_blocks(positions, blocks)


def test_explosion_is_one_batched_edit() -> None:
    world = CountingWorld(FlatGenerator(16))
    lp = Loop(world, fuse_ticks=2)
    lp.edit(0, SURFACE - 1, 0, BlockId.TNT)
    lp.updater.ignite(0, SURFACE - 1, 0)
    lp.run(2)
    assert len(world.batches) == 1 and world.batches[0] > 20


def test_chain_reaction(loop: Loop) -> None:
    loop.edit(0, SURFACE, 0, BlockId.TNT)
    loop.edit(3, SURFACE, 0, BlockId.TNT)
    loop.updater.ignite(0, SURFACE, 0)
    loop.run(40)
    assert loop.block(0, SURFACE, 0) == BlockId.AIR
    assert loop.block(3, SURFACE, 0) == BlockId.TNT  # caught, not destroyed
    assert loop.updater.is_lit(3, SURFACE, 0)
    loop.run(21)  # the chained fuse is 10..20 ticks
    assert loop.block(3, SURFACE, 0) == BlockId.AIR
    assert loop.updater.explosions == 2
    assert loop.updater.pending == 0


def test_broken_tnt_does_not_explode(loop: Loop) -> None:
    loop.edit(0, SURFACE, 0, BlockId.TNT)
    loop.updater.ignite(0, SURFACE, 0)
    loop.edit(0, SURFACE, 0, BlockId.AIR)
    loop.run(50)
    assert loop.updater.explosions == 0
    assert loop.block(0, SURFACE - 1, 0) == BlockId.GRASS


def test_explosions_are_deterministic() -> None:
    def blast(seed: int) -> list[BlockChange]:
        lp = Loop(World(FlatGenerator(16)), seed=seed)
        lp.edit(5, SURFACE, -3, BlockId.TNT)
        lp.updater.ignite(5, SURFACE, -3)
        lp.run(40)
        return lp.changes

    a, b = blast(7), blast(7)
    assert a == b and len(a) > 20
    assert blast(8) != a  # the seed matters


# -- budget ---------------------------------------------------------------------
def test_budget_defers_but_does_not_lose_updates() -> None:
    lp = Loop(World(FlatGenerator(16)), max_updates_per_tick=3)
    for x in range(10):
        lp.world.set_block(x * 2, 30, 0, BlockId.SAND)
    lp.updater.notify(lp.world.drain_changes())
    assert lp.updater.pending == 10
    lp.run(1)
    moved = [x for x in range(10) if lp.block(x * 2, 29, 0) == BlockId.SAND]
    assert len(moved) == 3
    assert lp.updater.pending > 0
    lp.run(200)
    assert all(lp.block(x * 2, SURFACE, 0) == BlockId.SAND for x in range(10))
    assert all(lp.block(x * 2, y, 0) == BlockId.AIR for x in range(10) for y in range(17, 31))
    assert lp.updater.pending == 0


def test_updates_at_the_world_edge_do_not_crash(loop: Loop) -> None:
    edge = WORLD_LIMIT_XZ - 1
    loop.edit(edge, SURFACE, 0, BlockId.WATER)
    loop.edit(edge - 3, SURFACE, 0, BlockId.TNT)
    loop.updater.ignite(edge - 3, SURFACE, 0)
    loop.run(60)
    assert loop.updater.explosions == 1
    assert loop.block(edge, SURFACE, 0) == BlockId.WATER
