"""``follow``: stay near a player, found by name in the server's entity updates.

The bot tracks the players the server says are in sight (``spawn`` /
``entities`` / ``gone``), walks towards its target (``--target NAME``; none:
the nearest player), sprints when it has fallen behind, and stops at
``follow_distance`` looking at the target's face. With no target in sight it
stands and looks around until one appears, and goes to where it last saw it.
"""

from __future__ import annotations

import math
import random

from experiments.bots.behaviours import (
    Behaviour,
    BehaviourOptions,
    Intent,
    Steering,
    heading_to,
    register,
    wrap_angle,
)
from experiments.bots.bot import Bot

SPRINT_BEYOND = 6.0  # blocks: sprint to catch up


class _FastSteering(Steering):
    TURN_RATE = 8.0  # a follower turns briskly (rad/s), as a player chasing someone does


@register
class Follow(Behaviour):
    name = "follow"
    needs_entities = True

    def __init__(self, rng: random.Random, options: BehaviourOptions) -> None:
        super().__init__(rng, options)
        self.steer = _FastSteering()
        self.pitch = 0.0
        self.target_id: int | None = None
        self.last_seen: tuple[float, float, float] | None = None
        self.next_look = 0.0

    def start(self, bot: Bot) -> None:
        self.steer.yaw = self.rng.uniform(-math.pi, math.pi)

    def _find(self, bot: Bot) -> list | None:
        """The target's entry ``[name, x, y, z, yaw, pitch]`` if in sight."""
        others = bot.others or {}
        if self.target_id in others:
            return others[self.target_id]
        want = self.options.target
        x, y, z = bot.pos
        best: tuple[float, int] | None = None
        for eid, entry in others.items():
            if want and entry[0] != want:
                continue
            d = math.dist((x, y, z), entry[1:4])
            if best is None or d < best[0]:
                best = (d, eid)
        if best is None:
            return None
        self.target_id = best[1]
        bot.count("acquire")
        return others[best[1]]

    def step(self, bot: Bot, now: float, dt: float) -> Intent:
        entry = self._find(bot)
        if entry is not None:
            self.last_seen = (entry[1], entry[2], entry[3])
        else:
            self.target_id = None
        goal = self.last_seen
        x, y, z = bot.pos
        steer = self.steer
        if goal is None:  # nobody in sight yet: look around
            if now >= self.next_look:
                steer.yaw = wrap_angle(steer.yaw + self.rng.uniform(-1.5, 1.5))
                self.next_look = now + self.rng.uniform(1.0, 3.0)
            steer.track(bot.pos, dt, walking=False)
            return Intent(yaw=steer.yaw, pitch=0.0)
        gx, gy, gz = goal
        dx, dz = gx - x, gz - z
        dist = math.hypot(dx, dz)
        yaw = steer.turn(heading_to(dx, dz), dt)
        # Look at the target's eyes from ours (both at eye height over the feet).
        self.pitch = math.atan2(gy - y, max(dist, 0.1)) if entry is not None else 0.0
        near = dist <= self.options.follow_distance
        if near and entry is None:
            self.last_seen = None  # got where it was last seen, and it is not here
        walking = not near
        steer.track(bot.pos, dt, walking)
        return Intent(
            forward=1.0 if walking else 0.0,
            yaw=yaw,
            pitch=max(-1.5, min(1.5, self.pitch)),
            sprint=dist > SPRINT_BEYOND,
            jump=walking and steer.want_jump(bot),
        )
