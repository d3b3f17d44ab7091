"""The client's copy of the world, built only from what the sim sends.

Two layers:

* `LazyReplica` — sections by key as wire bytes, decoded on first read. A
  bot at view distance 64 holds hundreds of sections but reads a handful
  (the ground around it), so keeping the bytes costs nothing for sections
  never looked at. (It used to live in ``experiments/bots/replica.py``,
  which now re-exports it: bots and the game client share one replica.)
* `WorldReplica` — what the game client keeps: applies whole `Update`
  messages in the protocol's order, predicts the client's own edits
  optimistically, and mirrors every change into an optional `ReplicaSink`
  (the renderer's `WorldView`) one section or one block at a time, so a
  single edit never rebuilds the view.

Optimistic edits: a click changes the replica at once (the game must feel
instant at 100 ms RTT); the position stays *pending* until the server's
edit result arrives, which carries the true block there. While an edit is
pending, deltas and re-sent sections do not undo the prediction; the
result then sets the truth. A rejected edit therefore flickers back to the
true block one round trip later, as in any client-predicted game.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from shiftcraft.protocol import Update
from world.blocks import BlockId
from world.codec import CodecError, decode_section, encode_section
from world.coords import SECTION_MASK, SECTION_SHIFT, WORLD_HEIGHT, BlockPos, SectionKey

__all__ = ["LazyReplica", "ReplicaSink", "ReplicaStats", "WorldReplica"]


class LazyReplica:
    """Received sections by key: wire bytes, decoded on first block read."""

    __slots__ = ("_arrays", "_raw", "bad_sections")

    def __init__(self) -> None:
        self._raw: dict[SectionKey, bytes] = {}
        self._arrays: dict[SectionKey, np.ndarray] = {}
        self.bad_sections = 0  # sections whose bytes did not decode (server bug)

    def __len__(self) -> int:
        return len(self._raw) + len(self._arrays)

    def __contains__(self, key: object) -> bool:
        return key in self._arrays or key in self._raw

    @property
    def decoded(self) -> int:
        return len(self._arrays)

    def keys(self) -> Iterator[SectionKey]:
        yield from self._arrays
        yield from self._raw

    __iter__ = keys

    def add_section(self, key: SectionKey, data: bytes) -> None:
        self._arrays.pop(key, None)
        self._raw[key] = data

    def unload(self, key: SectionKey) -> None:
        self._arrays.pop(key, None)
        self._raw.pop(key, None)

    def clear(self) -> None:
        self._arrays.clear()
        self._raw.clear()

    def compact(self, keep: Callable[[SectionKey], bool], budget_s: float, level: int = 1) -> bool:
        """Encode decoded sections back to bytes (except those ``keep`` wants
        live) for about ``budget_s``; True once none is left to encode.

        A client that stops rendering locally needs only the few sections
        physics reads: the rest shrink from 4 KiB arrays to their wire size.
        zlib level 1: this runs between frames, and the bytes stay local."""
        deadline = time.perf_counter() + budget_s
        for key in [k for k in self._arrays if not keep(k)]:
            self._raw[key] = encode_section(self._arrays.pop(key), level)
            if time.perf_counter() >= deadline:
                return False
        return True

    def array(self, key: SectionKey) -> np.ndarray | None:
        """The live ``[y, z, x]`` array of a section (decoding it now if needed)."""
        arr = self._arrays.get(key)
        if arr is None:
            data = self._raw.pop(key, None)
            if data is None:
                return None
            try:
                arr = decode_section(data)
            except CodecError:
                self.bad_sections += 1
                return None
            self._arrays[key] = arr
        return arr

    # Kept for callers written against the bots' original name.
    _array = array

    def get_block(self, x: int, y: int, z: int) -> int | None:
        """The block id, or None where we have not received that section."""
        if not 0 <= y < WORLD_HEIGHT:
            return None
        arr = self.array((x >> SECTION_SHIFT, y >> SECTION_SHIFT, z >> SECTION_SHIFT))
        if arr is None:
            return None
        return int(arr[y & SECTION_MASK, z & SECTION_MASK, x & SECTION_MASK])

    def set_block(self, x: int, y: int, z: int, block: int) -> bool:
        """Apply a delta; False (ignored) for sections we do not hold (they come whole)."""
        if not 0 <= y < WORLD_HEIGHT:
            return False
        arr = self.array((x >> SECTION_SHIFT, y >> SECTION_SHIFT, z >> SECTION_SHIFT))
        if arr is None:
            return False
        arr[y & SECTION_MASK, z & SECTION_MASK, x & SECTION_MASK] = block
        return True


class ReplicaSink(Protocol):
    """Where changes are mirrored (`renderer.WorldView` has exactly this shape)."""

    def set_section(self, key: SectionKey, arr: np.ndarray) -> bool: ...
    def clear_section(self, key: SectionKey) -> None: ...
    def set_block(self, x: int, y: int, z: int, block: int) -> bool: ...


@dataclass(slots=True)
class ReplicaStats:
    sections_received: int = 0
    sections_unloaded: int = 0
    deltas_applied: int = 0
    edits_predicted: int = 0
    edits_confirmed: int = 0
    edits_rejected: int = 0
    stale_dropped: int = 0  # held across a reconnect, never re-sent, then dropped


class WorldReplica:
    """The game client's world (see the module docstring).

    ``get_block`` answers physics and ray casts: unreceived sections read as
    ``missing`` (solid by default, so prediction never falls into a hole
    that is merely not loaded yet; the server corrects either way).
    """

    def __init__(self, sink: ReplicaSink | None = None, missing: int = BlockId.STONE) -> None:
        self.sections = LazyReplica()
        self.sink = sink
        self.missing = int(missing)
        self.stats = ReplicaStats()
        # Optimistic edits awaiting their result: position -> how many.
        self._pending: dict[BlockPos, int] = {}
        self._predicted: dict[BlockPos, int] = {}  # position -> the block we predicted
        # Sections held from before a reconnect that the new session has not re-sent.
        self._stale: set[SectionKey] = set()

    # -- reading -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.sections)

    def __contains__(self, key: object) -> bool:
        return key in self.sections

    def keys(self) -> Iterator[SectionKey]:
        return self.sections.keys()

    __iter__ = keys

    def array(self, key: SectionKey) -> np.ndarray | None:
        return self.sections.array(key)

    def get_block(self, x: int, y: int, z: int) -> int:
        if y < 0:
            return BlockId.BEDROCK  # as the server's World: the floor is solid
        if y >= WORLD_HEIGHT:
            return BlockId.AIR
        b = self.sections.get_block(x, y, z)
        return self.missing if b is None else b

    def known_block(self, x: int, y: int, z: int) -> int | None:
        """The block, or None where the section has not arrived."""
        return self.sections.get_block(x, y, z)

    def has_sections_around(self, x: float, y: float, z: float) -> bool:
        """Whether the sections around a body at (x, y, z) have arrived
        (its own section and the ones just above and below)."""
        sx, sz = int(np.floor(x)) >> SECTION_SHIFT, int(np.floor(z)) >> SECTION_SHIFT
        sy = int(np.floor(y)) >> SECTION_SHIFT
        for dy in (-1, 0, 1):
            if 0 <= sy + dy < WORLD_HEIGHT >> SECTION_SHIFT and (sx, sy + dy, sz) not in self:
                return False
        return True

    @property
    def pending_edits(self) -> int:
        return sum(self._pending.values())

    # -- applying the server's messages -------------------------------------------------
    def apply_update(self, update: Update) -> None:
        """Apply one update in the protocol's order.

        Edit results go *before* sections: a section re-sent in the same tick
        (a heavily edited one) already holds the end-of-tick state, which a
        result's mid-tick ``block_now`` must not overwrite. Deltas go last.
        """
        for sx, sy, sz in update.unload:
            self.unload((sx, sy, sz))
        for _seq, ok, x, y, z, block_now, _reason in update.edits:
            self.edit_result(x, y, z, block_now, ok)
        for sx, sy, sz, data in update.sections:
            self.add_section((sx, sy, sz), data)
        for x, y, z, block in update.blocks:
            self.apply_delta(x, y, z, block)

    def add_section(self, key: SectionKey, data: bytes) -> None:
        self.stats.sections_received += 1
        self._stale.discard(key)
        self.sections.add_section(key, data)
        if self.sink is None and not self._pending:
            return  # nobody needs the array yet: stay lazy
        arr = self.sections.array(key)
        if arr is None:
            return
        # Keep our own predictions on top until their results arrive.
        for (x, y, z), block in self._predicted.items():
            if (x >> SECTION_SHIFT, y >> SECTION_SHIFT, z >> SECTION_SHIFT) == key:
                arr[y & SECTION_MASK, z & SECTION_MASK, x & SECTION_MASK] = block
        if self.sink is not None:
            self.sink.set_section(key, arr)

    def unload(self, key: SectionKey) -> None:
        if key in self.sections:
            self.stats.sections_unloaded += 1
        self.sections.unload(key)
        self._stale.discard(key)
        if self.sink is not None:
            self.sink.clear_section(key)

    def apply_delta(self, x: int, y: int, z: int, block: int) -> None:
        if (x, y, z) in self._pending:
            return  # our prediction stands until the edit's result says otherwise
        if self.sections.set_block(x, y, z, block):
            self.stats.deltas_applied += 1
            if self.sink is not None:
                self.sink.set_block(x, y, z, block)

    def edit_result(self, x: int, y: int, z: int, block_now: int, ok: bool) -> None:
        pos = (x, y, z)
        if ok:
            self.stats.edits_confirmed += 1
        else:
            self.stats.edits_rejected += 1
        left = self._pending.get(pos, 0) - 1
        if left > 0:
            self._pending[pos] = left
            return  # a later edit of ours at the same place is still in flight
        self._pending.pop(pos, None)
        self._predicted.pop(pos, None)
        self._write(x, y, z, block_now)

    # -- our own edits --------------------------------------------------------------------
    def predict_edit(self, x: int, y: int, z: int, block: int) -> None:
        """Show an edit we just sent before the server confirms it."""
        pos = (x, y, z)
        self._pending[pos] = self._pending.get(pos, 0) + 1
        self._predicted[pos] = int(block)
        self.stats.edits_predicted += 1
        self._write(x, y, z, block)

    def _write(self, x: int, y: int, z: int, block: int) -> None:
        if self.sections.set_block(x, y, z, block) and self.sink is not None:
            self.sink.set_block(x, y, z, block)

    # -- sessions ---------------------------------------------------------------------
    def begin_resync(self) -> None:
        """A new session starts: keep showing what we hold, but expect it all again.

        The server re-sends every section in its interest; `end_resync` drops
        the ones it did not (out of interest now), so nothing stale lingers.
        Pending edits of the old session will never get a result: forget them
        (the re-sent sections carry the truth).
        """
        self._stale = set(self.sections.keys())
        self._pending.clear()
        self._predicted.clear()

    def end_resync(self) -> int:
        """Drop the sections the new session did not re-send; returns how many."""
        stale, self._stale = self._stale, set()
        for key in stale:
            self.unload(key)
        self.stats.stale_dropped += len(stale)
        return len(stale)

    @property
    def resyncing(self) -> bool:
        return bool(self._stale)

    def clear(self) -> None:
        if self.sink is not None:
            for key in list(self.sections.keys()):
                self.sink.clear_section(key)
        self.sections.clear()
        self._pending.clear()
        self._predicted.clear()
        self._stale.clear()

    def compact(self, x: float, y: float, z: float, budget_s: float) -> bool:
        """Re-encode decoded sections except those around (x, y, z) — what
        physics and ray casts read — for about ``budget_s`` (see
        `LazyReplica.compact`); True when done. For a client not rendering."""
        cx, cy, cz = int(x) >> SECTION_SHIFT, int(y) >> SECTION_SHIFT, int(z) >> SECTION_SHIFT

        def keep(key: SectionKey) -> bool:
            return max(abs(key[0] - cx), abs(key[1] - cy), abs(key[2] - cz)) <= 1

        return self.sections.compact(keep, budget_s)

    def attach(self, sink: ReplicaSink | None, keys: Iterable[SectionKey] | None = None) -> int:
        """Mirror into ``sink`` from now on, pushing what we hold (or ``keys`` of it)."""
        self.sink = sink
        if sink is None:
            return 0
        n = 0
        for key in list(self.sections.keys()) if keys is None else keys:
            arr = self.sections.array(key)
            if arr is not None and sink.set_section(key, arr):
                n += 1
        return n
