"""Durability: group commit before acks, kill -9, clean SIGTERM, returning players."""

from __future__ import annotations

import asyncio
import math
import signal
from itertools import cycle

import pytest
from conftest import start_server
from server_client import TestClient, walk
from websockets.exceptions import ConnectionClosed

from shiftcraft import protocol as P
from world.blocks import BlockId

# Within reach of the spawn eye (0.5, 65.62, 0.5) and clear of the player's box.
BUILD_SPOTS = [(x, y, z) for y in (64, 65, 66) for x in (2, 3, 4) for z in range(-3, 4)]
BLOCKS = [BlockId.BRICK, BlockId.PLANKS, BlockId.GLASS, BlockId.STONE, BlockId.SAND]


async def test_kill_9_loses_no_acknowledged_edit(server_factory, tmp_path):
    db = tmp_path / "world.sqlite3"
    server = server_factory("--generator", "flat", db=db)
    c = await TestClient.connect(server.url, "builder")
    wanted: dict[int, tuple[tuple[int, int, int], int]] = {}
    spots = iter(BUILD_SPOTS)
    kinds = cycle(b for b in BLOCKS if b != BlockId.SAND)  # sand would fall: keep it simple
    acked: dict[tuple[int, int, int], int] = {}
    # Edit at ~10/s (the per-player limit) and kill the server while edits are
    # in flight, once a good number has been acknowledged.
    while len(acked) < 25:
        xyz, block = next(spots), next(kinds)
        seq = await c.edit("place", *xyz, block=block)
        wanted[seq] = (xyz, block)
        await c.pump(0.1)
        for s, (xyz_, block_) in wanted.items():
            r = c.edit_results.get(s)
            if r is not None and r[1]:
                acked[xyz_] = block_
    for _ in range(3):  # in flight when the process dies
        xyz, block = next(spots), next(kinds)
        wanted[await c.edit("place", *xyz, block=block)] = (xyz, block)
    server.kill()
    with pytest.raises((ConnectionClosed, TimeoutError)):
        await c.pump(1.0)
        await c.recv(1.0)
    for s, r in c.edit_results.items():  # results that arrived in the last moments
        if r[1]:
            acked[wanted[s][0]] = wanted[s][1]
    assert all(r[1] for r in c.edit_results.values()), "no edit should have been refused"

    again = start_server(db, "--generator", "flat", log=tmp_path / "again.log")
    try:
        checker = await TestClient.connect(again.url, "checker")
        for xyz in acked:
            if checker.block(*xyz) is None:
                await checker.until(lambda m, xyz=xyz: checker.block(*xyz) is not None)
        lost = {xyz: b for xyz, b in acked.items() if checker.block(*xyz) != b}
        assert not lost, f"acknowledged edits lost by kill -9: {lost}"
    finally:
        again.stop()


async def test_sigterm_is_clean_and_players_resume(server_factory, tmp_path):
    db = tmp_path / "world.sqlite3"
    server = server_factory("--generator", "flat", db=db)
    c = await TestClient.connect(server.url, "traveller")
    seq = await walk(c, 1.0, forward=1.0, yaw=math.pi)  # towards -z
    u = await c.until(lambda m: isinstance(m, P.Update) and m.ack == seq - 1)
    pos = u.pos
    assert pos[2] < -1.5
    s = await c.edit("place", 2, 64, round(pos[2]), block=BlockId.BRICK)
    assert (await c.result(s))[1]

    # Stop from a thread, so this loop lets the client answer the closing handshake.
    stopping = asyncio.create_task(asyncio.to_thread(server.stop, signal.SIGTERM))
    code, _ = await c.closed()
    assert await stopping == 0
    assert code == 1001  # going away
    assert "final commit" in server.log_text()

    again = start_server(db, "--generator", "flat", log=tmp_path / "again.log")
    try:
        back = await TestClient.connect(again.url, "traveller")
        assert back.welcome.pos == pytest.approx(pos)
        await back.until(lambda m: back.block(2, 64, round(pos[2])) is not None)
        assert back.block(2, 64, round(pos[2])) == BlockId.BRICK
        # Someone new still starts at the spawn.
        fresh = await TestClient.connect(again.url, "newcomer")
        assert fresh.welcome.pos == (0.5, 64.0, 0.5)
        stopping = asyncio.create_task(asyncio.to_thread(again.stop, signal.SIGINT))
        await back.closed()
        assert await stopping == 0
    finally:
        again.stop()


async def test_reconnecting_player_resumes_where_it_left(sim_server):
    c = await TestClient.connect(sim_server.url, "returner")
    seq = await walk(c, 0.6, forward=1.0, yaw=math.pi / 2)  # towards +x
    u = await c.until(lambda m: isinstance(m, P.Update) and m.ack == seq - 1)
    await c.close()
    await asyncio.sleep(0.2)
    back = await TestClient.connect(sim_server.url, "returner")
    assert back.welcome.pos == pytest.approx(u.pos)


async def test_same_name_again_replaces_the_old_connection(sim_server):
    old = await TestClient.connect(sim_server.url, "twin")
    seq = await walk(old, 0.4, forward=1.0)
    u = await old.until(lambda m: isinstance(m, P.Update) and m.ack == seq - 1)
    new = await TestClient.connect(sim_server.url, "twin")
    assert new.welcome.pos == pytest.approx(u.pos)  # continues from the live state
    err = await old.error()
    assert (err.code, err.fatal) == ("replaced", True)
    assert (await old.closed())[0] == 1000
    await new.until(lambda m: isinstance(m, P.Update))


async def test_store_of_another_seed_is_refused(server_factory, tmp_path):
    db = tmp_path / "world.sqlite3"
    server_factory("--generator", "flat", "--seed", "5", db=db).stop()
    with pytest.raises(RuntimeError, match="seed 5"):
        start_server(db, "--generator", "flat", "--seed", "6", log=tmp_path / "x.log")
