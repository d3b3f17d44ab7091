"""Other players, drawn a little in the past so their motion is smooth.

The sim sends other players' absolute positions at tick rate (every 2nd or
4th tick when far), and packets arrive with jitter. Drawing the newest
position would make avatars stutter; instead each player keeps a short
history of snapshots stamped with the *server tick* that produced them, and
is drawn at ``now - INTERP_DELAY`` (in server time), interpolated between
the two snapshots around that instant. 100 ms covers two ticks, so one late
or missing update does not stall an avatar.

Server time is mapped to the local clock by the least-delayed arrival seen
(``offset = arrival - tick_time``, a running minimum that may creep up
slowly): the fastest packet is the best estimate of the pure clock offset,
and the creep lets it follow a route that got permanently slower.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

INTERP_DELAY = 0.1  # seconds behind the newest snapshot
OFFSET_CREEP = 0.02  # seconds per second the clock offset may rise
HOLD_TICKS_NEAR = 1  # see `RemotePlayers.apply_moves`
HOLD_TICKS_FAR = 4
NEAR = 16.0  # blocks: the server sends moves every tick within this
MAX_SNAPSHOTS = 32


@dataclass(slots=True)
class Snapshot:
    t: float  # server time (tick / tick_rate)
    x: float
    y: float
    z: float
    yaw: float
    pitch: float


@dataclass(slots=True)
class RemotePlayer:
    id: int
    name: str
    snaps: deque[Snapshot] = field(default_factory=lambda: deque(maxlen=MAX_SNAPSHOTS))


@dataclass(slots=True)
class Pose:
    id: int
    name: str
    x: float
    y: float
    z: float
    yaw: float
    pitch: float


def _lerp_angle(a: float, b: float, t: float) -> float:
    d = (b - a + math.pi) % (2 * math.pi) - math.pi
    return a + d * t


class RemotePlayers:
    """Every other player in sight, by entity id."""

    def __init__(self, tick_rate: int = 20, self_id: int | None = None) -> None:
        self.tick_s = 1.0 / tick_rate
        self.self_id = self_id
        self.players: dict[int, RemotePlayer] = {}
        self._offset: float | None = None  # local clock - server time
        self._offset_at = 0.0

    def __len__(self) -> int:
        return len(self.players)

    def reset(self, tick_rate: int, self_id: int) -> None:
        """A new session: ids and ticks start over."""
        self.tick_s = 1.0 / tick_rate
        self.self_id = self_id
        self.players.clear()
        self._offset = None

    # -- receiving ------------------------------------------------------------------
    def observe_tick(self, tick: int, now: float) -> None:
        """Track the clock offset from an update's arrival."""
        sample = now - tick * self.tick_s
        if self._offset is None:
            self._offset = sample
        else:
            crept = self._offset + OFFSET_CREEP * max(0.0, now - self._offset_at)
            self._offset = min(crept, sample)
        self._offset_at = now

    def apply(
        self,
        tick: int,
        spawn: list,
        moves: list,
        gone: list,
        now: float,
        me: tuple[float, float, float] | None = None,
    ) -> None:
        """Apply one update's ``spawn``, ``entities`` and ``gone`` lists."""
        self.observe_tick(tick, now)
        t = tick * self.tick_s
        for eid in gone:
            self.players.pop(eid, None)
        for eid, name, x, y, z, yaw, pitch in spawn:
            if eid == self.self_id:
                continue
            p = RemotePlayer(eid, name)
            p.snaps.append(Snapshot(t, x, y, z, yaw, pitch))
            self.players[eid] = p
        for eid, x, y, z, yaw, pitch in moves:
            p = self.players.get(eid)
            if p is None:
                continue
            last = p.snaps[-1] if p.snaps else None
            if last is not None:
                if t <= last.t:
                    continue  # duplicate or out of order
                # Moves are only sent when a player moved. After a pause the
                # previous snapshot is old, and interpolating from it would
                # smear the first step over the whole pause: hold the old
                # position until just before this move.
                near = me is None or math.dist(me, (x, y, z)) <= NEAR
                hold = (HOLD_TICKS_NEAR if near else HOLD_TICKS_FAR) * self.tick_s
                if t - last.t > hold + 1e-9:
                    p.snaps.append(Snapshot(t - hold, last.x, last.y, last.z, last.yaw, last.pitch))
            p.snaps.append(Snapshot(t, x, y, z, yaw, pitch))

    # -- drawing --------------------------------------------------------------------
    def server_time(self, now: float) -> float:
        return now - (self._offset or 0.0)

    def sample(self, now: float, delay: float = INTERP_DELAY) -> list[Pose]:
        """Every player's pose at ``now - delay`` (local clock)."""
        t = self.server_time(now) - delay
        out = []
        for p in self.players.values():
            snaps = p.snaps
            if not snaps:
                continue
            # Drop history that is no longer needed (keep one snapshot before t).
            while len(snaps) >= 2 and snaps[1].t <= t:
                snaps.popleft()
            a = snaps[0]
            if len(snaps) == 1 or t <= a.t:
                out.append(Pose(p.id, p.name, a.x, a.y, a.z, a.yaw, a.pitch))
                continue
            b = snaps[1]
            f = min(1.0, (t - a.t) / (b.t - a.t))
            out.append(
                Pose(
                    p.id,
                    p.name,
                    a.x + (b.x - a.x) * f,
                    a.y + (b.y - a.y) * f,
                    a.z + (b.z - a.z) * f,
                    _lerp_angle(a.yaw, b.yaw, f),
                    a.pitch + (b.pitch - a.pitch) * f,
                )
            )
        return out
