"""``explore``: head one way and keep going, so the server must stream new terrain.

The literature's "straight-line" movement: every bot keeps a fixed heading
(``--heading`` degrees, or a random one per bot), sprints, and jumps over
steps. Where jumping does not get it past an obstacle (a cliff, a tree, deep
water) it takes off, climbs for a moment, flies on and lands again, so it
never stops at the first wall and keeps entering sections nobody has
loaded — the worst case for interest management, generation and storage.
"""

from __future__ import annotations

import math
import random

from experiments.bots.behaviours import (
    Behaviour,
    BehaviourOptions,
    Intent,
    Steering,
    register,
)
from experiments.bots.bot import Bot

CLIMB_S = 1.0  # holding jump while flying: ~7.5 blocks up
FLY_ON_S = 3.0  # then flying forward before dropping to the ground again
STUCK_S = 1.5  # walking without progress this long: jumping does not help


@register
class Explore(Behaviour):
    name = "explore"

    def __init__(self, rng: random.Random, options: BehaviourOptions) -> None:
        super().__init__(rng, options)
        self.heading = 0.0
        self.steer = Steering()
        self.pitch = 0.0
        self.fly_until = 0.0  # flying over an obstacle until then
        self.climb_until = 0.0

    def start(self, bot: Bot) -> None:
        o = self.options
        self.heading = (
            math.radians(o.heading)
            if o.heading is not None
            else self.rng.uniform(-math.pi, math.pi)
        )
        self.steer.yaw = self.heading
        self.pitch = self.rng.uniform(-0.2, 0.0)

    def step(self, bot: Bot, now: float, dt: float) -> Intent:
        steer = self.steer
        # A little drift of the view as a person's hand gives, but the heading holds.
        yaw = steer.turn(self.heading + self.rng.uniform(-0.05, 0.05), dt)
        flying = now < self.fly_until
        steer.track(bot.pos, dt, walking=not flying)
        if not flying and steer.slow_for > STUCK_S:
            self.fly_until = now + CLIMB_S + FLY_ON_S
            self.climb_until = now + CLIMB_S
            steer.slow_for = 0.0
            flying = True
            bot.count("fly")
        return Intent(
            forward=1.0,
            yaw=yaw,
            pitch=self.pitch,
            sprint=True,
            fly=flying,
            jump=(now < self.climb_until) if flying else steer.want_jump(bot),
        )
