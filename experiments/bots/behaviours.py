"""What bots do: one small class per behaviour, found by name in `BEHAVIOURS`.

A behaviour turns the bot's authoritative state into one `Intent` per input
frame (20 Hz): movement, look direction, and any edit requests. It never
touches the network. To add one, subclass `Behaviour`, set ``name``,
implement `step`, and decorate it with `register`; declare ``needs_world``
/ ``needs_entities`` when it reads the world replica or other players, so
bots that do not need them skip that work.

The names follow the benchmark literature (Yardstick, the AtLarge MVE
studies): this module has ``idle``, ``walk`` and ``walk-modify`` (alias
``build``); ``explore``, ``follow``, ``tnt`` and ``replay`` live in their own
modules next to this one and register themselves when the package loads.
"""

from __future__ import annotations

import abc
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from world.blocks import BLOCKS, BlockId
from world.physics import EYE_HEIGHT, HALF_WIDTH, PLAYER_HEIGHT, WALK_SPEED

if TYPE_CHECKING:
    from experiments.bots.bot import Bot

TAU = 2.0 * math.pi


@dataclass(slots=True)
class EditRequest:
    action: str  # "place" | "break" | "ignite"
    x: int
    y: int
    z: int
    block: int = 0

    @property
    def pos(self) -> tuple[int, int, int]:
        return (self.x, self.y, self.z)


@dataclass(slots=True)
class EditResult:
    """The server's answer to one of our `EditRequest`s."""

    request: EditRequest
    ok: bool
    block_now: int  # the true block at the target after the edit (or its refusal)
    reason: str
    latency_s: float


@dataclass(slots=True)
class Intent:
    """One input frame's worth of decisions.

    ``frames`` is for behaviours that already have exact frames (``replay``):
    each ``[dt, forward, strafe, yaw, pitch, flags]`` is sent as is, in one
    message, instead of the frame the other fields describe.
    """

    forward: float = 0.0
    strafe: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    jump: bool = False
    sneak: bool = False
    fly: bool = False
    sprint: bool = False
    edits: list[EditRequest] = field(default_factory=list)
    frames: list[list] | None = None


@dataclass(slots=True)
class BehaviourOptions:
    """Knobs of all behaviours (the CLI and scenario bot groups set them)."""

    box: float = 16.0  # half-size in blocks of the square around spawn that walkers keep to
    edit_interval: float = 1.0  # mean seconds between edits (walk-modify)
    reach: float = 4.5  # blocks from the eye to a target's centre; the server allows 6
    max_placed: int = 8  # walk-modify: own blocks standing before it prefers breaking
    # walk: the occasional long trip out of the box and back. The first comes
    # no sooner than `trip_after` s after joining, then one every ~`trip_every` s
    # (exponential gaps; 0 = never).
    trip_every: float = 120.0
    trip_after: float = 30.0
    trip_distance: float = 64.0  # blocks from the box centre
    heading: float | None = None  # explore: degrees (0 = +z, 90 = +x); None = random per bot
    target: str = ""  # follow: the player's name; "" = the nearest player
    follow_distance: float = 3.0  # follow: blocks; closer than this it stops
    tnt_interval: float = 10.0  # tnt: seconds of walking between two charges
    trace: str = ""  # replay: the JSONL trace (``{name}`` is replaced by the bot's name)
    loop: bool = False  # replay: start over at the end of the trace (else stand still)


