"""The HUD: drawn by the client over whatever frame the display source made.

It draws straight into an ``uint8[H, W, 3]`` frame (a pygame surface wraps
the same memory for text), so it is the same in local mode (a rendered
frame) and remote mode (a decoded video frame), in a window and in headless
screenshots. It needs pygame's font module only — no display, no renderer.

What it shows: crosshair, hotbar with block swatches and the selection,
FPS, RTT, rendering mode and node (with the
switch in progress), position, a status line (reconnecting...), and
with F3 a debug panel. A *banner* (centre, large) says what keeps the game
from running: compiling the renderer, loading the world, why it cannot
connect.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from world.blocks import BLOCKS

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

WHITE = (255, 255, 255)
YELLOW = (255, 220, 90)
RED = (255, 110, 100)
GREY = (200, 200, 200)


@dataclass(slots=True)
class HudState:
    mode: str = "local"
    node: str = ""  # remote: the render node's name; "a -> b" while switching
    fps: float = 0.0
    rtt_ms: float | None = None
    pos: tuple[float, float, float] | None = None
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    hotbar: Sequence[int] = ()
    selected: int = 0
    status: str | None = None  # one highlighted line under the stats (e.g. reconnecting)
    status_color: tuple[int, int, int] = YELLOW
    banner: list[str] = field(default_factory=list)  # big centred lines
    banner_color: tuple[int, int, int] = WHITE
    debug: list[str] | None = None  # F3 lines
    crosshair: bool = True


def _swatch(block: int, size: int) -> np.ndarray:
    """An ``uint8[size, size, 3]`` tile of a block: its colour, speckled and bevelled."""
    base = np.array(BLOCKS.color[block], dtype=np.float32)
    rng = np.random.default_rng(block * 7919 + 1)
    tex = 0.82 + 0.3 * rng.random((8, 8), dtype=np.float32)
    tex[0, :] *= 1.2  # light from the top left
    tex[:, 0] *= 1.1
    tex[-1, :] *= 0.7
    tex[:, -1] *= 0.8
    rep = max(1, -(-size // 8))
    big = np.kron(tex, np.ones((rep, rep), dtype=np.float32))[:size, :size]
    return np.clip(big[..., None] * base, 0, 255).astype(np.uint8)


class Hud:
    """Draws a `HudState` onto frames; caches fonts, text and swatches."""

    def __init__(self) -> None:
        import pygame

        if not pygame.font.get_init():
            pygame.font.init()
        self._pg = pygame
        self._fonts: dict[int, object] = {}
        self._text: OrderedDict[tuple, object] = OrderedDict()
        self._swatches: dict[tuple[int, int], np.ndarray] = {}

    # -- text -----------------------------------------------------------------------
    def _font(self, size: int):
        f = self._fonts.get(size)
        if f is None:
            f = self._fonts[size] = self._pg.font.Font(None, size)
        return f

    def _render(self, text: str, size: int, color: tuple[int, int, int]):
        key = (text, size, color)
        surf = self._text.get(key)
        if surf is None:
            surf = self._font(size).render(text, True, color)
            self._text[key] = surf
            if len(self._text) > 512:  # numbers change every frame: keep it bounded
                self._text.popitem(last=False)
        else:
            self._text.move_to_end(key)
        return surf

    # -- drawing --------------------------------------------------------------------
    def draw(self, frame: np.ndarray, state: HudState) -> np.ndarray:
        """Draw ``state`` onto ``frame`` (in place) and return it."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError("frame must be uint8[H, W, 3]")
        if not frame.flags.c_contiguous:
            raise ValueError("frame must be C-contiguous")
        h, w, _ = frame.shape
        surface = self._pg.image.frombuffer(frame, (w, h), "RGB")  # shares frame's memory
        size = max(10, round(h / 30))
        if state.crosshair and not state.banner:
            self._crosshair(frame)
        if state.hotbar:
            self._hotbar(frame, state.hotbar, state.selected)
        lines: list[tuple[str, tuple[int, int, int]]] = []
        rtt = "-" if state.rtt_ms is None else f"{state.rtt_ms:.0f} ms"
        where = f"{state.mode} {state.node}" if state.node else state.mode
        lines.append((f"{state.fps:.0f} fps   rtt {rtt}   {where}", WHITE))
        if state.pos is not None:
            x, y, z = state.pos
            lines.append((f"x {x:.1f}  y {y:.1f}  z {z:.1f}", WHITE))
        if state.status:
            lines.append((state.status, state.status_color))
        if state.debug:
            lines.extend((line, GREY) for line in state.debug)
        self._panel(frame, surface, lines, size, 4, 4)
        if state.banner:
            self._banner(frame, surface, state.banner, max(12, round(h / 16)), state.banner_color)
        return frame

    def _panel(
        self,
        frame: np.ndarray,
        surface: object,
        lines: list[tuple[str, tuple[int, int, int]]],
        size: int,
        x: int,
        y: int,
    ) -> None:
        surfs = [self._render(text, size, color) for text, color in lines]
        if not surfs:
            return
        pad = max(2, size // 5)
        width = max(s.get_width() for s in surfs) + 2 * pad
        height = sum(s.get_height() for s in surfs) + 2 * pad
        self._darken(frame, x, y, width, height)
        cy = y + pad
        for s in surfs:
            surface.blit(s, (x + pad, cy))  # type: ignore[attr-defined]
            cy += s.get_height()

    def _banner(
        self,
        frame: np.ndarray,
        surface: object,
        lines: list[str],
        size: int,
        color: tuple[int, int, int],
    ) -> None:
        h, w, _ = frame.shape
        surfs = [self._render(text, size, color) for text in lines]
        # Shrink lines too wide for the frame (small windows, long errors).
        while size > 8 and max(s.get_width() for s in surfs) > w - 8:
            size -= 2
            surfs = [self._render(text, size, color) for text in lines]
        total = sum(s.get_height() for s in surfs)
        width = max(s.get_width() for s in surfs)
        pad = max(3, size // 3)
        x0 = max(0, (w - width) // 2 - pad)
        y0 = max(0, (h - total) // 2 - pad)
        self._darken(frame, x0, y0, width + 2 * pad, total + 2 * pad, strength=2)
        cy = (h - total) // 2
        for s in surfs:
            surface.blit(s, ((w - s.get_width()) // 2, cy))  # type: ignore[attr-defined]
            cy += s.get_height()

    @staticmethod
    def _darken(frame: np.ndarray, x: int, y: int, w: int, h: int, strength: int = 1) -> None:
        region = frame[max(0, y) : y + h, max(0, x) : x + w]
        np.right_shift(region, strength, out=region)

    @staticmethod
    def _crosshair(frame: np.ndarray) -> None:
        h, w, _ = frame.shape
        arm = max(3, h // 60)
        t = max(1, h // 360)
        cy, cx = h // 2, w // 2
        # Inverted pixels stay visible on sky, snow and stone alike.
        horiz = frame[cy - t // 2 : cy - t // 2 + t, cx - arm : cx + arm + 1]
        np.subtract(255, horiz, out=horiz)
        up = frame[cy - arm : cy - t // 2, cx - t // 2 : cx - t // 2 + t]
        np.subtract(255, up, out=up)
        down = frame[cy - t // 2 + t : cy + arm + 1, cx - t // 2 : cx - t // 2 + t]
        np.subtract(255, down, out=down)

    def _hotbar(self, frame: np.ndarray, blocks: Sequence[int], selected: int) -> None:
        h, w, _ = frame.shape
        n = len(blocks)
        slot = max(8, min(h // 11, (w - 8) // n))
        border = max(1, slot // 12)
        total = slot * n
        x0 = (w - total) // 2
        y0 = h - slot - max(2, h // 60)
        if x0 < 0 or y0 < 0:
            return
        self._darken(frame, x0, y0, total, slot)
        inner = slot - 4 * border
        for i, block in enumerate(blocks):
            sx = x0 + i * slot
            if inner > 0:
                key = (int(block), inner)
                sw = self._swatches.get(key)
                if sw is None:
                    sw = self._swatches[key] = _swatch(int(block), inner)
                iy, ix = y0 + 2 * border, sx + 2 * border
                frame[iy : iy + inner, ix : ix + inner] = sw
            if i == selected:
                c = np.array(WHITE, dtype=np.uint8)
                frame[y0 : y0 + border, sx : sx + slot] = c
                frame[y0 + slot - border : y0 + slot, sx : sx + slot] = c
                frame[y0 : y0 + slot, sx : sx + border] = c
                frame[y0 : y0 + slot, sx + slot - border : sx + slot] = c
