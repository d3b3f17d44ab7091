"""``tnt``: walk about, now and then place TNT, light it, and run.

Explosions are the costliest block update the sim has (hundreds of changes
in one tick, sections re-sent whole to everyone near), so a few of these
bots stress what a crowd of builders does not. A cycle:

    walk (as `Walk`, ``tnt_interval`` s) -> place TNT on the ground nearby
    -> when the placement is acknowledged, ``ignite`` it -> when that is
    acknowledged, sprint away from it past the fuse (2 s) -> walk ...

A refused step ends the cycle early (it walks on and tries again later).
The bot watches its replica for the lit blocks to vanish and counts each
as an ``explosion`` in the summary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from experiments.bots.behaviours import (
    BehaviourOptions,
    EditRequest,
    EditResult,
    Intent,
    Walk,
    find_placement,
    heading_to,
    register,
)
from experiments.bots.bot import Bot
from world.blocks import BlockId

FUSE_S = 2.0  # the server's TNT fuse (40 ticks)
RETREAT_S = FUSE_S + 1.5  # run until the blast is over
ANSWER_TIMEOUT_S = 3.0  # an edit without a result by then: give this charge up
KEEP_AWAY = 2.0  # blocks between the bot and the charge it places


@dataclass(slots=True)
class Charge:
    pos: tuple[int, int, int]
    phase: str  # "placing" | "igniting" | "lit"
    since: float


@register
class Tnt(Walk):
    name = "tnt"
    needs_world = True

    def __init__(self, rng: random.Random, options: BehaviourOptions) -> None:
        super().__init__(rng, options)
        self.next_charge: float | None = None
        self.charge: Charge | None = None
        self.retreat_until = 0.0
        self.retreat_yaw = 0.0
        self.lit: list[tuple[int, int, int]] = []  # lit, not yet seen exploding
        self.exploded: list[tuple[int, int, int]] = []
        self._answers: list[EditResult] = []

    def step(self, bot: Bot, now: float, dt: float) -> Intent:
        if self.next_charge is None:  # the first charge comes soon, not in step with others
            self.next_charge = now + self.rng.uniform(0.3, 1.0) * self.options.tnt_interval
        self._watch_blasts(bot)
        intent = self._advance(bot, now)
        if intent is not None:
            return intent
        if now < self.retreat_until:
            yaw = self.steer.turn(self.retreat_yaw, dt)
            self.steer.track(bot.pos, dt, walking=True)
            return Intent(forward=1.0, yaw=yaw, sprint=True, jump=self.steer.want_jump(bot))
        walk = super().step(bot, now, dt)
        if self.charge is None and now >= self.next_charge:
            target = (
                find_placement(bot.world, bot.pos, self.rng, self.options.reach, 3, KEEP_AWAY)
                if bot.world is not None
                else None
            )
            if target is not None:
                self.charge = Charge(target, "placing", now)
                walk.forward = 0.0  # stop to place, as a player would
                walk.edits.append(EditRequest("place", *target, block=int(BlockId.TNT)))
        return walk

    def _advance(self, bot: Bot, now: float) -> Intent | None:
        """Move the current charge on from the server's answers; an intent to send, or None."""
        charge = self.charge
        if charge is None:
            self._answers.clear()
            return None
        answers, self._answers = self._answers, []
        for result in answers:
            req = result.request
            if req.pos != charge.pos:
                continue
            if not result.ok:
                self._end_cycle(now)
                return None
            if req.action == "place" and charge.phase == "placing":
                charge.phase, charge.since = "igniting", now
                return Intent(yaw=self.yaw, edits=[EditRequest("ignite", *charge.pos)])
            if req.action == "ignite" and charge.phase == "igniting":
                self.lit.append(charge.pos)
                x, _, z = bot.pos
                cx, _, cz = charge.pos
                self.retreat_yaw = heading_to(x - (cx + 0.5), z - (cz + 0.5))
                self.retreat_until = now + RETREAT_S
                bot.count("retreat")
                self._end_cycle(now)
                return None
        if now - charge.since > ANSWER_TIMEOUT_S:
            self._end_cycle(now)
            return None
        return Intent(yaw=self.yaw, pitch=self.pitch)  # stand still while waiting

    def _end_cycle(self, now: float) -> None:
        self.charge = None
        self.next_charge = now + self.options.tnt_interval * self.rng.uniform(0.7, 1.3)

    def _watch_blasts(self, bot: Bot) -> None:
        world = bot.world
        if world is None or not self.lit:
            return
        still = []
        for pos in self.lit:
            block = world.get_block(*pos)
            if block is None or block == BlockId.TNT:
                still.append(pos)
            else:
                self.exploded.append(pos)
                bot.count("explosion")
        self.lit = still

    def on_edit_result(self, bot: Bot, result: EditResult) -> None:
        self._answers.append(result)