class Behaviour(abc.ABC):
    """Base class. One instance per bot, with the bot's own seeded RNG.

    Subclasses must say what the bot does each frame (`step`); the other
    hooks are optional and do nothing here."""

    name: ClassVar[str] = ""
    needs_world: ClassVar[bool] = False  # keep a replica of received sections
    needs_entities: ClassVar[bool] = False  # track other players' positions

    def __init__(self, rng: random.Random, options: BehaviourOptions) -> None:
        self.rng = rng
        self.options = options

    @classmethod  # noqa: B027 - an optional hook
    def prepare(cls, options: BehaviourOptions, names: list[str]) -> None:
        """Check and load what the bots named ``names`` will need, before any joins.

        Raise ValueError with a sentence (a missing trace file) so a run fails
        at once instead of bot by bot after joining.
        """

    def start(self, bot: Bot) -> None:  # noqa: B027 - an optional hook
        """Called once after welcome; ``bot.pos`` is the spawn position."""

    @abc.abstractmethod
    def step(self, bot: Bot, now: float, dt: float) -> Intent:
        """The next input frame. ``now`` is loop time, ``dt`` the time it covers."""

    def on_edit_result(self, bot: Bot, result: EditResult) -> None:  # noqa: B027 - optional
        """The server acknowledged or refused one of our edits."""

    def report(self) -> dict[str, float]:
        """Numbers for the run summary (``*_max`` keys are maxed over bots, others summed)."""
        return {}


BEHAVIOURS: dict[str, type[Behaviour]] = {}


def register(cls: type[Behaviour]) -> type[Behaviour]:
    if not cls.name or cls.name in BEHAVIOURS:
        raise ValueError(f"behaviour name {cls.name!r} is empty or taken")
    BEHAVIOURS[cls.name] = cls
    return cls


def alias(name: str, cls: type[Behaviour]) -> None:
    """Another name for a registered behaviour (old scripts keep working)."""
    if name in BEHAVIOURS:
        raise ValueError(f"behaviour name {name!r} is taken")
    BEHAVIOURS[name] = cls


def wrap_angle(angle: float) -> float:
    """Angle in (-pi, pi]."""
    return (angle + math.pi) % TAU - math.pi


def heading_to(dx: float, dz: float) -> float:
    """The yaw that faces along (dx, dz): yaw 0 looks towards +z, pi/2 towards +x."""
    return math.atan2(dx, dz)


class Steering:
    """Turning at a finite rate and getting unstuck, shared by the moving behaviours.

    Turning gradually makes yaw change on most frames, as a player's mouse
    does. Stuck detection runs on the authoritative position: walking but
    barely moving means a step or a wall, so jump (`want_jump`); a
    ``slow_for`` that keeps growing means jumping does not help, and the
    behaviour decides what to do instead (turn away, fly over).
    """

    TURN_RATE = 3.0  # rad/s
    STUCK_SPEED = 0.3 * WALK_SPEED  # below this while walking: try jumping

    def __init__(self, yaw: float = 0.0) -> None:
        self.yaw = yaw
        self.slow_for = 0.0
        self._last_pos: tuple[float, float, float] | None = None

    def turn(self, target: float, dt: float) -> float:
        turn = wrap_angle(target - self.yaw)
        max_turn = self.TURN_RATE * dt
        self.yaw = wrap_angle(self.yaw + max(-max_turn, min(max_turn, turn)))
        return self.yaw

    def track(self, pos: tuple[float, float, float], dt: float, walking: bool) -> None:
        """Update how long we have been walking without getting anywhere."""
        speed = 0.0
        if self._last_pos is not None and dt > 0:
            speed = math.hypot(pos[0] - self._last_pos[0], pos[2] - self._last_pos[2]) / dt
        self._last_pos = pos
        self.slow_for = self.slow_for + dt if walking and speed < self.STUCK_SPEED else 0.0

    def want_jump(self, bot: Bot) -> bool:
        return bot.on_ground and self.slow_for > 0.25


