"""Section codec: property-based round trip, and hostile bytes raise CodecError only."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from world.blocks import BLOCKS, BlockId
from world.codec import (
    KIND_PALETTE,
    KIND_UNIFORM,
    CodecError,
    decode_section,
    encode_section,
    index_bits,
)
from world.terrain import TerrainGenerator

KNOWN = [b.id for b in BLOCKS]
UNKNOWN = [i for i in range(256) if not BLOCKS.known[i]]
SHAPE = (16, 16, 16)


def _raw_stream(palette: list[int], indices: np.ndarray) -> bytes:
    """A hand-made palette section (to build invalid ones the encoder never would)."""
    bits = index_bits(len(palette))
    flat = np.asarray(indices, dtype=np.uint8).reshape(-1)
    if bits < 8:
        per = 8 // bits
        groups = flat.reshape(-1, per)
        packed = np.zeros(len(groups), dtype=np.uint8)
        for k in range(per):
            packed |= groups[:, k] << np.uint8(k * bits)
        flat = packed
    return bytes((len(palette) - 1, *palette)) + flat.tobytes()


def _palette_section(palette: list[int], indices: np.ndarray, tail: bytes = b"") -> bytes:
    return bytes((KIND_PALETTE,)) + zlib.compress(_raw_stream(palette, indices) + tail)


@st.composite
def sections(draw: st.DrawFn) -> np.ndarray:
    """Uniform, few-block, terrain-like layered and many-block random sections."""
    palette = draw(st.lists(st.sampled_from(KNOWN), min_size=1, max_size=len(KNOWN), unique=True))
    seed = draw(st.integers(0, 2**32 - 1))
    shape = draw(st.sampled_from(["random", "layers", "sparse", "uniform"]))
    rng = np.random.default_rng(seed)
    pal = np.array(palette, dtype=np.uint8)
    if shape == "uniform":
        return np.full(SHAPE, pal[0], dtype=np.uint8)
    if shape == "layers":  # a column profile varying with a random heightmap
        heights = rng.integers(0, 17, size=(16, 16))
        y = np.arange(16)[:, None, None]
        which = np.minimum((y >= heights[None]).astype(int) * len(pal) // 2, len(pal) - 1)
        return pal[which].astype(np.uint8)
    if shape == "sparse":  # mostly one block, a few others
        arr = np.full(SHAPE, pal[0], dtype=np.uint8)
        n = draw(st.integers(1, 40))
        pos = rng.integers(0, 16, size=(n, 3))
        arr[pos[:, 0], pos[:, 1], pos[:, 2]] = rng.choice(pal, size=n)
        return arr
    return rng.choice(pal, size=SHAPE).astype(np.uint8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sections())
def test_round_trip(section: np.ndarray) -> None:
    data = encode_section(section)
    out = decode_section(data)
    assert out.shape == SHAPE and out.dtype == np.uint8
    assert np.array_equal(out, section)
    assert out.flags.writeable and out.flags.c_contiguous
    assert decode_section(bytearray(data)).tobytes() == section.tobytes()
    assert decode_section(memoryview(data)).tobytes() == section.tobytes()
    if (section == section.flat[0]).all():
        assert data == bytes((KIND_UNIFORM, int(section.flat[0])))


def test_round_trip_every_known_id_and_all_bit_widths() -> None:
    rng = np.random.default_rng(1)
    for n in (2, 3, 4, 5, 16, 17, len(KNOWN)):
        pal = np.array(KNOWN[:n], dtype=np.uint8)
        arr = rng.choice(pal, size=SHAPE).astype(np.uint8)
        arr.reshape(-1)[: len(pal)] = pal  # each palette entry used
        assert np.array_equal(decode_section(encode_section(arr)), arr)


def test_terrain_sections_round_trip_and_are_small() -> None:
    gen = TerrainGenerator(7)
    sizes = []
    for cx in range(-3, 3):
        for sy in range(8):
            sec = gen.generate_section((cx, sy, 5))
            data = encode_section(sec)
            assert np.array_equal(decode_section(data), sec)
            sizes.append(len(data))
    assert max(sizes) < 1200


def test_decodes_a_stored_blob() -> None:
    # The byte format is stable: this blob was written by this codec version.
    section = np.zeros(SHAPE, dtype=np.uint8)
    section[:5] = BlockId.STONE
    section[5] = BlockId.GRASS
    section[6, 3, 4] = BlockId.WOOD
    blob = bytes.fromhex(_BLOB)
    assert np.array_equal(decode_section(blob), section)
    assert decode_section(encode_section(section)).tobytes() == section.tobytes()


_BLOB = "0278da63666064660fe564601856d87298f967148f621a620093075e3f"


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        encode_section(np.zeros((16, 16), dtype=np.uint8))
    with pytest.raises(ValueError):
        encode_section(np.full(SHAPE, UNKNOWN[0], dtype=np.uint8))
    with pytest.raises(ValueError):
        encode_section(np.full(SHAPE, 300, dtype=np.int32))


# -- malformed input: CodecError and nothing else ---------------------------------
def _valid() -> bytes:
    arr = TerrainGenerator(3).generate_section((0, 3, 0))
    arr[0, 0, :3] = (BlockId.TNT, BlockId.GLASS, BlockId.BRICK)
    return encode_section(arr)


def test_truncated_inputs() -> None:
    data = _valid()
    assert data[0] == KIND_PALETTE
    for n in range(len(data)):
        with pytest.raises(CodecError):
            decode_section(data[:n])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_raises_codec_error_or_decodes(data: bytes) -> None:
    try:
        out = decode_section(data)
    except CodecError:
        return
    assert out.shape == SHAPE and BLOCKS.known[out].all()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 255))
def test_corrupted_valid_inputs(pos: int, flip: int) -> None:
    data = bytearray(_VALID)
    data[pos % len(data)] ^= flip
    try:
        out = decode_section(bytes(data))
    except CodecError:
        return
    assert out.shape == SHAPE and BLOCKS.known[out].all()


_VALID = _valid()


def test_zip_bomb_and_oversized_streams() -> None:
    bomb = bytes((KIND_PALETTE,)) + zlib.compress(b"\0" * 50_000_000, 9)
    assert len(bomb) < 100_000
    with pytest.raises(CodecError):
        decode_section(bomb)
    with pytest.raises(CodecError):  # one byte more than the largest valid stream
        decode_section(bytes((KIND_PALETTE,)) + zlib.compress(bytes(1 + 256 + 4096 + 1)))
    palette, indices = [0, 1], np.zeros(4096, dtype=np.uint8)
    with pytest.raises(CodecError):  # right header, extra payload inside the stream
        decode_section(_palette_section(palette, indices, tail=b"\0"))
    with pytest.raises(CodecError):  # bytes after the end of the zlib stream
        decode_section(_palette_section(palette, indices) + b"\0")
    with pytest.raises(CodecError):  # a 2-byte uniform section with a tail
        decode_section(bytes((KIND_UNIFORM, 1, 1)))


def test_structurally_invalid_sections() -> None:
    idx = np.zeros(4096, dtype=np.uint8)
    cases = {
        "unknown kind": bytes((7,)) + zlib.compress(_raw_stream([0, 1], idx)),
        "retired kind 1": bytes((1,)) + zlib.compress(_raw_stream([0, 1], idx)),
        "unknown uniform id": bytes((KIND_UNIFORM, UNKNOWN[0])),
        "unknown palette id": _palette_section([0, UNKNOWN[0]], idx),
        "index out of range": _palette_section([0, 1, 2], np.full(4096, 3, np.uint8)),
        "index out of range 8-bit": _palette_section(KNOWN[:17], np.full(4096, 17, np.uint8)),
        "palette not increasing": _palette_section([1, 0], idx),
        "duplicate palette id": _palette_section([1, 1, 2], idx),
        "one-block palette": _palette_section([1], np.zeros(4096, np.uint8)),
        "short payload": bytes((KIND_PALETTE,)) + zlib.compress(_raw_stream([0, 1], idx)[:-1]),
        "cut zlib stream": _palette_section([0, 1], idx)[:-1],
        "not zlib": bytes((KIND_PALETTE,)) + b"definitely not a zlib stream",
        "empty stream": bytes((KIND_PALETTE,)) + zlib.compress(b""),
        "empty": b"",
        "one byte": b"\x02",
    }
    for name, data in cases.items():
        with pytest.raises(CodecError):
            decode_section(data)
            pytest.fail(name)


def test_wrong_types_raise_codec_error() -> None:
    for value in ("\x00\x01", None, 5, [0, 1], np.zeros(2, np.uint8)):
        with pytest.raises(CodecError):
            decode_section(value)  # type: ignore[arg-type]
