"""World map: block reads and writes, validation, change and dirty tracking."""

from __future__ import annotations

import numpy as np
import pytest

from world.blocks import BLOCKS, BlockId
from world.coords import WORLD_HEIGHT, section_key
from world.generator import FlatGenerator
from world.map import EditError, World


def test_reads_match_flat_generator():
    world = World(FlatGenerator(height=16))
    assert world.get_block(0, 0, 0) == BlockId.BEDROCK
    assert world.get_block(-5, 15, 1000) == BlockId.GRASS
    assert world.get_block(-5, 16, 1000) == BlockId.AIR
    assert world.get_block(0, -1, 0) == BlockId.BEDROCK  # below the world is solid
    assert world.get_block(0, WORLD_HEIGHT, 0) == BlockId.AIR


def test_set_block_tracks_changes_and_dirty_sections():
    world = World(FlatGenerator())
    assert world.set_block(-1, 20, -1, BlockId.GLASS) == BlockId.AIR
    assert world.set_block(-1, 20, -1, BlockId.GLASS) == BlockId.GLASS  # no-op: no change
    changes = world.drain_changes()
    assert [(c.pos, c.old, c.new) for c in changes] == [((-1, 20, -1), 0, BlockId.GLASS)]
    assert world.drain_changes() == []
    assert world.take_dirty() == {section_key(-1, 20, -1)} == {(-1, 1, -1)}
    assert world.take_dirty() == set()


@pytest.mark.parametrize(
    "pos,block",
    [((0, -1, 0), 1), ((0, WORLD_HEIGHT, 0), 1), ((1 << 30, 5, 0), 1), ((0, 5, 0), 200)],
)
def test_impossible_edits_are_refused_without_damage(pos, block):
    world = World(FlatGenerator())
    before = {k: v.copy() for k, v in world.sections.items()}
    with pytest.raises(EditError):
        world.set_block(*pos, block)
    assert world.drain_changes() == []
    assert world.take_dirty() == set()
    assert all(np.array_equal(world.sections[k], v) for k, v in before.items())


def test_batched_edits_and_eviction():
    world = World(FlatGenerator())
    pos = np.array([[x, 10, 0] for x in range(-20, 20)])
    changes = world.set_blocks(pos, BlockId.AIR)
    assert len(changes) == 40
    assert all(world.get_block(x, 10, 0) == BlockId.AIR for x in range(-20, 20))
    world.get_block(500, 5, 500)
    assert world.evict([(31, 0, 31), (-1, 0, 0)]) == 1  # the dirty one stays
    assert world.is_loaded((-1, 0, 0))


def test_registry_lookup_tables_agree_with_blocks():
    for block in BLOCKS:
        assert BLOCKS.solid[block.id] == block.solid
        assert BLOCKS.falls[block.id] == block.falls
    assert BLOCKS.by_name("water_3").fluid_level == 3
    assert BLOCKS.water_id(0) == BlockId.WATER
    with pytest.raises(KeyError):
        BLOCKS.get(250)
