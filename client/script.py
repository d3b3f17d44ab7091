"""A small input API for headless runs: timed actions that drive `Controls`.

A script is a list of actions run one after another on the game clock,
starting when the world around the player has loaded. Each action writes
the same `Controls` fields a keyboard and mouse would, so a scripted run
goes through exactly the game code a person's does::

    script = Script([Walk(2.0), Turn(90), Jump(), Wait(0.5), Break(), Place(), Quit()])

or, from the command line (``--script``)::

    "walk 2; turn 90; jump; wait 0.5; break; place; screenshot out.png; quit"

Angles are in degrees (scripts are written by people); ``turn 90`` turns
right, like moving the mouse right.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from client.controls import Controls


class ScriptError(ValueError):
    pass


class Action:
    """One step. ``start`` is called once; ``update`` until it returns True (done)."""

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        pass

    def update(self, ctl: Controls, now: float, hooks: ScriptHooks) -> bool:
        return True


@dataclass
class ScriptHooks:
    """What actions may ask of the game beyond the controls."""

    screenshot: Callable[[str], None] = lambda path: None
    edits_pending: Callable[[], int] = lambda: 0


@dataclass
class Wait(Action):
    seconds: float
    _until: float = field(default=0.0, init=False)

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        self._until = now + self.seconds

    def update(self, ctl: Controls, now: float, hooks: ScriptHooks) -> bool:
        return now >= self._until


@dataclass
class Walk(Wait):
    """Hold the movement axes for ``seconds`` (then release them)."""

    forward: float = 1.0
    strafe: float = 0.0
    sprint: bool = False
    jump: bool = False  # hold jump too: hop over one-block steps of terrain

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        super().start(ctl, now, hooks)
        ctl.forward, ctl.strafe, ctl.sprint = self.forward, self.strafe, self.sprint
        ctl.jump = self.jump

    def update(self, ctl: Controls, now: float, hooks: ScriptHooks) -> bool:
        if now < self._until:
            return False
        ctl.forward = ctl.strafe = 0.0
        ctl.sprint = ctl.jump = False
        return True


@dataclass
class Hold(Wait):
    """Hold jump (fly up) or sneak (fly down) for ``seconds``."""

    key: str = "jump"

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        super().start(ctl, now, hooks)
        setattr(ctl, self.key, True)

    def update(self, ctl: Controls, now: float, hooks: ScriptHooks) -> bool:
        if now < self._until:
            return False
        setattr(ctl, self.key, False)
        return True


@dataclass
class Look(Action):
    """Set the look direction (degrees); None keeps that angle."""

    yaw: float | None = None
    pitch: float | None = None

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        ctl.set_look(
            ctl.yaw if self.yaw is None else math.radians(self.yaw),
            ctl.pitch if self.pitch is None else math.radians(self.pitch),
        )


@dataclass
class Turn(Action):
    """Turn right by ``right`` degrees and up by ``up`` degrees."""

    right: float = 0.0
    up: float = 0.0

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        ctl.look(-math.radians(self.right), math.radians(self.up))


@dataclass
class Jump(Action):
    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        ctl.jump_latch = True


@dataclass
class Fly(Action):
    on: bool = True

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        ctl.fly = self.on


@dataclass
class Select(Action):
    slot: int = 0  # 0-based hotbar index

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        ctl.select(self.slot)


@dataclass
class Debug(Action):
    """Toggle the F3 overlay."""

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        ctl.debug = not ctl.debug


@dataclass
class Break(Action):
    """Break the targeted block (as a left click)."""

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        ctl.want_break = True


@dataclass
class Place(Action):
    """Place the selected block on the targeted face (as a right click)."""

    slot: int | None = None

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        if self.slot is not None:
            ctl.select(self.slot)
        ctl.want_place = True


@dataclass
class Settle(Action):
    """Wait until every edit sent has its result (at most ``timeout`` s)."""

    timeout: float = 5.0
    _until: float = field(default=0.0, init=False)
    _first: bool = field(default=True, init=False)

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        self._until = now + self.timeout
        self._first = True

    def update(self, ctl: Controls, now: float, hooks: ScriptHooks) -> bool:
        if self._first:
            # An edit requested in this same frame is sent after the script
            # runs: give the game one frame to send (and predict) it.
            self._first = False
            return False
        return hooks.edits_pending() == 0 or now >= self._until


@dataclass
class Screenshot(Action):
    """Save the frame drawn after the actions before this one (a frame boundary)."""

    path: str = "screenshot.png"
    _shot: bool = field(default=False, init=False)

    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        hooks.screenshot(self.path)
        self._shot = False

    def update(self, ctl: Controls, now: float, hooks: ScriptHooks) -> bool:
        # The game saves the shot after drawing this frame; later actions
        # start in the next one, so they do not show in it.
        done, self._shot = self._shot, True
        return done


@dataclass
class Quit(Action):
    def start(self, ctl: Controls, now: float, hooks: ScriptHooks) -> None:
        ctl.quit = True


@dataclass
class Script:
    """Runs actions in order; `update` is called once per game frame."""

    actions: Sequence[Action]
    loop: bool = False  # start over at the end (a bot that walks a path forever)
    index: int = 0
    _started: bool = field(default=False, init=False)
    hooks: ScriptHooks = field(default_factory=ScriptHooks)

    @property
    def done(self) -> bool:
        return self.index >= len(self.actions)

    def update(self, ctl: Controls, now: float) -> None:
        # Several instant actions may run in one frame; a timed one ends the frame.
        for _ in range(len(self.actions) + 1):
            if self.done:
                if not (self.loop and self.actions):
                    return
                self.index = 0
            action = self.actions[self.index]
            if not self._started:
                action.start(ctl, now, self.hooks)
                ctl.events += 1
                self._started = True
            if not action.update(ctl, now, self.hooks):
                return
            self.index += 1
            self._started = False


# -- parsing --------------------------------------------------------------------
def _f(args: list[str], i: int, default: float | None = None) -> float:
    if i < len(args):
        try:
            return float(args[i])
        except ValueError:
            raise ScriptError(f"not a number: {args[i]!r}") from None
    if default is None:
        raise ScriptError("missing number")
    return default


def _look(a: list[str]) -> Action:
    return Look(_opt(a, 0), _opt(a, 1))


def _opt(args: list[str], i: int) -> float | None:
    if i >= len(args) or args[i] in ("-", "_"):
        return None
    return _f(args, i)


PARSERS: dict[str, Callable[[list[str]], Action]] = {
    "wait": lambda a: Wait(_f(a, 0)),
    "walk": lambda a: Walk(_f(a, 0), forward=_f(a, 1, 1.0), strafe=_f(a, 2, 0.0)),
    "back": lambda a: Walk(_f(a, 0), forward=-1.0),
    "strafe": lambda a: Walk(_f(a, 0), forward=0.0, strafe=_f(a, 1, 1.0)),
    "sprint": lambda a: Walk(_f(a, 0), sprint=True),
    "hop": lambda a: Walk(_f(a, 0), sprint=True, jump=True),
    "up": lambda a: Hold(_f(a, 0), key="jump"),
    "down": lambda a: Hold(_f(a, 0), key="sneak"),
    "look": _look,
    "turn": lambda a: Turn(_f(a, 0), _f(a, 1, 0.0)),
    "jump": lambda a: Jump(),
    "fly": lambda a: Fly(not a or a[0] not in ("off", "0", "false")),
    "select": lambda a: Select(int(_f(a, 0)) - 1),
    "debug": lambda a: Debug(),
    "break": lambda a: Break(),
    "place": lambda a: Place(None if not a else int(_f(a, 0)) - 1),
    "settle": lambda a: Settle(_f(a, 0, 5.0)),
    "screenshot": lambda a: Screenshot(a[0] if a else "screenshot.png"),
    "quit": lambda a: Quit(),
}


def parse_script(text: str) -> list[Action]:
    """``"walk 2; turn 90; place; quit"`` -> actions (``;`` or newlines separate).

    Slots in ``select`` / ``place N`` are 1-based, as the keys 1-9.
    """
    actions = []
    for raw in text.replace("\n", ";").split(";"):
        words = shlex.split(raw.strip())
        if not words:
            continue
        name, args = words[0].lower(), words[1:]
        parser = PARSERS.get(name)
        if parser is None:
            raise ScriptError(f"unknown script action {name!r} (known: {', '.join(PARSERS)})")
        try:
            actions.append(parser(args))
        except ScriptError as exc:
            raise ScriptError(f"{raw.strip()!r}: {exc}") from None
    return actions
