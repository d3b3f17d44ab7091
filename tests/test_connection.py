"""`client.connection.SimConnection` against a real server process."""

from __future__ import annotations

import asyncio
import socket

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.connection import (
    ConnectError,
    ConnectionClosed,
    InputSequencer,
    LazyUpdate,
    SimConnection,
    SkippedFieldError,
    decode_server_frame,
)
from server.auth import mint_token
from shiftcraft import protocol as P


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def other_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def next_update(conn: SimConnection, timeout: float = 5.0) -> P.Update:
    async with asyncio.timeout(timeout):
        while True:
            msg = await conn.recv()
            if isinstance(msg, P.Update):
                return msg


async def test_handshake_ping_inputs_and_clean_close(module_server):
    before = other_tasks()
    conn = await SimConnection.connect(module_server.url, "conn_alice", role="player")
    assert conn.welcome.name == "conn_alice"
    assert conn.welcome.version == P.PROTOCOL_VERSION
    assert conn.welcome.tick_rate == 20
    rtt = await conn.ping()
    assert 0.0 < rtt < 2.0

    first = await next_update(conn)
    seqs = InputSequencer()
    frames = [seqs.frame(0.05, forward=1.0, yaw=0.0) for _ in range(10)]
    await conn.send_inputs(frames)
    # The server applies the frames and acknowledges the last one; walking
    # along yaw 0 moves the player towards +z.
    async with asyncio.timeout(5.0):
        while (update := await next_update(conn)).ack < frames[-1][0]:
            pass
    seqs.ack(update.ack)
    assert not seqs.pending
    assert update.tick > first.tick
    assert update.pos[2] > first.pos[2] + 1.0

    t = conn.traffic
    assert t.messages_in >= 3 and t.bytes_in > 0
    assert t.messages_out == 3  # hello, ping, input
    assert t.bytes_out > 0
    await conn.close()
    assert conn.closed
    await conn.close()  # idempotent
    with pytest.raises(ConnectionClosed):
        await conn.send_inputs([seqs.frame(0.05)])
    assert other_tasks() <= before  # the reader task is gone


async def test_async_iteration_and_callback_delivery(module_server):
    conn = await SimConnection.connect(module_server.url, "conn_iter")
    ticks = []
    async for msg in conn:
        if isinstance(msg, P.Update):
            ticks.append(msg.tick)
        if len(ticks) == 3:
            break
    assert ticks == sorted(ticks)
    await conn.close()

    got: list[P.Message] = []
    cb = await SimConnection.connect(module_server.url, "conn_cb", on_message=got.append, lazy=True)
    await asyncio.sleep(0.5)
    assert any(isinstance(m, LazyUpdate) for m in got)
    assert await cb.ping() > 0  # pongs are handled by the reader, not the callback
    with pytest.raises(RuntimeError):
        await cb.recv()
    await cb.close()


async def test_refused_port_is_a_clear_error():
    port = free_port()
    with pytest.raises(ConnectError) as err:
        await SimConnection.connect(f"ws://127.0.0.1:{port}", "nobody", timeout=5.0)
    assert err.value.code == "refused"
    assert str(port) in str(err.value)


async def test_bad_url_is_a_clear_error():
    with pytest.raises(ConnectError) as err:
        await SimConnection.connect("http://127.0.0.1:1/", "nobody")
    assert err.value.code == "bad_url"


async def test_silent_server_times_out():
    # A TCP server that accepts and never answers the websocket handshake.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    before = other_tasks()
    try:
        with pytest.raises(ConnectError) as err:
            await SimConnection.connect(f"ws://127.0.0.1:{port}", "nobody", timeout=0.5)
        assert err.value.code == "timeout"
    finally:
        server.close()
    assert other_tasks() <= before


async def test_wrong_token_in_secret_mode(server_factory):
    server = server_factory("--generator", "flat", "--auth", "secret:s3cret")
    ok = await SimConnection.connect(
        server.url, "tok_alice", token=mint_token("s3cret", "tok_alice")
    )
    assert ok.welcome.name == "tok_alice"
    await ok.close()
    for token in ("", "deadbeef", mint_token("s3cret", "tok_alice")):
        with pytest.raises(ConnectError) as err:
            await SimConnection.connect(server.url, "tok_bob", token=token)
        assert err.value.code == "bad_token"
        assert err.value.message  # the server's own explanation


async def test_version_mismatch(module_server):
    with pytest.raises(ConnectError) as err:
        await SimConnection.connect(module_server.url, "conn_future", version=99)
    assert err.value.code == "bad_version"
    assert "99" in err.value.message


async def test_server_side_close_is_reported(module_server):
    conn = await SimConnection.connect(module_server.url, "conn_rude")
    other = await SimConnection.connect(module_server.url, "conn_polite")
    await conn.send_raw(b"\x93\x01")  # truncated msgpack: fatal for this connection only
    async with asyncio.timeout(5.0):
        closed = await conn.wait_closed()
    assert closed.error is not None and closed.error.code == "malformed"
    assert conn.last_error is not None and conn.last_error.fatal
    with pytest.raises(ConnectionClosed):
        await conn.send_edit("place", 0, 20, 0, 1)
    # Messages received before the close are still readable, then the iteration ends.
    async with asyncio.timeout(5.0):
        async for _ in conn:
            pass
    assert await other.ping() > 0
    await other.close()
    await conn.close()


