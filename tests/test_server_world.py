"""Edits, interest and entities against a real server process (flat world).

The flat world: bedrock at y=0, stone, dirt, grass at y=63; everyone spawns
at (0.5, 64, 0.5) unless they have moved before.
"""

from __future__ import annotations

import math

import pytest
from server_client import TestClient, frame, walk

from shiftcraft import protocol as P
from world.blocks import BlockId


async def holds(c: TestClient, x: int, y: int, z: int) -> None:
    """Wait until ``c`` has the section of (x, y, z)."""
    if c.block(x, y, z) is None:
        await c.until(lambda m: c.block(x, y, z) is not None)


async def test_edit_by_one_client_is_seen_by_another(module_server):
    a = await TestClient.connect(module_server.url, "ed_a")
    b = await TestClient.connect(module_server.url, "ed_b")
    await holds(a, 3, 64, 1)
    await holds(b, 3, 64, 1)
    assert b.block(3, 64, 1) == BlockId.AIR
    seq = await a.edit("place", 3, 64, 1, BlockId.BRICK)
    assert await a.result(seq) == (seq, True, 3, 64, 1, BlockId.BRICK, "")
    await b.until(lambda m: b.block(3, 64, 1) == BlockId.BRICK)
    # ... as a block delta: b holds that section and is near it.
    assert any(list(d) == [3, 64, 1, BlockId.BRICK] for u in b.updates for d in u.blocks)
    seq = await b.edit("break", 3, 64, 1)
    assert await b.result(seq) == (seq, True, 3, 64, 1, BlockId.AIR, "")
    await a.until(lambda m: a.block(3, 64, 1) == BlockId.AIR)
    # A client that joins later gets the edited section with the edit in it.
    seq = await a.edit("place", -2, 64, -3, BlockId.GLASS)
    assert (await a.result(seq))[1]
    c = await TestClient.connect(module_server.url, "ed_c")
    await holds(c, -2, 64, -3)
    assert c.block(-2, 64, -3) == BlockId.GLASS


@pytest.mark.parametrize(
    ("action", "xyz", "block", "reason", "true_block"),
    [
        ("place", (20, 64, 0), BlockId.BRICK, "too_far", BlockId.AIR),
        ("break", (0, 0, 0), 0, "too_far", BlockId.BEDROCK),
        ("place", (0, 64, 0), BlockId.BRICK, "into_player", BlockId.AIR),  # own feet
        ("place", (0, 65, 0), BlockId.STONE, "into_player", BlockId.AIR),  # own head
        ("place", (2, 64, 0), 200, "unknown_block", BlockId.AIR),
        ("place", (2, 64, 0), BlockId.AIR, "not_placeable", BlockId.AIR),
        ("place", (2, 64, 0), BlockId.BEDROCK, "not_placeable", BlockId.AIR),
        ("place", (2, 63, 0), BlockId.BRICK, "occupied", BlockId.GRASS),
        ("break", (2, 65, 0), 0, "not_breakable", BlockId.AIR),
        ("ignite", (2, 63, 0), 0, "not_tnt", BlockId.GRASS),
    ],
)
async def test_rejected_edit_is_answered_with_the_true_block(
    module_server, action, xyz, block, reason, true_block
):
    c = await TestClient.connect(module_server.url, f"rej_{reason}")
    seq = await c.edit(action, *xyz, block=block)
    assert await c.result(seq) == (seq, False, *xyz, true_block, reason)
    await holds(c, *xyz)
    assert c.block(*xyz) == true_block  # what the client shows is the truth


async def test_edit_into_another_player_is_refused(module_server):
    a = await TestClient.connect(module_server.url, "inp_a")
    b = await TestClient.connect(module_server.url, "inp_b")
    await walk(b, 0.5, forward=1.0)  # b steps ~2 blocks towards +z
    await a.pump(0.2)
    bx, by, bz = b.pos
    x, y, z = math.floor(bx), math.floor(by), math.floor(bz)
    assert (x, z) != (0, 0)
    seq = await a.edit("place", x, y, z, BlockId.STONE)
    assert await a.result(seq) == (seq, False, x, y, z, BlockId.AIR, "into_player")


