"""The node's one world replica, shared by every session it streams.

`NodeWorld` applies the sim's updates (a `client.replica.WorldReplica`,
the same code a game client runs) and keeps the players it sees
(`client.remote_players.RemotePlayers`, interpolated exactly as in local
mode). The replica is written only in the event loop thread.

Rendering happens in worker threads, and each session has its own
`renderer.WorldView`: a view is a window centred on its camera that
recentres incrementally as the camera walks, so two players far apart
cannot share one, and sharing one between players nearby would turn every
column crossing into a full refill. Views are never touched by the event
loop: `ViewFeed` (the replica's sink) records every section and block
change into one queue per view, and the worker that renders a view first
applies that view's queue. The section arrays themselves are the
replica's: views copy from them, nothing is decoded twice.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

from client.remote_players import Pose, RemotePlayers
from client.replica import WorldReplica
from shiftcraft.protocol import Update
from world.coords import SectionKey

# One recorded change: ("s", key, array) | ("c", key, None) | ("b", (x, y, z), block).
Op = tuple[str, Any, Any]


class ViewFeed:
    """The replica's sink: fans every change out to one queue per view.

    ``arrays`` mirrors the replica's decoded sections, so a new view (or one
    that moved) fills itself from a dict that is safe to read from another
    thread, without touching the replica's lazy decoding.
    """

    def __init__(self) -> None:
        self.arrays: dict[SectionKey, np.ndarray] = {}
        self._queues: dict[int, deque[Op]] = {}
        self._lock = threading.Lock()  # guards the set of queues, not their contents

    def open_queue(self, key: int) -> deque[Op]:
        q: deque[Op] = deque()
        with self._lock:
            self._queues = {**self._queues, key: q}  # copy-on-write: iteration needs no lock
        return q

    def close_queue(self, key: int) -> None:
        with self._lock:
            self._queues = {k: v for k, v in self._queues.items() if k != key}

    def _fan_out(self, op: Op) -> None:
        for q in self._queues.values():
            q.append(op)

    # -- ReplicaSink ----------------------------------------------------------------
    def set_section(self, key: SectionKey, arr: np.ndarray) -> bool:
        self.arrays[key] = arr
        self._fan_out(("s", key, arr))
        return True

    def clear_section(self, key: SectionKey) -> None:
        self.arrays.pop(key, None)
        self._fan_out(("c", key, None))

    def set_block(self, x: int, y: int, z: int, block: int) -> bool:
        self._fan_out(("b", (x, y, z), block))
        return True


class KnownOrAir:
    """Block reads for crosshair ray casts: sections not received read as air."""

    __slots__ = ("replica",)

    def __init__(self, replica: WorldReplica) -> None:
        self.replica = replica

    def get_block(self, x: int, y: int, z: int) -> int:
        b = self.replica.known_block(x, y, z)
        return 0 if b is None else b


class NodeWorld:
    """Replica + players, fed by the sim connection (see the module docstring)."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.feed = ViewFeed()
        self.replica = WorldReplica(sink=self.feed)  # a sink makes it decode at once
        self.ray_world = KnownOrAir(self.replica)
        self.players = RemotePlayers()
        self.ids: dict[str, int] = {}  # player name -> entity id (those in sight)
        self.latest: dict[int, tuple[float, float, float, float, float]] = {}
        self.updates = 0
        self.last_update_at = 0.0
        self.entity_listeners: dict[str, list] = {}  # name -> callbacks(x, y, z, yaw, pitch)

    def reset(self, tick_rate: int) -> None:
        """A new sim session: the sim numbers entities and ticks from scratch."""
        self.replica.clear()
        self.players.reset(tick_rate, self_id=-1)
        self.ids.clear()
        self.latest.clear()

    def apply(self, u: Update) -> None:
        now = self.clock()
        self.replica.apply_update(u)
        gone, spawn, moves = u.gone, u.spawn, u.entities
        if gone or spawn or moves:
            self.players.apply(u.tick, spawn, moves, gone, now)
            for eid in gone:
                self.latest.pop(eid, None)
            for eid, name, x, y, z, yaw, pitch in spawn:
                self.ids[name] = eid
                self._moved(eid, name, x, y, z, yaw, pitch)
            for eid, x, y, z, yaw, pitch in moves:
                p = self.players.players.get(eid)
                if p is not None:
                    self._moved(eid, p.name, x, y, z, yaw, pitch)
            if gone:
                live = set(self.players.players)
                self.ids = {n: i for n, i in self.ids.items() if i in live}
        else:
            self.players.observe_tick(u.tick, now)
        self.updates += 1
        self.last_update_at = now

    def _moved(self, eid: int, name: str, x: float, y: float, z: float, yaw: float, pitch: float):
        self.latest[eid] = (x, y, z, yaw, pitch)
        for cb in self.entity_listeners.get(name, ()):
            cb(x, y, z, yaw, pitch)

    def listen(self, name: str, cb) -> None:
        self.entity_listeners.setdefault(name, []).append(cb)
        eid = self.ids.get(name)
        if eid is not None and eid in self.latest:
            cb(*self.latest[eid])

    def unlisten(self, name: str, cb) -> None:
        cbs = self.entity_listeners.get(name, [])
        if cb in cbs:
            cbs.remove(cb)
        if not cbs:
            self.entity_listeners.pop(name, None)

    def avatars(self, now: float, exclude: str) -> list[tuple]:
        """Other players to draw (feet, yaw), interpolated as a local client does."""
        poses: list[Pose] = self.players.sample(now)
        return [(p.x, p.y, p.z, p.yaw) for p in poses if p.name != exclude]

    @property
    def sections(self) -> int:
        return len(self.replica)
