"""The sim protocol against a real server process: handshake, auth, bad input.

Every bad frame must get the right `error` and affect only the connection
that sent it: a bystander keeps receiving updates throughout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
from server_client import TestClient, raw_frame, type_key

from shiftcraft import protocol as P

REPO = Path(__file__).resolve().parent.parent


async def bystander_still_served(client: TestClient, ticks: int = 5) -> None:
    """``client`` keeps getting updates (ticks advance) and answers pings."""
    first = await client.until(lambda m: isinstance(m, P.Update))
    await client.until(lambda m: isinstance(m, P.Update) and m.tick >= first.tick + ticks)
    await client.send(P.Ping(id=4242))
    await client.until(lambda m: isinstance(m, P.Pong) and m.id == 4242)


async def test_handshake_welcome_then_updates(module_server):
    c = await TestClient.connect(module_server.url, "hs_alice", role="player")
    w = c.welcome
    assert w is not None
    assert (w.version, w.name, w.tick_rate, w.view_distance) == (
        P.PROTOCOL_VERSION,
        "hs_alice",
        20,
        32,
    )
    assert w.player_id > 0
    assert w.pos == (0.5, 64.0, 0.5)  # the flat world's spawn: on the grass at (0, 63, 0)
    u = await c.until(lambda m: isinstance(m, P.Update) and bool(m.sections))
    assert u.pos == w.pos and u.ack == -1
    later = await c.until(lambda m: isinstance(m, P.Update) and m.tick > u.tick)
    assert later.tick > u.tick
    await c.send(P.Ping(id=7, t=1.5))
    pong = await c.until(lambda m: isinstance(m, P.Pong))
    assert (pong.id, pong.t) == (7, 1.5) and pong.server_time > 0
    await c.close()


@pytest.mark.parametrize(
    ("first", "code", "close_code"),
    [
        (P.encode(P.Hello(version=99, role="bot", name="hs_v")), "bad_version", 1002),
        (P.encode(P.Ping(id=1)), "expected_hello", 1002),
        (raw_frame(P.Hello(version=1, role="admin", name="hs_r")), "bad_field", 1002),
        (raw_frame(P.Hello(version=1, role="bot", name="bad name!")), "bad_field", 1002),
        (b"\xc1\x00", "malformed", 1007),
    ],
    ids=["wrong-version", "not-hello", "bad-role", "bad-name", "garbage"],
)
async def test_bad_hello_is_refused_and_closed(module_server, first, code, close_code):
    from websockets.asyncio.client import connect

    async with connect(module_server.url, max_size=None) as ws:
        c = TestClient(ws, "hs_bad")
        await c.send_raw(first)
        err = await c.error()
        assert (err.code, err.fatal) == (code, True)
        rcvd_code, reason = await c.closed()
        assert rcvd_code == close_code
        assert reason.startswith(code)
    if code == "bad_version":
        assert "speaks 1" in err.message


async def test_wrong_version_message_names_both_versions(module_server):
    c = await TestClient.connect(module_server.url, "hs_ver", version=7, welcome=False)
    err = await c.error()
    assert err.code == "bad_version" and err.fatal
    assert "7" in err.message and f"speaks {P.PROTOCOL_VERSION}" in err.message
    code, _ = await c.closed()
    assert code == 1002


def mint(secret: str, name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "shiftcraft", "token", "--secret", secret, name],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


async def test_shared_secret_tokens(server_factory):
    server = server_factory("--generator", "flat", "--auth", "secret:s3cret")
    token = mint("s3cret", "sec_alice")
    assert len(token) == 64
    ok = await TestClient.connect(server.url, "sec_alice", token=token)
    assert ok.welcome is not None and ok.welcome.name == "sec_alice"

    for name, bad in [("sec_bob", token), ("sec_bob", ""), ("sec_bob", mint("other", "sec_bob"))]:
        c = await TestClient.connect(server.url, name, token=bad, welcome=False)
        err = await c.error()
        assert (err.code, err.fatal) == ("bad_token", True)
        code, reason = await c.closed()
        assert code == 1008 and reason.startswith("bad_token")
    await bystander_still_served(ok)


async def test_token_file(server_factory, tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# deployment tokens\nalpha-123\n\nbeta-456\n")
    server = server_factory("--generator", "flat", "--auth", f"file:{tokens}")
    a = await TestClient.connect(server.url, "tf_a", token="beta-456")
    assert a.welcome is not None
    c = await TestClient.connect(server.url, "tf_b", token="gamma", welcome=False)
    assert (await c.error()).code == "bad_token"
    assert (await c.closed())[0] == 1008


async def test_malformed_msgpack_closes_only_that_connection(module_server):
    bad = await TestClient.connect(module_server.url, "mal_bad")
    good = await TestClient.connect(module_server.url, "mal_good")
    await bad.send_raw(b"\x93\x01")  # an array of 3 with 1 element: truncated
    err = await bad.error()
    assert (err.code, err.fatal) == ("malformed", True)
    assert (await bad.closed())[0] == 1007
    await bystander_still_served(good)


async def test_text_frame_is_malformed(module_server):
    c = await TestClient.connect(module_server.url, "mal_text")
    await c.send_raw("hello as text")
    err = await c.error()
    assert (err.code, err.fatal) == ("malformed", True)
    assert (await c.closed())[0] == 1007


async def test_not_a_map_is_malformed(module_server):
    c = await TestClient.connect(module_server.url, "mal_list")
    await c.send_raw(msgpack.packb([1, 2, 3]))
    err = await c.error()
    assert (err.code, err.fatal) == ("malformed", True)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (msgpack.packb({type_key(): "teleport", "x": 1}), "unknown_type"),
        (msgpack.packb({type_key(): 5}), "unknown_type"),
        (raw_frame(P.Edit(seq=1, action="place", x=0, y=64, z=3, block=1), x="far"), "bad_field"),
        (
            raw_frame(P.Edit(seq=1, action="place", x=0, y=64, z=3, block=1), action="nuke"),
            "bad_field",
        ),
        (raw_frame(P.Edit(seq=1, action="place", x=0, y=64, z=3, block=1), x=2**40), "bad_field"),
        (raw_frame(P.Edit(seq=1, action="place", x=0, y=64, z=3, block=1), block=300), "bad_field"),
        (raw_frame(P.Edit(seq=1, action="place", x=0, y=64, z=3, block=1), extra=1), "bad_field"),
        (raw_frame(P.Input(frames=[]), frames=[[1, 5.0, 0, 0, 0, 0, 0]]), "bad_field"),
        (raw_frame(P.Input(frames=[]), frames=[[1, 0.05, float("nan"), 0, 0, 0, 0]]), "bad_field"),
        (raw_frame(P.Input(frames=[]), frames=[[1, 0.05, 0]]), "bad_field"),
        (raw_frame(P.Input(frames=[]), frames="fast"), "bad_field"),
        (raw_frame(P.Ping(id=1), id=-1), "bad_field"),
        (P.encode(P.View(centers=[(0.0, 64.0, 0.0)])), "not_allowed"),  # bots have no view
        (P.encode(P.Hello(version=1, role="bot", name="again")), "unexpected"),
        (P.encode(P.Pong(id=1)), "unexpected"),
    ],
    ids=[
        "unknown-type",
        "type-not-str",
        "coord-str",
        "bad-action",
        "coord-out-of-int32",
        "block-out-of-u8",
        "unknown-field",
        "dt-out-of-range",
        "nan",
        "short-frame",
        "frames-not-list",
        "negative-id",
        "view-from-bot",
        "second-hello",
        "server-message",
    ],
)
async def test_bad_message_gets_error_and_connection_lives(module_server, frame, code):
    c = await TestClient.connect(module_server.url, "bad_msg")
    await c.send_raw(frame)
    err = await c.error()
    assert (err.code, err.fatal) == (code, False), err
    await bystander_still_served(c, ticks=2)  # the same connection goes on
    await c.close()


async def test_out_of_world_edit_answered_with_true_block(module_server):
    c = await TestClient.connect(module_server.url, "oow")
    seq = await c.edit("place", 0, 1000, 3, block=1)  # int32, but far above the world
    assert await c.result(seq) == (seq, False, 0, 1000, 3, 0, "out_of_world")
    seq = await c.edit("break", 2**30, 10, 0)
    assert await c.result(seq) == (seq, False, 2**30, 10, 0, 0, "out_of_world")


async def test_oversized_frames_close_only_that_connection(module_server):
    good = await TestClient.connect(module_server.url, "big_good")
    # Just over the protocol limit: the server answers too_large, then closes 1009.
    big = await TestClient.connect(module_server.url, "big_a")
    await big.send_raw(
        msgpack.packb({type_key(): "ping", "id": 1, "pad": b"x" * P.MAX_CLIENT_FRAME_BYTES})
    )
    err = await big.error()
    assert (err.code, err.fatal) == ("too_large", True)
    assert (await big.closed())[0] == 1009
    # Far over it: websockets refuses the frame itself (1009, no error message).
    huge = await TestClient.connect(module_server.url, "big_b")
    await huge.send_raw(b"\x00" * (8 * P.MAX_CLIENT_FRAME_BYTES))
    assert (await huge.closed())[0] == 1009
    await bystander_still_served(good)


async def test_flood_is_rate_limited_then_cut_off(module_server):
    good = await TestClient.connect(module_server.url, "flood_good")
    c = await TestClient.connect(module_server.url, "flood")
    for i in range(1000):
        await c.send(P.Ping(id=i))
    code, reason = await c.closed(timeout=20)
    assert code == 1008 and reason.startswith("rate_limited")
    pongs = [m for m in c.others if isinstance(m, P.Pong)]
    assert 150 <= len(pongs) < 1000  # the burst is served, the flood is not
    assert [e.fatal for e in c.errors if e.code == "rate_limited"][:1] == [False]
    assert c.errors[-1].code == "rate_limited" and c.errors[-1].fatal
    await bystander_still_served(good)
    stats = module_server.stats()
    assert stats["messages_rejected"]["rate_limited"] >= 200
