"""The server goes away and comes back: the client reconnects with back-off.

While it is gone, the client keeps showing its last frame with a
"reconnecting..." line and retries on a growing interval; when the server is
back (same port, same world file) it joins again, the world re-syncs and
the player can move.
"""

from __future__ import annotations

import asyncio
import socket

import numpy as np

from client.config import ClientConfig
from client.display import HeadlessDisplay
from client.game import Game
from client.headless import GameRunner
from client.session import ConnState


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_reconnects_with_backoff_and_resumes(server_factory, tmp_path):
    port = free_port()
    db = tmp_path / "world.sqlite3"
    args = ("--generator", "flat", "--view-distance", "32", "--port", str(port))
    server = server_factory(*args, db=db)
    cfg = ClientConfig(
        server=server.url, name="re_alice", width=160, height=90, headless=True, max_fps=60
    )
    game = Game(cfg, HeadlessDisplay(160, 90))
    async with GameRunner(game) as run:
        await run.until_loaded()
        sections = len(game.replica)
        await asyncio.to_thread(server.stop)

        await run.until(lambda g: g.session.state is ConnState.RECONNECTING, timeout=10)
        frozen = game.last_frame.copy()
        rendered, presented = game.rendered, game.display.presented
        await run.until(lambda g: g.session.status.attempt >= 2, timeout=10)
        # Still drawing (the HUD), no longer rendering: the last frame stays up.
        assert game.display.presented > presented + 5
        assert game.rendered == rendered
        np.testing.assert_array_equal(game.last_frame, frozen)
        status = game.hud_state(game.clock()).status
        assert status.startswith("reconnecting...") and "attempt" in status
        assert game.session.status.code == "refused"  # what the retries are hitting now
        retry_in = game.session.status.retry_at - game.clock()
        assert 0.0 < retry_in <= 2.0  # back-off: 0.5, 1, 2, ... s

        server_factory(*args, db=db)  # back, same port, same world
        await run.until(lambda g: g.generation == 2 and g.playing, timeout=15)
        await run.until_loaded()
        assert len(game.replica) == sections
        assert game.session.stats.connects == 2 and game.session.stats.disconnects == 1
        # The player moves again, and the server agrees.
        x0 = game.predictor.body.x
        game.controls.set_look(1.5707963, 0.0)
        game.controls.forward = 1.0
        await run.sleep(0.5)
        game.controls.forward = 0.0
        await run.until(lambda g: g.server_state is not None and g.server_state[2][0] > x0 + 1)
    assert run.task.result() == 0
