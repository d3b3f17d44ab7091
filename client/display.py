"""Where composed frames go: a pygame window, or nowhere (headless).

The game loop is the same for both; only this object differs. A window
gives events and shows frames (scaled if the render resolution differs
from the window's); the headless display gives no events and keeps the
last frame for screenshots.
"""

from __future__ import annotations

import os
import sys

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


class DisplayUnavailable(RuntimeError):
    """No window can be opened here."""


NO_DISPLAY_HINT = (
    "no display available: run with --headless (or set SDL_VIDEODRIVER=dummy "
    "for an invisible window)"
)


def display_problem() -> str | None:
    """Why a window cannot open here, or None if it probably can."""
    if os.environ.get("SDL_VIDEODRIVER"):
        return None  # the user chose a driver (dummy, offscreen, x11, wayland...)
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return NO_DISPLAY_HINT
    return None


class HeadlessDisplay:
    """No window: a fixed size, no events; remembers the last frame presented."""

    interactive = False

    def __init__(self, width: int, height: int) -> None:
        self.size = (width, height)
        self.last: np.ndarray | None = None
        self.presented = 0

    def poll(self) -> list:
        return []

    def present(self, frame: np.ndarray) -> None:
        self.last = frame
        self.presented += 1

    def grab_pointer(self, on: bool) -> None:
        pass

    def set_title(self, title: str) -> None:
        pass

    def close(self) -> None:
        pass


class WindowDisplay:
    """A resizable pygame window."""

    interactive = True

    def __init__(self, width: int, height: int, title: str = "Shiftcraft") -> None:
        problem = display_problem()
        if problem:
            raise DisplayUnavailable(problem)
        import pygame

        self._pg = pygame
        try:
            pygame.display.init()
            self.screen = pygame.display.set_mode((width, height), pygame.RESIZABLE)
        except pygame.error as exc:
            pygame.display.quit()
            raise DisplayUnavailable(f"cannot open a window ({exc}); {NO_DISPLAY_HINT}") from None
        pygame.display.set_caption(title)
        self.size = self.screen.get_size()
        self.presented = 0
        self.events = 0
        self.resizes = 0

    def poll(self) -> list:
        pg = self._pg
        events = pg.event.get()
        self.events += len(events)
        for ev in events:
            if ev.type in (pg.VIDEORESIZE, pg.WINDOWSIZECHANGED):
                surf = pg.display.get_surface()
                if surf is not None:
                    self.screen = surf
                    size = surf.get_size()
                    if size != self.size and size[0] > 0 and size[1] > 0:
                        self.size = size
                        self.resizes += 1
        return events

    def present(self, frame: np.ndarray) -> None:
        pg = self._pg
        h, w, _ = frame.shape
        surf = pg.image.frombuffer(frame, (w, h), "RGB")
        if (w, h) == self.screen.get_size():
            self.screen.blit(surf, (0, 0))
        else:
            pg.transform.scale(surf, self.screen.get_size(), self.screen)
        pg.display.flip()
        self.presented += 1

    def grab_pointer(self, on: bool) -> None:
        pg = self._pg
        # Grab + hidden cursor puts SDL in relative mouse mode: motion keeps
        # coming when the pointer would hit the window's edge.
        pg.event.set_grab(on)
        pg.mouse.set_visible(not on)
        pg.mouse.get_rel()  # forget motion accumulated while released

    def set_title(self, title: str) -> None:
        self._pg.display.set_caption(title)

    def close(self) -> None:
        pg = self._pg
        if pg.display.get_init():
            pg.event.set_grab(False)
            pg.mouse.set_visible(True)
            pg.display.quit()
