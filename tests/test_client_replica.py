"""The game client's world replica against a real server.

A headless client (real renderer, real websockets, real server process)
makes a series of edits — some accepted, one the client refuses itself, one
the server rejects — while another player edits nearby. Afterwards the
client's replica must equal what an independent observer connection
received and what the server committed to SQLite, and the renderer's
view must show the same blocks, updated one block at a time (no section
re-pushed for an edit).
"""

from __future__ import annotations

import asyncio
import math

import numpy as np

from client.config import ClientConfig
from client.connection import SimConnection
from client.display import HeadlessDisplay
from client.game import Game
from client.headless import GameRunner
from client.replica import LazyReplica
from shiftcraft.protocol import Update
from world.blocks import BlockId
from world.store import SectionStore


def small_config(url: str, name: str, **kw) -> ClientConfig:
    return ClientConfig(
        server=url, name=name, width=160, height=90, headless=True, max_fps=60, **kw
    )


class Observer:
    """A second player that keeps a plain replica of what the server sends it."""

    def __init__(self, conn: SimConnection) -> None:
        self.conn = conn
        self.world = LazyReplica()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.conn:
            if isinstance(msg, Update):
                for sx, sy, sz in msg.unload:
                    self.world.unload((sx, sy, sz))
                for sx, sy, sz, data in msg.sections:
                    self.world.add_section((sx, sy, sz), data)
                for x, y, z, b in msg.blocks:
                    self.world.set_block(x, y, z, b)
                for _seq, _ok, x, y, z, b, _r in msg.edits:
                    self.world.set_block(x, y, z, b)

    async def close(self) -> None:
        await self.conn.close()
        await self.task


async def test_replica_equals_server_world_after_edits(server_factory):
    server = server_factory("--generator", "flat", "--view-distance", "32")
    game = Game(small_config(server.url, "rep_alice"), HeadlessDisplay(160, 90))
    async with GameRunner(game) as run:
        await run.until_loaded()
        observer = Observer(await SimConnection.connect(server.url, "rep_bob"))
        body = game.predictor.body
        fx, fy, fz = math.floor(body.x), math.floor(body.y), math.floor(body.z)
        ground = fy - 1
        src = game.source
        pushed_before = src.counters.sections_set

        # Every edit stays in the spawn's section column: the server sends
        # deltas to near holders (farther ones get the section again later,
        # coalesced, which is its choice, not an edit rebuilding our view).
        assert (fx & 15) <= 11 and (fz & 15) <= 11
        edits = [
            ("break", fx + 1, ground, fz + 2, 0),
            ("break", fx + 2, ground, fz + 2, 0),
            ("place", fx + 1, fy, fz + 3, int(BlockId.STONE)),
            ("place", fx + 3, fy, fz + 1, int(BlockId.GLASS)),
            ("place", fx + 1, fy + 1, fz + 3, int(BlockId.BRICK)),
            ("break", fx + 1, fy, fz + 3, 0),  # the stone placed above, again
        ]
        for action, x, y, z, block in edits:
            assert game.request_edit(action, x, y, z, block), (action, x, y, z)
            # Shown at once, before any round trip:
            expect = block if action == "place" else int(BlockId.AIR)
            assert game.replica.known_block(x, y, z) == expect
            await run.frames(2)
        # The client refuses what cannot succeed: into its own body, on air.
        assert not game.request_edit("place", fx, fy, fz, int(BlockId.STONE))
        assert not game.request_edit("break", fx, fy + 5, fz)
        # The server rejects a place out of reach; the prediction is undone.
        far = (fx + 12, fy, fz + 12)
        assert game.request_edit("place", *far, int(BlockId.STONE))
        assert game.replica.known_block(*far) == BlockId.STONE
        # Meanwhile another player edits next to us.
        other = (fx + 3, fy, fz + 3)
        await observer.conn.send_edit("place", *other, int(BlockId.WOOD))

        await run.until(lambda g: g.replica.pending_edits == 0, timeout=10)
        await run.until(lambda g: g.replica.known_block(*other) == BlockId.WOOD)
        await asyncio.sleep(0.3)  # let the observer's deltas land too

        r = game.replica
        assert r.stats.edits_rejected == 1 and r.stats.edits_confirmed == len(edits)
        assert r.known_block(*far) == BlockId.AIR  # the true block, from the rejection
        assert r.known_block(fx + 1, fy + 1, fz + 3) == BlockId.BRICK  # now floating
        assert r.known_block(fx + 1, fy, fz + 3) == BlockId.AIR

        # 1. Equal to what an independent connection received.
        common = [k for k in observer.world if k in r]
        assert len(common) >= 100
        for key in common:
            np.testing.assert_array_equal(r.array(key), observer.world.array(key), err_msg=key)

        # 2. Equal to what the server committed (acks leave only after the commit).
        touched = {(x >> 4, y >> 4, z >> 4) for _, x, y, z, _ in edits}
        touched.add((other[0] >> 4, other[1] >> 4, other[2] >> 4))
        store = SectionStore(server.db)
        try:
            from world.codec import decode_section

            for key in touched:
                data = store.load_section(key)
                assert data is not None, key
                np.testing.assert_array_equal(r.array(key), decode_section(data), err_msg=key)
        finally:
            store.close()

        # 3. The renderer's view shows the same blocks, and no edit re-pushed a section.
        view = src.view
        for _, x, y, z, _ in edits:
            assert view.get_block(x, y, z) == r.known_block(x, y, z)
        assert view.get_block(*far) == BlockId.AIR
        assert view.get_block(*other) == BlockId.WOOD
        assert src.counters.sections_set == pushed_before
        assert src.counters.blocks_set >= len(edits) + 2
        await observer.close()
    assert run.task.result() == 0