@register
class Idle(Behaviour):
    """Stands where it spawned and now and then looks around (an AFK player).

    It still sends an input frame every tick with no movement, as a real
    client does, so it costs the server what an idle player costs.
    """

    name = "idle"

    def __init__(self, rng: random.Random, options: BehaviourOptions) -> None:
        super().__init__(rng, options)
        self.yaw = 0.0
        self.pitch = 0.0
        self.next_look = 0.0

    def start(self, bot: Bot) -> None:
        self.yaw = self.rng.uniform(-math.pi, math.pi)

    def step(self, bot: Bot, now: float, dt: float) -> Intent:
        if now >= self.next_look:
            self.yaw = wrap_angle(self.yaw + self.rng.uniform(-1.0, 1.0))
            self.pitch = self.rng.uniform(-0.4, 0.3)
            self.next_look = now + self.rng.uniform(2.0, 6.0)
            bot.count("look")
        return Intent(yaw=self.yaw, pitch=self.pitch)


@register
class Walk(Behaviour):
    """A bounded random walk around spawn, with occasional long trips.

    Walks forward while the heading drifts: a new target heading every 1–4 s,
    turned towards at a finite rate. Near the edge of the box it heads back
    towards the centre; it jumps when blocked (a step or a wall) and now and
    then for no reason, and pauses briefly from time to time.

    Now and then (``trip_every``) it leaves the box for a point
    ``trip_distance`` away and comes back: real players wander off, and a
    trip makes the server stream sections the box never needs.
    """

    name = "walk"

    def __init__(self, rng: random.Random, options: BehaviourOptions) -> None:
        super().__init__(rng, options)
        self.center = (0.0, 0.0)
        self.steer = Steering()
        self.target_yaw = 0.0
        self.pitch = 0.0
        self.next_turn = 0.0
        self.pause_until = 0.0
        self.next_trip: float | None = None
        self.trip: tuple[float, float] | None = None  # where the current trip goes
        self.trip_deadline = 0.0

    @property
    def yaw(self) -> float:
        return self.steer.yaw

    def start(self, bot: Bot) -> None:
        self.center = (bot.spawn[0], bot.spawn[2])
        self.steer.yaw = self.target_yaw = self.rng.uniform(-math.pi, math.pi)
        self.pitch = self.rng.uniform(-0.3, 0.1)

    def _schedule_trip(self, now: float, first: bool) -> None:
        o = self.options
        if o.trip_every <= 0:
            self.next_trip = math.inf
            return
        self.next_trip = (
            now + (o.trip_after if first else 0.0) + self.rng.expovariate(1.0 / o.trip_every)
        )

    def _heading(self, bot: Bot, now: float) -> None:
        """Choose ``target_yaw``: the trip, the way back into the box, or a drift."""
        rng = self.rng
        x, _, z = bot.pos
        if self.next_trip is None:
            self._schedule_trip(now, first=True)
        if self.trip is None and now >= self.next_trip:  # type: ignore[operator]
            angle = rng.uniform(-math.pi, math.pi)
            d = self.options.trip_distance
            self.trip = (self.center[0] + d * math.sin(angle), self.center[1] + d * math.cos(angle))
            # Generous: jumps and detours; a trip that cannot arrive ends anyway.
            self.trip_deadline = now + 3.0 * d / WALK_SPEED + 10.0
            bot.count("trip")
        if self.trip is not None:
            tx, tz = self.trip
            if math.hypot(tx - x, tz - z) < 2.0 or now >= self.trip_deadline:
                self.trip = None  # arrived: the box logic below brings it home
                self._schedule_trip(now, first=False)
            else:
                self.target_yaw = heading_to(tx - x, tz - z)
                self.pause_until = 0.0
                return
        dx, dz = self.center[0] - x, self.center[1] - z
        # Turn back a little inside the edge: at walking speed and 3 rad/s a
        # U-turn takes ~1 s, so the walker overshoots the turning line by ~2 blocks.
        edge = max(1.0, self.options.box - 3.0)
        if abs(dx) > edge or abs(dz) > edge:
            self.target_yaw = heading_to(dx, dz) + rng.uniform(-0.4, 0.4)
            self.next_turn = now + rng.uniform(0.5, 1.5)
        elif now >= self.next_turn:
            self.target_yaw = self.yaw + rng.uniform(-1.5, 1.5)
            self.next_turn = now + rng.uniform(1.0, 4.0)
            bot.count("turn")
            if rng.random() < 0.08:
                self.pause_until = now + rng.uniform(0.5, 2.0)

    def step(self, bot: Bot, now: float, dt: float) -> Intent:
        rng = self.rng
        self._heading(bot, now)
        yaw = self.steer.turn(self.target_yaw, dt)
        self.pitch = max(-0.6, min(0.4, self.pitch + rng.uniform(-0.02, 0.02)))
        walking = now >= self.pause_until
        steer = self.steer
        steer.track(bot.pos, dt, walking)
        jump = walking and (steer.want_jump(bot) or (bot.on_ground and rng.random() < 0.005))
        if steer.slow_for > 1.5:  # jumping did not help: pick another way
            self.target_yaw = yaw + math.pi + rng.uniform(-1.0, 1.0)
            steer.slow_for = 0.0
            if self.trip is not None:  # a wall on the way: give this trip up
                self.trip = None
                self._schedule_trip(now, first=False)
        return Intent(forward=1.0 if walking else 0.0, yaw=yaw, pitch=self.pitch, jump=jump)