async def test_edits_are_rate_limited(module_server):
    c = await TestClient.connect(module_server.url, "rate_ed")
    seqs = [await c.edit("place", 2, 64 + i % 3, -2 + i // 3, BlockId.PLANKS) for i in range(15)]
    seqs += [await c.edit("break", 2, 64 + i % 3, -2 + i // 3) for i in range(15)]
    results = [await c.result(s) for s in seqs]
    reasons = {r[6] for r in results if not r[1]}
    assert "rate_limited" in reasons
    assert sum(r[1] for r in results) >= 20  # the burst goes through


async def test_tnt_ignites_and_explodes(sim_server):
    c = await TestClient.connect(sim_server.url, "tnt")  # a world of its own: it leaves a crater
    await walk(c, 0.3, forward=-1.0)  # step back from the charge
    await holds(c, 3, 64, 3)
    seq = await c.edit("place", 3, 64, 3, BlockId.TNT)
    assert (await c.result(seq))[1]
    seq = await c.edit("ignite", 3, 64, 3)
    assert await c.result(seq) == (seq, True, 3, 64, 3, BlockId.TNT, "")
    # The fuse burns 2 s, then the blast removes the TNT and a crater of grass.
    sent_before = c.section_order.count((0, 3, 0))
    await c.until(lambda m: c.block(3, 64, 3) == BlockId.AIR, timeout=15)
    await c.until(lambda m: c.block(3, 63, 3) == BlockId.AIR, timeout=5)
    # So many blocks changed in the ground's section that it came again whole.
    assert c.section_order.count((0, 3, 0)) == sent_before + 1


async def test_far_holders_get_the_section_again_instead_of_deltas(module_server):
    editor = await TestClient.connect(module_server.url, "far_editor")
    node = await TestClient.connect(module_server.url, "far_node", role="render-node")
    # Centre 3 columns east, view 4 columns: it holds column (0, 0), but far (> 2).
    await node.send(P.View(centers=[(56.0, 64.0, 8.0)], distance=64))
    await holds(node, 4, 64, -3)
    await holds(editor, 4, 64, -3)
    count = node.section_order.count((0, 4, -1))
    seq = await editor.edit("place", 4, 64, -3, BlockId.BRICK)
    assert (await editor.result(seq))[1]
    await node.until(lambda m: node.block(4, 64, -3) == BlockId.BRICK, timeout=5)
    assert node.section_order.count((0, 4, -1)) == count + 1  # the whole section again
    assert not any(u.blocks for u in node.updates)  # and no delta


async def test_speed_check_drops_frames_but_acks_them(module_server):
    c = await TestClient.connect(module_server.url, "speedy")
    start = c.welcome.pos
    # 32 frames claiming 8 s of sprinting, sent at once.
    await c.move([frame(i, P.MAX_DT, 1.0, flags=P.FLAG_SPRINT) for i in range(1, 33)])
    u = await c.until(lambda m: isinstance(m, P.Update) and m.ack == 32)
    moved = math.dist(start, u.pos)
    assert moved < 8.0, moved  # ~0.5 s of allowance at 5.6 blocks/s, not 8 s
    stats = module_server.stats()
    assert stats["input_frames_dropped_total"] >= 25


async def test_inputs_move_the_player_and_acks_reconcile(module_server):
    c = await TestClient.connect(module_server.url, "walker")
    seq = await walk(c, 1.0, forward=1.0, yaw=math.pi)
    u = await c.until(lambda m: isinstance(m, P.Update) and m.ack == seq - 1)
    x, y, z = u.pos
    assert z < -1.5 and abs(x - 0.5) < 1e-6 and y == 64.0  # yaw pi walks towards -z
    assert u.on_ground


async def test_players_see_each_other(module_server):
    a = await TestClient.connect(module_server.url, "ent_a")
    b = await TestClient.connect(module_server.url, "ent_b")
    bid = b.welcome.player_id
    await a.until(lambda m: bid in a.entities)
    assert a.entities[bid][0] == "ent_b"
    await walk(b, 0.5, forward=1.0)
    await a.until(lambda m: a.entities[bid][3] > 1.0)  # b's z as a sees it
    await b.close()
    await a.until(lambda m: isinstance(m, P.Update) and bid in m.gone)
    assert bid not in a.entities


async def test_render_node_sets_its_view(module_server):
    node = await TestClient.connect(module_server.url, "node1", role="render-node")
    await node.send(P.View(centers=[(0.0, 64.0, 0.0), (500.0, 64.0, 0.0)], distance=16))
    await node.until(
        lambda m: node.block(500, 63, 0) is not None and node.block(0, 63, 0) is not None
    )
    assert node.block(500, 63, 0) == BlockId.GRASS
    assert all(abs(sx) <= 2 or abs(sx - 31) <= 2 for sx, _, _ in node.sections)
    # Input from a render node is refused (it has no body), the connection stays.
    await node.move([frame(1)])
    assert (await node.error()).code == "not_allowed"
    # Moving the view unloads what is no longer in it.
    await node.send(P.View(centers=[(0.0, 64.0, 0.0)], distance=16))
    await node.until(lambda m: isinstance(m, P.Update) and bool(m.unload))
    await node.pump(0.2)
    assert node.block(500, 63, 0) is None


async def test_sections_arrive_nearest_first_and_follow_the_player(server_factory):
    server = server_factory("--generator", "flat", "--view-distance", "16")
    c = await TestClient.connect(server.url, "explorer")
    await c.pump(1.0)
    # View 16 blocks = 1 section column around the player's, all 8 heights.
    assert len(c.sections) == 5 * 8
    order = c.section_order[: len(c.sections)]
    dist = [dx * dx + dz * dz + (sy - 4) ** 2 for dx, sy, dz in order]
    assert dist == sorted(dist)  # nearest first
    assert order[0] == (0, 4, 0)
    # Fly towards +x for ~5.5 s (~60 blocks): new columns come, far ones go
    # once they are more than 1 + 1.5 (hysteresis) columns away.
    await walk(c, 5.5, forward=1.0, yaw=math.pi / 2, flags=P.FLAG_FLY)
    await c.pump(0.5)
    x = c.pos[0]
    assert x > 48
    cx = math.floor(x) >> 4
    assert (cx, 4, 0) in c.sections and (cx + 1, 4, 0) in c.sections
    assert (0, 4, 0) in c.unloaded and (0, 4, 0) not in c.sections
    # Hysteresis: a column goes only when the centre is more than radius + 1.5
    # columns past it (the flight is monotonic, so relative to the final one too).
    assert all(sx <= cx - 3 for sx, _, _ in c.unloaded)
