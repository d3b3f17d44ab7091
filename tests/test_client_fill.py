"""Building a view a slice at a time and shrinking the replica (migration support)."""

from __future__ import annotations

import numpy as np

from client.replica import LazyReplica, WorldReplica
from client.sources import LocalRenderSource
from world.blocks import BlockId
from world.codec import encode_section


def _replica(n: int = 3) -> WorldReplica:
    """Sections around the origin: stone floors with a marker block each."""
    rep = WorldReplica()
    rng = np.random.default_rng(7)
    for sx in range(-n, n + 1):
        for sz in range(-n, n + 1):
            for sy in range(4):
                arr = np.zeros((16, 16, 16), dtype=np.uint8)
                arr[:3] = BlockId.STONE
                arr[5, rng.integers(16), rng.integers(16)] = BlockId.GLASS
                rep.sections.add_section((sx, sy, sz), encode_section(arr))
    return rep


def test_fill_in_slices_equals_fill_at_once() -> None:
    full = LocalRenderSource(_replica(), 64, 36, view_distance=32)
    full.recenter(8.0, 8.0)
    rep = _replica()
    sliced = LocalRenderSource(rep, 64, 36, view_distance=32, fill=False)
    steps = 0
    while not sliced.fill_step(8.0, 8.0, budget_s=0.0):  # one section per call
        steps += 1
        if steps == 10:
            # A change arriving mid-fill, in a section not pushed yet and one pushed.
            pushed = next(iter(sliced.view.loaded))
            rep.apply_delta(pushed[0] * 16 + 1, pushed[1] * 16 + 7, pushed[2] * 16 + 1, 9)
            rep.apply_delta(3 * 16 + 2, 3 * 16 + 7, 3 * 16 + 2, 9)
            full.replica.apply_delta(pushed[0] * 16 + 1, pushed[1] * 16 + 7, pushed[2] * 16 + 1, 9)
            full.replica.apply_delta(3 * 16 + 2, 3 * 16 + 7, 3 * 16 + 2, 9)
    assert steps > 20  # it really went in slices
    assert sliced.view.loaded == full.view.loaded
    assert np.array_equal(sliced.view.blocks, full.view.blocks)
    assert sliced.fill_step(8.0, 8.0, 0.0)  # done stays done


def test_compact_keeps_blocks_and_frees_arrays() -> None:
    rep = _replica(2)
    for key in list(rep.keys()):
        rep.array(key)  # decoded, as after local rendering
    rep.sections.set_block(5, 20, 5, BlockId.GLASS)  # a delta only the array knows
    before = {k: rep.array(k).copy() for k in rep}
    assert rep.sections.decoded == len(before)
    assert rep.compact(0.0, 40.0, 0.0, budget_s=10.0)
    # Only the 3x3x3 sections around the player stay decoded.
    assert 0 < rep.sections.decoded <= 27 < len(before)
    for key, arr in before.items():
        assert np.array_equal(rep.array(key), arr), key
    assert rep.get_block(5, 20, 5) == BlockId.GLASS


def test_compact_in_slices() -> None:
    lazy = LazyReplica()
    arr = np.zeros((16, 16, 16), dtype=np.uint8)
    for i in range(30):
        lazy.add_section((i, 0, 0), encode_section(arr))
        lazy.array((i, 0, 0))
    calls = 1
    while not lazy.compact(lambda k: False, budget_s=0.0):
        calls += 1
    assert calls > 10 and lazy.decoded == 0 and len(lazy) == 30


def test_slow_device_renders_half_the_time_while_a_stream_is_prepared() -> None:
    from types import SimpleNamespace

    from client.migration import MigrationController, MigrationState, Switch

    ctl = MigrationController(SimpleNamespace(remote=False))
    assert ctl.may_render_local(0.0, 80.0)  # steady: always
    ctl.state = MigrationState.PREPARING
    ctl.current = Switch("local", "edge", "test", 0.0)
    assert ctl.may_render_local(1.0, 10.0) and ctl.may_render_local(1.001, 10.0)  # fast: always
    assert ctl.may_render_local(2.0, 80.0)
    assert not ctl.may_render_local(2.05, 80.0)  # within one slow frame of the last
    assert ctl.may_render_local(2.09, 80.0)
    ctl.current = Switch("edge", "local", "test", 3.0)
    assert ctl.may_render_local(3.0, 80.0) and ctl.may_render_local(3.01, 80.0)  # -> local