# Blocks builders place: solid, not falling (so "placed" stays where it was put).
BUILD_BLOCKS = (
    BlockId.PLANKS,
    BlockId.BRICK,
    BlockId.GLASS,
    BlockId.COBBLESTONE,
    BlockId.STONE,
    BlockId.WOOD,
)


@register
class WalkModify(Walk):
    """Walks (as `Walk`) and about once per `edit_interval` places or breaks a block.

    Targets come from the bot's replica and its authoritative position: a
    placement goes on top of the highest solid block of a nearby column,
    within reach and clear of the bot's own body; a break takes one of the
    bot's own acknowledged blocks still in reach (so the world around spawn
    does not get dug away), or a natural surface block when it has none.
    """

    name = "walk-modify"
    needs_world = True

    def __init__(self, rng: random.Random, options: BehaviourOptions) -> None:
        super().__init__(rng, options)
        self.next_edit: float | None = None
        self.placed: list[tuple[int, int, int, int]] = []  # acknowledged: x, y, z, block

    def step(self, bot: Bot, now: float, dt: float) -> Intent:
        intent = super().step(bot, now, dt)
        if self.next_edit is None:  # first frame: desynchronise bots that joined together
            self.next_edit = now + self.rng.uniform(0.2, 1.0) * self.options.edit_interval
        if now < self.next_edit:
            return intent
        request = self.choose_edit(bot)
        if request is not None:
            intent.edits.append(request)
        self.next_edit = now + self.options.edit_interval * self.rng.uniform(0.6, 1.4)
        return intent

    # -- target selection ---------------------------------------------------------
    def choose_edit(self, bot: Bot) -> EditRequest | None:
        world = bot.world
        if world is None or not len(world):
            return None
        x, y, z = bot.pos
        eye = (x, y + EYE_HEIGHT, z)
        reach = self.options.reach
        self.placed = [p for p in self.placed if dist2(eye, p) <= (3 * reach) ** 2]
        own = [
            p for p in self.placed if dist2(eye, p) <= reach**2 and world.get_block(*p[:3]) == p[3]
        ]
        prefer_break = len(self.placed) >= self.options.max_placed or self.rng.random() < 0.4
        if own and prefer_break:
            px, py, pz, _ = self.rng.choice(own)
            return EditRequest("break", px, py, pz)
        target = self._placement(bot, eye)
        if target is not None:
            return EditRequest("place", *target, block=int(self.rng.choice(BUILD_BLOCKS)))
        if own:
            px, py, pz, _ = self.rng.choice(own)
            return EditRequest("break", px, py, pz)
        return self._natural_break(bot, eye)

    def _placement(self, bot: Bot, eye: tuple[float, float, float]) -> tuple[int, int, int] | None:
        assert bot.world is not None
        return find_placement(bot.world, bot.pos, self.rng, self.options.reach)

    def _natural_break(self, bot: Bot, eye: tuple[float, float, float]) -> EditRequest | None:
        world = bot.world
        assert world is not None
        x, y, z = bot.pos
        fx, fy, fz = math.floor(x), math.floor(y), math.floor(z)
        for _ in range(8):
            bx = fx + self.rng.randint(-3, 3)
            bz = fz + self.rng.randint(-3, 3)
            if abs(bx + 0.5 - x) < 1.5 and abs(bz + 0.5 - z) < 1.5:
                continue  # not the ground we stand on
            top = column_top(world, bx, fy + 2, fy - 4, bz)
            if top is None:
                continue
            block = world.get_block(bx, top, bz)
            if block is None or not BLOCKS.get(block).breakable:
                continue
            if dist2(eye, (bx, top, bz)) <= self.options.reach**2:
                return EditRequest("break", bx, top, bz)
        return None

    def on_edit_result(self, bot: Bot, result: EditResult) -> None:
        req = result.request
        if not result.ok:
            return
        if req.action == "place":
            self.placed.append((req.x, req.y, req.z, req.block))
        elif req.action == "break":
            self.placed = [p for p in self.placed if p[:3] != req.pos]


