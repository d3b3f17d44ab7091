"""Section codec: palette + zlib, used on the wire and in the store.

Format (first byte is the kind):

* ``0x00 id`` — a uniform section (all one block): 2 bytes.
* ``0x01 zlib(n, palette[n], indices[4096])`` — palette of ``n`` block ids
  and one palette index per block in ``[y, z, x]`` order.

Decoding validates everything (kind, sizes, palette ids, index range) and
bounds decompression, so hostile bytes raise :class:`CodecError` instead of
allocating or crashing.
"""

from __future__ import annotations

import zlib

import numpy as np

from world.blocks import BLOCKS
from world.coords import SECTION_SIZE

SECTION_VOLUME = SECTION_SIZE**3
KIND_UNIFORM = 0
KIND_PALETTE = 1
_MAX_RAW = 1 + 256 + SECTION_VOLUME


class CodecError(ValueError):
    """Bytes that are not a valid encoded section."""


def encode_section(blocks: np.ndarray, level: int = 6) -> bytes:
    flat = np.ascontiguousarray(blocks, dtype=np.uint8).reshape(-1)
    if flat.size != SECTION_VOLUME:
        raise ValueError(f"section must have {SECTION_VOLUME} blocks, got {flat.size}")
    first = flat[0]
    if (flat == first).all():
        return bytes((KIND_UNIFORM, int(first)))
    # Palette in first-seen order would need a Python loop; np.unique is sorted,
    # which is as good for compression and deterministic.
    palette, indices = np.unique(flat, return_inverse=True)
    raw = bytes((len(palette),)) + palette.astype(np.uint8).tobytes()
    raw += indices.astype(np.uint8).tobytes()
    return bytes((KIND_PALETTE,)) + zlib.compress(raw, level)


def decode_section(data: bytes) -> np.ndarray:
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 2:
        raise CodecError("section data too short")
    kind = data[0]
    if kind == KIND_UNIFORM:
        if len(data) != 2:
            raise CodecError("uniform section must be 2 bytes")
        block = data[1]
        if not BLOCKS.known[block]:
            raise CodecError(f"unknown block id {block}")
        return np.full((SECTION_SIZE,) * 3, block, dtype=np.uint8)
    if kind != KIND_PALETTE:
        raise CodecError(f"unknown section kind {kind}")
    d = zlib.decompressobj()
    try:
        raw = d.decompress(bytes(data[1:]), _MAX_RAW + 1)
    except zlib.error as exc:
        raise CodecError(f"bad zlib stream: {exc}") from None
    if not d.eof or d.unconsumed_tail:
        raise CodecError("truncated or oversized section stream")
    n = raw[0] if raw else 0
    if n < 1 or len(raw) != 1 + n + SECTION_VOLUME:
        raise CodecError("section stream has the wrong size")
    palette = np.frombuffer(raw, dtype=np.uint8, count=n, offset=1)
    if not BLOCKS.known[palette].all():
        raise CodecError("unknown block id in palette")
    indices = np.frombuffer(raw, dtype=np.uint8, offset=1 + n)
    if int(indices.max()) >= n:
        raise CodecError("palette index out of range")
    return palette[indices].reshape((SECTION_SIZE,) * 3)
