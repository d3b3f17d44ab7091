"""Encoding the per-tick `update` fast, without changing what is on the wire.

An update to each of N subscribers carries up to N entity moves, and most of
those records are the same for everyone. msgpack is concatenative — a map is
its header followed by its packed keys and values — so the tracker packs each
move once per tick and this module splices the packed records into each
subscriber's update. The bytes are exactly what `shiftcraft.protocol.encode`
would produce for the same message with its ``entities`` list filled in (up
to key order, which msgpack maps do not fix); a test checks that.
"""

from __future__ import annotations

import msgpack

from shiftcraft.protocol import Update, encode

_ENTITIES_KEY = msgpack.packb("entities", use_bin_type=True)
_FIXMAP = 0x80  # a map of up to 15 entries: one header byte 0x80 | n


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode_update(msg: Update, moves: list[bytes]) -> bytes:
    """``msg`` (with an empty ``entities``) plus the pre-packed ``moves``."""
    body = encode(msg)
    if not moves:
        return body
    head = body[0]
    if head & 0xF0 != _FIXMAP or head == 0x8F:
        raise ValueError("update map too large to splice into")  # cannot happen: 14 fields
    return b"".join(
        (bytes((head + 1,)), body[1:], _ENTITIES_KEY, _array_header(len(moves)), *moves)
    )