# The behaviour's first name here; the literature's is walk-modify.
Build = WalkModify
alias("build", WalkModify)


def find_placement(
    world,
    pos: tuple[float, float, float],
    rng: random.Random,
    reach: float,
    spread: int = 3,
    min_distance: float = 0.0,
) -> tuple[int, int, int] | None:
    """A free spot on top of a nearby column, in reach and clear of the body; None if none.

    Tries a few random columns within ``spread`` blocks (horizontally at
    least ``min_distance`` from the body's centre) rather than scanning all:
    cheap, and different bots pick different spots.
    """
    x, y, z = pos
    fx, fy, fz = math.floor(x), math.floor(y), math.floor(z)
    eye = (x, y + EYE_HEIGHT, z)
    reach2 = reach**2
    for _ in range(8):
        bx = fx + rng.randint(-spread, spread)
        bz = fz + rng.randint(-spread, spread)
        if math.hypot(bx + 0.5 - x, bz + 0.5 - z) < min_distance:
            continue
        top = column_top(world, bx, fy + 2, fy - 4, bz)
        if top is None:
            continue
        target = (bx, top + 1, bz)
        above = world.get_block(*target)
        if above is None or not BLOCKS.replaceable[above]:
            continue
        if dist2(eye, target) > reach2 or near_body(pos, target):
            continue
        return target
    return None


def dist2(eye: tuple[float, float, float], block: tuple[int, ...]) -> float:
    """Squared distance from the eye to the centre of a block."""
    return (
        (block[0] + 0.5 - eye[0]) ** 2
        + (block[1] + 0.5 - eye[1]) ** 2
        + (block[2] + 0.5 - eye[2]) ** 2
    )


def column_top(world, x: int, y_from: int, y_to: int, z: int) -> int | None:
    """The highest solid block scanning ``y_from`` down to ``y_to``; None if unknown or none."""
    for y in range(y_from, y_to - 1, -1):
        block = world.get_block(x, y, z)
        if block is None:
            return None
        if BLOCKS.solid[block]:
            return y
    return None


def near_body(pos: tuple[float, float, float], block: tuple[int, int, int]) -> bool:
    """Would the block touch the bot's body, with a margin for where it will be next tick?"""
    margin = 0.5  # ~2 ticks of walking
    x, y, z = pos
    bx, by, bz = block
    return (
        x - HALF_WIDTH - margin < bx + 1
        and x + HALF_WIDTH + margin > bx
        and y - margin < by + 1
        and y + PLAYER_HEIGHT + margin > by
        and z - HALF_WIDTH - margin < bz + 1
        and z + HALF_WIDTH + margin > bz
    )
