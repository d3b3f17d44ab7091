"""The SQLite store: round trips, group commit, seed binding, damaged files."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from world.blocks import BlockId
from world.codec import encode_section
from world.generator import FlatGenerator
from world.map import World
from world.store import SectionStore, StoreError


def test_modified_sections_survive_reopen(tmp_path):
    path = tmp_path / "w.sqlite3"
    with SectionStore(path) as store:
        world = World(FlatGenerator(), store)
        world.set_block(3, 20, -7, BlockId.BRICK)
        world.set_block(40, 5, 40, BlockId.AIR)
        store.commit(sections={k: encode_section(world.section(k)) for k in world.take_dirty()})
        assert store.section_count() == 2
    with SectionStore(path) as store:
        world = World(FlatGenerator(), store)
        assert world.get_block(3, 20, -7) == BlockId.BRICK
        assert world.get_block(40, 5, 40) == BlockId.AIR
        # Untouched sections come from the generator, not the store.
        assert world.get_block(100, 15, 100) == BlockId.GRASS


def test_commit_is_one_transaction(tmp_path):
    path = tmp_path / "w.sqlite3"
    store = SectionStore(path)
    good = encode_section(np.full((16, 16, 16), BlockId.STONE, np.uint8))
    with pytest.raises(sqlite3.Error):
        # The second row is not bytes-compatible with a NOT NULL blob: the whole batch rolls back.
        store.commit(sections={(0, 0, 0): good, (1, 0, 0): None})  # type: ignore[dict-item]
    assert store.section_count() == 0
    store.commit(sections={(0, 0, 0): good}, players={"ann": {"pos": [1.0, 2.0, 3.0]}})
    assert store.load_player("ann") == {"pos": [1.0, 2.0, 3.0]}
    store.close()


def test_store_refuses_another_seed(tmp_path):
    path = tmp_path / "w.sqlite3"
    with SectionStore(path) as store:
        store.bind_seed(1)
    with SectionStore(path) as store:
        store.bind_seed(1)
        with pytest.raises(StoreError, match="seed"):
            store.bind_seed(2)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable"):
        SectionStore(path)
    assert path.read_bytes().startswith(b"this is not sqlite")  # nothing overwritten
