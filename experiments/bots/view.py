"""What a bot sees: nothing (load bots), or its own rendered view (``--render local``).

A rendering bot stands in for a player whose device renders: it keeps the
game client's `WorldReplica` and draws its camera with the client's own
`LocalRenderSource` (the same renderer, world view and incremental section
mirroring as ``shiftcraft play``), at a small resolution and a capped frame
rate, so it costs the device — and the experiment — what a player's local
rendering costs, without a window.

Extension point: a view is anything with the `BotView` shape, registered in
`VIEWS` under the name ``--render`` takes. A streamed view (``remote``) would
keep no replica (``attach`` returns None), open the stream of
`client.remote` to a render node in ``attach``, send the bot's input frames
to it, and count decoded frames in ``render``; the bot and runner stay as
they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from client.replica import WorldReplica
    from experiments.bots.bot import Bot


@dataclass(slots=True)
class ViewOptions:
    width: int = 160
    height: int = 90
    fps: float = 10.0  # frames a second at most; 0 = every input frame (20 Hz)
    view_distance: int = 64  # blocks; capped by the server's
    threads: int = 1  # renderer threads per bot: many bots share few cores


@dataclass(slots=True)
class ViewStats:
    frames: int = 0
    render_ms: list[float] = field(default_factory=list)


class BotView(Protocol):
    mode: str
    stats: ViewStats

    def attach(self, bot: Bot) -> WorldReplica | None:
        """At welcome. Returns the replica the bot must feed, or None for none."""
        ...

    def due(self, now: float) -> bool:
        """Whether a frame is due at ``now`` (loop time)."""
        ...

    def render(self, bot: Bot, now: float) -> None: ...

    def close(self) -> None: ...


class LocalView:
    """The client's local rendering path, driven by the bot's pose."""

    mode = "local"

    def __init__(self, options: ViewOptions) -> None:
        self.options = options
        self.stats = ViewStats()
        self.source = None
        self._next = 0.0

    def attach(self, bot: Bot) -> WorldReplica:
        from client.replica import WorldReplica
        from client.sources import LocalRenderSource

        o = self.options
        conn = bot.conn
        server_vd = conn.welcome.view_distance if conn is not None else o.view_distance
        replica = WorldReplica()
        self.source = LocalRenderSource(
            replica,
            o.width,
            o.height,
            view_distance=max(16, min(o.view_distance, server_vd or o.view_distance)),
            threads=o.threads,
        )
        return replica

    def due(self, now: float) -> bool:
        return self.source is not None and now >= self._next

    def render(self, bot: Bot, now: float) -> None:
        from client.sources import Scene
        from world.physics import EYE_HEIGHT

        assert self.source is not None
        x, y, z = bot.pos
        t0 = time.perf_counter()
        self.source.frame(Scene(x, y + EYE_HEIGHT, z, bot.yaw, bot.pitch))
        self.stats.render_ms.append((time.perf_counter() - t0) * 1000.0)
        self.stats.frames += 1
        fps = self.options.fps
        # Deadline-based pacing, but never a burst of catch-up frames.
        self._next = max(self._next + 1.0 / fps, now) if fps > 0 else now

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None


ViewFactory = Callable[[ViewOptions], BotView | None]

VIEWS: dict[str, ViewFactory] = {
    "none": lambda options: None,
    "local": LocalView,
}


def prepare(mode: str, progress: Callable[[str], None] | None = None) -> float:
    """Ready what a view mode needs once per process (compile the renderer); seconds."""
    if mode not in VIEWS:
        raise ValueError(f"unknown render mode {mode!r}; known: {', '.join(VIEWS)}")
    if mode != "local":
        return 0.0
    from client.sources import warm_up_renderer

    return warm_up_renderer(progress)
