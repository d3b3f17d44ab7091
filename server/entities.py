"""Entity interest: which players each subscriber sees, and their moves.

Every tick the tracker takes all player positions, computes the pairwise
distances once (numpy, N×N), and derives for every subscriber at once:

* ``spawn`` — players that came within ``entity_distance``;
* ``gone``  — players beyond ``entity_distance + hysteresis``, or disconnected;
* ``moves`` — visible players whose position or look changed, at a rate that
  falls with distance: every tick within ``near`` blocks, every 2nd tick
  within ``2 * near``, every 4th beyond (phased by id, so the load is even).
  A move always carries the absolute latest state, so a skipped tick loses
  nothing but smoothness far away.

Visibility is a boolean matrix kept between ticks and re-indexed when players
come and go, so the per-subscriber work is a few ``flatnonzero`` calls and a
join of move records packed once per tick, not a Python loop over players.
Render nodes (no body, several view centres) take a slower set-based path;
there are few of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import numpy as np

from server.session import Session


@dataclass(slots=True)
class EntityView:
    spawn: list  # [id, name, x, y, z, yaw, pitch]
    moves: list[bytes]  # each a msgpack-packed [id, x, y, z, yaw, pitch]
    gone: list[int]


_EMPTY = EntityView([], [], [])


class EntityTracker:
    def __init__(self, distance: float, hysteresis: float, near: float = 16.0) -> None:
        self.near2 = float(distance) ** 2
        self.keep2 = float(distance + hysteresis) ** 2
        self.rate1 = float(near) ** 2  # every tick within this
        self.rate2 = float(2 * near) ** 2  # every 2nd tick within this
        self._ids = np.zeros(0, dtype=np.int64)  # player ids of the matrix rows/cols
        self._index: dict[int, int] = {}
        self._vis = np.zeros((0, 0), dtype=np.bool_)  # [viewer, seen]
        self._state: dict[int, tuple] = {}  # id -> (x, y, z, yaw, pitch) last tick
        self._pack = msgpack.Packer(use_bin_type=True).pack

    def begin(self, players: list[Session], tick: int) -> None:
        """Take this tick's positions and work out everyone's visibility."""
        n = len(players)
        ids = np.fromiter((s.player_id for s in players), dtype=np.int64, count=n)
        state = {}
        moved = np.zeros(n, dtype=np.bool_)
        old_state = self._state
        for k, s in enumerate(players):
            b = s.body
            st = (b.x, b.y, b.z, s.yaw, s.pitch)
            state[s.player_id] = st
            moved[k] = old_state.get(s.player_id) != st
        pos = np.array([st[:3] for st in state.values()], dtype=np.float64).reshape(n, 3)
        if n:
            diff = pos[:, None, :] - pos[None, :, :]
            d2 = np.einsum("ijk,ijk->ij", diff, diff)
        else:
            d2 = np.zeros((0, 0))

        # Last tick's visibility, re-indexed to this tick's players.
        old = np.fromiter((self._index.get(int(i), -1) for i in ids), dtype=np.int64, count=n)
        prev = np.zeros((n, n), dtype=np.bool_)
        have = np.flatnonzero(old >= 0)
        if len(have):
            prev[np.ix_(have, have)] = self._vis[np.ix_(old[have], old[have])]
        # Players that left: who saw them must be told they are gone.
        self._departed: dict[int, list[int]] = {}
        if len(self._ids) and len(have) < len(self._ids):
            present = np.zeros(len(self._ids), dtype=np.bool_)
            present[old[have]] = True
            left = np.flatnonzero(~present)
            seen_left = self._vis[:, left]
            for i in have.tolist():
                row = seen_left[old[i]]
                if row.any():
                    self._departed[i] = self._ids[left[row]].tolist()

        vis = (d2 < self.near2) | (prev & (d2 < self.keep2))
        np.fill_diagonal(vis, False)
        phase = (ids + tick) & 3
        due = moved & ((d2 < self.rate1) | (((phase & 1) == 0) & (d2 < self.rate2)) | (phase == 0))
        self._spawn = vis & ~prev
        self._gone = prev & ~vis
        self._move = vis & prev & due
        self._spawn_any = self._spawn.any(axis=1)
        self._gone_any = self._gone.any(axis=1)
        pack = self._pack
        self._records = [
            pack([s.player_id, *state[s.player_id]]) if moved[k] else b""
            for k, s in enumerate(players)
        ]
        self._players = players
        self._pos = pos
        self._moved = moved
        self._vis, self._ids, self._state = vis, ids, state
        self._index = {int(i): k for k, i in enumerate(ids.tolist())}

    def _spawn_record(self, k: int) -> list:
        s = self._players[k]
        b = s.body
        return [s.player_id, s.name, b.x, b.y, b.z, s.yaw, s.pitch]

    def view_for(self, s: Session) -> EntityView:
        """What subscriber ``s`` gets this tick (``begin`` must have run)."""
        i = self._index.get(s.player_id) if s.body is not None else None
        if i is None:
            return self._view_for_node(s)
        records = self._records
        moves = [records[j] for j in np.flatnonzero(self._move[i]).tolist()]
        spawn = (
            [self._spawn_record(j) for j in np.flatnonzero(self._spawn[i]).tolist()]
            if self._spawn_any[i]
            else []
        )
        gone = self._ids[self._gone[i]].tolist() if self._gone_any[i] else []
        departed = self._departed.get(i)
        if departed:
            gone.extend(departed)
        if not (moves or spawn or gone):
            return _EMPTY
        return EntityView(spawn, moves, gone)

    def _view_for_node(self, s: Session) -> EntityView:
        """Subscribers without a body (render nodes): nearest of several centres."""
        old = s.visible
        new: set[int] = set()
        if s.view_centres and len(self._pos):
            c = np.asarray(s.view_centres, dtype=np.float64)
            diff = self._pos[:, None, :] - c[None, :, :]
            d2 = np.einsum("ijk,ijk->ij", diff, diff).min(axis=1)
            for k in np.flatnonzero(d2 < self.keep2).tolist():
                pid = self._players[k].player_id
                if d2[k] < self.near2 or pid in old:
                    new.add(pid)
        if not new and not old:
            return _EMPTY
        index = self._index
        spawn = [self._spawn_record(index[pid]) for pid in new - old]
        gone = list(old - new)
        moves = [self._records[index[pid]] for pid in new & old if self._moved[index[pid]]]
        s.visible = new
        return EntityView(spawn, moves, gone)
