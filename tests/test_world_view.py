"""WorldView: the renderer's dense, toroidal copy of the world stays equal to it.

Everything here runs on real terrain (`TerrainGenerator`) and real edits;
the derived grids (brick and section counts, water counts, column heights,
sky cover) are checked against a view rebuilt from scratch, so incremental
updates can never drift from what a rebuild would give.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from renderer.view import WorldView, from_bricks, to_bricks
from world.blocks import BLOCKS, BlockId
from world.coords import SECTION_SIZE, SECTIONS_Y, WORLD_HEIGHT
from world.map import World
from world.terrain import TerrainGenerator

RADIUS = 40  # a 128-wide window: small, quick to fill


@pytest.fixture(scope="module")
def world() -> World:
    return World(TerrainGenerator(1234))


def _probe(view: WorldView, world: World, rng: random.Random, n: int = 2000) -> None:
    """Random blocks of every loaded column read the same in view and world."""
    keys = sorted(view.loaded)
    for _ in range(n):
        sx, sy, sz = rng.choice(keys)
        x = sx * SECTION_SIZE + rng.randrange(SECTION_SIZE)
        y = sy * SECTION_SIZE + rng.randrange(SECTION_SIZE)
        z = sz * SECTION_SIZE + rng.randrange(SECTION_SIZE)
        assert view.get_block(x, y, z) == world.get_block(x, y, z), (x, y, z)


def _rebuilt(view: WorldView, world: World) -> WorldView:
    """A fresh view of the same window holding the same sections."""
    fresh = WorldView(radius=RADIUS, center=_center(view))
    for key in view.loaded:
        fresh.set_section(key, world.section(key))
    return fresh


def _center(view: WorldView) -> tuple[float, float]:
    half = view.size // 2
    return (view.origin[0] + half + 0.5, view.origin[1] + half + 0.5)


def _assert_same_grids(a: WorldView, b: WorldView) -> None:
    assert np.array_equal(a.blocks, b.blocks)
    assert np.array_equal(a.bricks, b.bricks)
    assert np.array_equal(a.sections, b.sections)
    assert np.array_equal(a.water_bricks, b.water_bricks)
    assert np.array_equal(a.water_sections, b.water_sections)
    assert np.array_equal(a.heights4, b.heights4)
    assert np.array_equal(a.heights16, b.heights16)
    assert np.array_equal(a.cover, b.cover)


def _assert_heights_bound(view: WorldView) -> None:
    """Column heights are exact: the y above each cell's highest block."""
    n = view.size
    arr = from_bricks(view.blocks)  # [y, z, x] of the slots
    ys = np.arange(WORLD_HEIGHT)[:, None, None]
    tops = np.where(arr != 0, ys + 1, 0).max(axis=0)  # [z, x]
    h4 = tops.reshape(n // 4, 4, n // 4, 4).max(axis=(1, 3))
    assert np.array_equal(view.heights4, h4)
    assert np.array_equal(view.heights16, h4.reshape(n // 16, 4, n // 16, 4).max(axis=(1, 3)))


def test_brick_layout_round_trip() -> None:
    arr = np.random.default_rng(1).integers(0, 23, (16, 16, 16), dtype=np.uint8)
    bricks = to_bricks(arr)
    assert bricks.shape == (4, 4, 4, 64)
    assert np.array_equal(from_bricks(bricks), arr)
    # local index of block (x, y, z) inside its brick is y*16 + z*4 + x
    assert bricks[1, 2, 3, 2 * 16 + 1 * 4 + 3] == arr[1 * 4 + 2, 2 * 4 + 1, 3 * 4 + 3]


def test_from_world_equals_world(world: World) -> None:
    view = WorldView.from_world(world, (8.0, 8.0), radius=RADIUS)
    assert len(view.loaded) > 0
    _probe(view, world, random.Random(1))
    _assert_heights_bound(view)
    # outside the window and outside the height range: air
    assert view.get_block(10_000, 64, 0) == BlockId.AIR
    assert view.get_block(0, -1, 0) == BlockId.AIR
    assert view.get_block(0, WORLD_HEIGHT, 0) == BlockId.AIR


def test_edits_update_incrementally(world: World) -> None:
    view = WorldView.from_world(world, (8.0, 8.0), radius=RADIUS)
    rng = random.Random(7)
    keys = sorted(view.loaded)
    placeable = [b.id for b in BLOCKS if b.id != BlockId.AIR]
    for _ in range(400):
        sx, _, sz = rng.choice(keys)
        x = sx * SECTION_SIZE + rng.randrange(SECTION_SIZE)
        z = sz * SECTION_SIZE + rng.randrange(SECTION_SIZE)
        # near the surface, where edits change heights and cover
        y = max(1, min(WORLD_HEIGHT - 1, world.generator.surface_height(x, z) + rng.randint(-3, 3)))
        block = BlockId.AIR if rng.random() < 0.5 else rng.choice(placeable)
        world.set_block(x, y, z, int(block))
        assert view.set_block(x, y, z, int(block))
    _probe(view, world, rng)
    _assert_same_grids(view, _rebuilt(view, world))
    _assert_heights_bound(view)


def test_removing_the_top_block_lowers_heights() -> None:
    view = WorldView(radius=RADIUS)
    view.set_block(5, 70, 5, BlockId.STONE)
    view.set_block(5, 60, 5, BlockId.STONE)
    assert view.heights4[1, 1] == 71 and view.cover[5, 5] == 71
    view.set_block(5, 70, 5, BlockId.AIR)
    assert view.heights4[1, 1] == 61 and view.heights16[0, 0] == 61 and view.cover[5, 5] == 61
    view.set_block(5, 60, 5, BlockId.WATER)  # water lets the sky through
    assert view.cover[5, 5] == 0 and view.heights4[1, 1] == 61
    assert view.water_bricks[15, 1, 1] == 1 and view.water_sections[3, 0, 0] == 1


def test_set_section_and_clear(world: World) -> None:
    view = WorldView(radius=RADIUS)
    key = (0, 4, 0)
    arr = world.section(key)
    assert view.set_section(key, arr)
    assert np.array_equal(view.column(0, 0)[64:80], arr)
    assert view.sections[4, 0, 0] == np.count_nonzero(arr)
    view.clear_section(key)
    assert key not in view.loaded
    assert not view.column(0, 0).any() and view.sections.sum() == 0
    # a section outside the window is refused, not wrapped onto another slot
    far = (view.origin_sx + view.size // SECTION_SIZE, 4, 0)
    assert not view.set_section(far, arr)
    assert not view.set_block(far[0] * SECTION_SIZE, 64, 0, BlockId.STONE)
    with pytest.raises(ValueError):
        view.set_section(key, np.zeros((8, 8, 8), dtype=np.uint8))


def test_recenter_forgets_what_leaves_and_keeps_the_rest(world: World) -> None:
    view = WorldView.from_world(world, (8.0, 8.0), radius=RADIUS)
    before = set(view.loaded)
    step = 3 * SECTION_SIZE  # move 3 section columns along +x
    forgotten = view.recenter(8.0 + step, 8.0)
    assert forgotten and set(forgotten) <= before
    assert all(not view.column_in_window(sx, sz) for sx, _, sz in forgotten)
    assert set(view.loaded) == before - set(forgotten)
    _probe(view, world, random.Random(3))  # what stayed did not move
    # the new columns read as air until their sections arrive: no stale slots
    new_cols = {(sx, sz) for sx, sz in view.window_columns()} - {(k[0], k[2]) for k in before}
    assert new_cols
    for sx, sz in new_cols:
        assert not view.column(sx, sz).any()
    for key in view.missing_sections():
        view.set_section(key, world.section(key))
    _probe(view, world, random.Random(4))
    _assert_same_grids(view, _rebuilt(view, world))


def test_wrap_around_leaves_no_stale_blocks(world: World) -> None:
    view = WorldView.from_world(world, (8.0, 8.0), radius=RADIUS)
    # Jump exactly one window width: every slot now belongs to another column.
    view.recenter(8.0 + view.size, 8.0 + view.size)
    assert not view.loaded
    assert not view.blocks.any() and not view.bricks.any() and not view.sections.any()
    assert not view.heights4.any() and not view.heights16.any() and not view.cover.any()
    # load a single section: everything else still reads as air
    key = (view.origin_sx + 2, 4, view.origin_sz + 2)
    view.set_section(key, world.section(key))
    x0, z0 = key[0] * SECTION_SIZE, key[2] * SECTION_SIZE
    assert view.get_block(x0 + 20, 64, z0) == BlockId.AIR
    assert np.count_nonzero(view.blocks) == np.count_nonzero(world.section(key))


def test_missing_sections_nearest_first() -> None:
    view = WorldView(radius=RADIUS, center=(100.0, -50.0))
    missing = view.missing_sections(radius=16)
    cols = list(dict.fromkeys((sx, sz) for sx, _, sz in missing))
    assert cols[0] == (100 >> 4, -50 >> 4)
    assert all(sum(1 for k in missing if (k[0], k[2]) == c) == SECTIONS_Y for c in cols)
    assert len(cols) == 9  # the centre column and its 8 neighbours
