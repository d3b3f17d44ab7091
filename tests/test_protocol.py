"""Message definitions: round trips and validation of hostile frames."""

from __future__ import annotations

import msgpack
import pytest

from shiftcraft import protocol as p


def test_round_trip_every_client_message():
    msgs = [
        p.Hello(version=p.PROTOCOL_VERSION, role="player", name="ann", token="t"),
        p.Input(frames=[(1, 0.05, 1.0, -0.5, 0.3, -0.2, p.FLAG_JUMP)]),
        p.Edit(seq=4, action="place", x=1, y=2, z=-3, block=9),
        p.View(centers=[(1.0, 2.0, 3.0)], distance=64),
        p.Ping(id=7, t=12.5),
    ]
    for msg in msgs:
        assert p.decode(p.encode(msg)) == msg


def test_update_leaves_out_empty_lists():
    small = p.encode(p.Update(tick=5))
    assert b"sections" not in small
    full = p.Update(tick=5, sections=[(0, 1, 2, b"\x00\x01")], gone=[3])
    assert p.decode(p.encode(full), p.MAX_SERVER_FRAME_BYTES) == full


@pytest.mark.parametrize(
    "frame,code",
    [
        (b"\xc1", "malformed"),
        (b"", "malformed"),
        (msgpack.packb([1, 2, 3]), "malformed"),
        (msgpack.packb({"type": "nope"}), "unknown_type"),
        (msgpack.packb({"type": "edit", "seq": 1, "action": "place", "x": 0, "y": 0}), "bad_field"),
        (msgpack.packb({"type": "ping", "id": "seven"}), "bad_field"),
        (msgpack.packb({"type": "ping", "id": -1}), "bad_field"),
        (msgpack.packb({"type": "ping", "id": 1, "extra": 2}), "bad_field"),
        (msgpack.packb({"type": "input", "frames": [[1, 9.0, 0, 0, 0, 0, 0]]}), "bad_field"),
        (
            msgpack.packb({"type": "input", "frames": [[1, 0.05, 0, 0, float("nan"), 0, 0]]}),
            "bad_field",
        ),
        (
            msgpack.packb({"type": "hello", "version": 1, "role": "player", "name": "a b"}),
            "bad_field",
        ),
        (msgpack.packb({"type": "ping", "id": 1, "t2": b"x" * 20000}), "too_large"),
        (b"\x91" * 20000, "too_large"),
        (b"\x91" * 3000 + b"\x01", "malformed"),
        (msgpack.packb({1: 2}), "malformed"),
    ],
)
def test_bad_frames_raise_protocol_errors(frame, code):
    with pytest.raises(p.ProtocolError) as info:
        p.decode(frame)
    assert info.value.code == code


def test_input_frames_are_bounded():
    frames = [[i, 0.01, 0, 0, 0, 0, 0] for i in range(p.MAX_INPUT_FRAMES + 1)]
    with pytest.raises(p.ProtocolError, match="more than"):
        p.decode(msgpack.packb({"type": "input", "frames": frames}))