async def test_cancelling_a_connect_leaves_nothing_behind():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    before = other_tasks()
    try:
        task = asyncio.create_task(SimConnection.connect(f"ws://127.0.0.1:{port}", "x", timeout=30))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        server.close()
    assert other_tasks() <= before


def test_lazy_decoding_validates_what_is_read():
    update = P.Update(
        tick=7,
        ack=3,
        pos=(1.0, 2.0, 3.0),
        entities=[[i, 1.0, 2.0, 3.0, 0.0, 0.0] for i in range(5)],
        edits=[[1, True, 1, 2, 3, 9, ""]],
    )
    data = P.encode(update)
    lazy = decode_server_frame(data, lazy=True)
    eager = decode_server_frame(data)
    assert isinstance(lazy, P.Update) and isinstance(lazy, LazyUpdate)
    assert (lazy.tick, lazy.ack, lazy.pos) == (eager.tick, eager.ack, eager.pos)
    assert lazy.entities == eager.entities and lazy.edits == eager.edits
    assert lazy.section_count == 0 and lazy.sections == []

    wire = update.to_wire()
    wire["entities"] = [[1, "not a float"]]
    broken = decode_server_frame(msgpack.packb(wire), lazy=True)
    assert broken.tick == 7  # the rest is usable
    with pytest.raises(P.ProtocolError):
        _ = broken.entities
    wire["tick"] = "soon"
    with pytest.raises(P.ProtocolError):  # scalars are checked on receipt
        decode_server_frame(msgpack.packb(wire), lazy=True)
    # Other message types go through the strict path unchanged.
    assert decode_server_frame(P.encode(P.Pong(id=4)), lazy=True) == P.Pong(id=4)


def test_input_sequencer_numbers_clamps_and_acks():
    seqs = InputSequencer(start=5)
    a = seqs.frame(1.0, forward=3.0, strafe=-2.0, yaw=1.0, pitch=9.0, jump=True, sprint=True)
    b = seqs.frame(0.05)
    assert a[0] == 5 and b[0] == 6
    assert a[1] == P.MAX_DT and a[2] == 1.0 and a[3] == -1.0
    assert a[5] == pytest.approx(1.5707963)
    assert a[6] == P.FLAG_JUMP | P.FLAG_SPRINT
    P.Input(frames=[a, b])  # valid frames
    P.from_wire(P.Input(frames=[a, b]).to_wire())
    seqs.ack(5)
    assert [f[0] for f in seqs.pending] == [6]


def test_skipped_fields_are_never_built_and_say_so():
    update = P.Update(tick=3, entities=[[1, 1.0, 2.0, 3.0, 0.0, 0.0]], blocks=[[1, 2, 3, 4]])
    skip = frozenset({"spawn", "entities", "gone"})
    msg = decode_server_frame(P.encode(update), lazy=True, skip=skip)
    assert msg.blocks == [(1, 2, 3, 4)] and msg.spawn == []
    with pytest.raises(SkippedFieldError):
        _ = msg.entities
    # Skipped values must still be well-formed msgpack.
    data = P.encode(update)
    with pytest.raises(P.ProtocolError):
        decode_server_frame(data[:-3], lazy=True, skip=skip)
    with pytest.raises(P.ProtocolError):
        decode_server_frame(data + b"\x00", lazy=True, skip=skip)


# Values around every bound the protocol checks, plus wrong types.
EDGES = [-(2**31) - 1, -(2**31), -1, 0, 1, 255, 256, 2**31 - 1, 2**31, 2**32 - 1, 2**32]
SCALAR = st.one_of(
    st.sampled_from(EDGES),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e8, -1e8, 1.00000001e8, 1e4, -1e4, 10000.5]),
    st.booleans(),
    st.none(),
    st.text(max_size=2),
)
ITEM = st.one_of(st.lists(SCALAR, min_size=3, max_size=7), SCALAR)


@given(blocks=st.lists(ITEM, max_size=4), entities=st.lists(ITEM, max_size=4))
def test_fast_paths_agree_with_the_protocol(blocks, entities):
    for name, raw in (("blocks", blocks), ("entities", entities)):
        wire = P.Update(tick=1).to_wire()
        wire[name] = raw
        data = msgpack.packb(wire, use_bin_type=True)
        try:
            expected = getattr(P.decode(data, max_bytes=P.MAX_SERVER_FRAME_BYTES), name)
        except P.ProtocolError:
            expected = P.ProtocolError
        try:
            got = getattr(decode_server_frame(data, lazy=True), name)
        except P.ProtocolError:
            got = P.ProtocolError
        assert got == expected
