"""What the player wants, independent of where it comes from.

`Controls` is the one state the game loop reads each frame: held movement
keys as axes, look angles, flying, the hotbar slot, and one-shot actions
(break, place, toggles). Two writers fill it through the same fields:

* `PygameInput` — keyboard and mouse events of a window;
* `client.script.Script` — timed actions of a headless run (tests, bots
  that render, device emulation).

So a headless run and a window run go through the same game code; only the
writer differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from world.blocks import BlockId
from world.physics import MoveInput

# The hotbar: what 1-9 select and right click places.
HOTBAR: tuple[int, ...] = (
    BlockId.STONE,
    BlockId.DIRT,
    BlockId.GRASS,
    BlockId.COBBLESTONE,
    BlockId.PLANKS,
    BlockId.WOOD,
    BlockId.BRICK,
    BlockId.GLASS,
    BlockId.SAND,
)

MAX_PITCH = math.pi / 2 - 1e-3
MOUSE_SENSITIVITY = 0.0025  # radians per pixel of mouse motion
DOUBLE_TAP_S = 0.3  # two space presses within this toggle flying
EDIT_REPEAT_S = 0.25  # a held mouse button repeats its edit this often


@dataclass(slots=True)
class Controls:
    # Movement axes, -1..1 (+forward, +right). Keys set them to -1/0/1, scripts to anything.
    forward: float = 0.0
    strafe: float = 0.0
    jump: bool = False
    sneak: bool = False
    sprint: bool = False
    fly: bool = False
    yaw: float = 0.0
    pitch: float = 0.0
    selected: int = 0  # hotbar index
    # One-shot requests, consumed by the game loop.
    want_break: bool = False
    want_place: bool = False
    jump_latch: bool = False  # a jump tapped between two physics steps still counts
    # Held buttons repeat their edit (EDIT_REPEAT_S).
    hold_break: bool = False
    hold_place: bool = False
    debug: bool = False  # F3
    quit: bool = False
    retry: bool = False  # reconnect now (after a failure)
    switch_render: bool = False  # F6: move rendering to the next place (local -> nodes -> local)
    pointer_grabbed: bool = False
    events: int = 0  # input events handled (window) or actions run (script)

    def look(self, dyaw: float, dpitch: float) -> None:
        self.yaw = (self.yaw + dyaw + math.pi) % (2 * math.pi) - math.pi
        self.pitch = max(-MAX_PITCH, min(MAX_PITCH, self.pitch + dpitch))

    def set_look(self, yaw: float, pitch: float) -> None:
        self.yaw = yaw
        self.pitch = max(-MAX_PITCH, min(MAX_PITCH, pitch))

    def select(self, index: int) -> None:
        self.selected = index % len(HOTBAR)

    @property
    def block(self) -> int:
        return int(HOTBAR[self.selected])

    def move_input(self) -> MoveInput:
        """The input of the next physics step (consumes the jump latch)."""
        jump = self.jump or self.jump_latch
        self.jump_latch = False
        return MoveInput(
            forward=self.forward,
            strafe=self.strafe,
            yaw=self.yaw,
            pitch=self.pitch,
            jump=jump,
            sneak=self.sneak,
            fly=self.fly,
            sprint=self.sprint,
        )


@dataclass
class PygameInput:
    """Maps pygame events to `Controls` (see docs/client.md for the bindings)."""

    controls: Controls
    sensitivity: float = MOUSE_SENSITIVITY
    _keys: set[str] = field(default_factory=set)
    _last_space: float = -1.0
    _repeat_at: float = 0.0

    def handle(self, events: list, now: float, display: object | None = None) -> None:
        """Apply this frame's events. ``display`` grabs/releases the pointer."""
        import pygame

        c = self.controls
        for ev in events:
            c.events += 1
            if ev.type == pygame.QUIT:
                c.quit = True
            elif ev.type == pygame.KEYDOWN:
                self._key_down(ev, now, display)
            elif ev.type == pygame.KEYUP:
                name = _KEY_NAMES.get(ev.key)
                if name:
                    self._keys.discard(name)
            elif ev.type == pygame.MOUSEMOTION:
                if c.pointer_grabbed:
                    dx, dy = ev.rel
                    # Moving the mouse right turns right, which *decreases* yaw.
                    c.look(-dx * self.sensitivity, -dy * self.sensitivity)
            elif ev.type == pygame.MOUSEBUTTONDOWN:
                if not c.pointer_grabbed:
                    # The click that grabs the pointer does not also edit.
                    if ev.button in (1, 3):
                        self._grab(display, True)
                    continue
                if ev.button == 1:
                    c.want_break = c.hold_break = True
                    self._repeat_at = now + EDIT_REPEAT_S
                elif ev.button == 3:
                    c.want_place = c.hold_place = True
                    self._repeat_at = now + EDIT_REPEAT_S
            elif ev.type == pygame.MOUSEBUTTONUP:
                if ev.button == 1:
                    c.hold_break = False
                elif ev.button == 3:
                    c.hold_place = False
            elif ev.type == pygame.MOUSEWHEEL:
                c.select(c.selected - ev.y)  # wheel up = previous slot, as in Minecraft
            elif ev.type == pygame.WINDOWFOCUSLOST:
                self._keys.clear()
                c.hold_break = c.hold_place = False
                self._grab(display, False)
        if (c.hold_break or c.hold_place) and now >= self._repeat_at:
            c.want_break |= c.hold_break
            c.want_place |= c.hold_place
            self._repeat_at = now + EDIT_REPEAT_S
        k = self._keys
        c.forward = float(("forward" in k) - ("back" in k))
        c.strafe = float(("right" in k) - ("left" in k))
        c.jump = "jump" in k
        c.sneak = "sneak" in k
        c.sprint = "sprint" in k

    def _key_down(self, ev: object, now: float, display: object | None) -> None:
        import pygame

        c = self.controls
        key = ev.key  # type: ignore[attr-defined]
        mods = ev.mod  # type: ignore[attr-defined]
        if key == pygame.K_q and mods & pygame.KMOD_CTRL:
            c.quit = True
            return
        if key == pygame.K_ESCAPE:
            self._grab(display, False)
            return
        if key == pygame.K_F3:
            c.debug = not c.debug
            return
        if key == pygame.K_F6:
            c.switch_render = True  # the game hands it to the migration controller
            return
        if key == pygame.K_f:
            c.fly = not c.fly
            return
        if key == pygame.K_r:
            c.retry = True
        if pygame.K_1 <= key <= pygame.K_9:
            c.select(key - pygame.K_1)
            return
        name = _KEY_NAMES.get(key)
        if name is None:
            return
        if name == "jump" and "jump" not in self._keys:
            c.jump_latch = True
            if now - self._last_space < DOUBLE_TAP_S:
                c.fly = not c.fly
                self._last_space = -1.0
            else:
                self._last_space = now
        self._keys.add(name)

    def _grab(self, display: object | None, on: bool) -> None:
        self.controls.pointer_grabbed = on
        if display is not None and hasattr(display, "grab_pointer"):
            display.grab_pointer(on)


def _key_names() -> dict[int, str]:
    try:
        import pygame
    except ImportError:  # pragma: no cover - pygame is a dependency
        return {}
    return {
        pygame.K_w: "forward",
        pygame.K_UP: "forward",
        pygame.K_s: "back",
        pygame.K_DOWN: "back",
        pygame.K_a: "left",
        pygame.K_LEFT: "left",
        pygame.K_d: "right",
        pygame.K_RIGHT: "right",
        pygame.K_SPACE: "jump",
        pygame.K_LSHIFT: "sneak",
        pygame.K_RSHIFT: "sneak",
        pygame.K_LCTRL: "sprint",
        pygame.K_RCTRL: "sprint",
    }


_KEY_NAMES: dict[int, str] = _key_names()
