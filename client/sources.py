"""Display sources: where the picture under the HUD comes from.

The game loop asks its source for a frame each time it draws, handing it a
`Scene` (camera pose, other players, targeted block). A source returns an
``uint8[H, W, 3]`` frame, or None when it has nothing new to show — the
loop then keeps showing the previous one (that is also how a remote video
source behaves between decoded frames).

* `LocalRenderSource`: the client's own `renderer.Renderer` over a
  `renderer.WorldView` that mirrors the `WorldReplica` incrementally.
* `client.remote.RemoteSource`: the newest decoded WebRTC frame from a
  render node; it ignores most of the scene and takes the game's input
  frames and sim state instead (`FrameSource.send_inputs`/`send_state`),
  its crosshair block from the node (`target_hit`). The HUD, input and the
  loop stay the same; sources that draw here answer those calls with
  `DrawnHere`'s defaults.
* `SolidSource`: a flat colour, before any other exists.

The migration controller holds two sources at once while it switches,
which is why a source owns everything it needs and can be closed on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from client.replica import WorldReplica
from world.raycast import RayHit

ProgressFn = Callable[[str], None]


@dataclass(slots=True)
class Scene:
    """What a source needs to know to draw the player's view."""

    x: float  # eye position
    y: float
    z: float
    yaw: float
    pitch: float
    fov_deg: float = 70.0
    avatars: Sequence[tuple] = ()  # (x, y, z, yaw) feet positions of other players
    target: tuple[int, int, int] | None = None  # block to outline
    seq: int = -1  # newest input frame this scene reflects (for remote latency stamps)


class FrameSource(Protocol):
    mode: str  # shown in the HUD and reported in telemetry: "local", "remote", ...
    render_ms: float  # the last frame's render time on this device (0: it renders none)

    @property
    def size(self) -> tuple[int, int]: ...
    def resize(self, width: int, height: int) -> None: ...
    def frame(self, scene: Scene) -> np.ndarray | None: ...
    async def frame_async(self, scene: Scene) -> np.ndarray | None:
        """`frame`, with any rendering off the event loop (what the game calls)."""
        ...

    async def wait_frame(self, timeout: float) -> None:
        """Return after ``timeout``, or sooner once a new frame is there to show."""
        ...

    def debug_lines(self) -> list[str]: ...
    def close(self) -> None: ...
    async def aclose(self) -> None:
        """`close`, waiting for any goodbye (a stream tells its node first)."""
        ...

    # What a picture drawn elsewhere needs from the game, and tells it back;
    # a source drawing on this device answers with `DrawnHere`'s defaults.
    @property
    def error(self) -> Exception | None:
        """Why the source failed for good (None: it did not)."""
        ...

    @property
    def status(self) -> str | None:
        """Its state in words for the HUD, while it has something to say."""
        ...

    def send_inputs(self, frames: Sequence[Sequence[Any]]) -> bool:
        """Input frames for whoever draws the picture; False: nobody else does."""
        ...

    def send_state(
        self, ack: int, pos: Sequence[float], vel: Sequence[float], on_ground: bool, flying: bool
    ) -> bool:
        """The sim's authoritative body after input ``ack``, for the same."""
        ...

    def target_hit(self) -> RayHit | None:
        """The block under the crosshair as the drawer saw it (None: the game aims itself)."""
        ...


class DrawnHere:
    """The `FrameSource` answers of a source that draws on this device: no
    one to forward input or state to, no remote failure, no crosshair but
    the game's own."""

    error: Exception | None = None
    status: str | None = None

    def send_inputs(self, frames: Sequence[Sequence[Any]]) -> bool:
        return False

    def send_state(
        self, ack: int, pos: Sequence[float], vel: Sequence[float], on_ground: bool, flying: bool
    ) -> bool:
        return False

    def target_hit(self) -> RayHit | None:
        return None

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        self.close()


def warm_up_renderer(progress: ProgressFn | None = None) -> float:
    """Compile (first start) or load the cached renderer kernel."""
    import renderer

    return renderer.warm_up(progress)


@dataclass
class SinkCounters:
    sections_set: int = 0
    sections_cleared: int = 0
    blocks_set: int = 0


class LocalRenderSource(DrawnHere):
    """Renders the replica with the shared renderer (local rendering mode).

    It is the replica's sink: every section and block change goes straight
    into the `WorldView` (a block edit touches one voxel, never a rebuild).
    The view is a window around the camera; when the camera crosses into
    another section column the window moves and the sections that came
    into it are pushed from the replica.
    """

    mode = "local"

    def __init__(
        self,
        replica: WorldReplica,
        width: int,
        height: int,
        view_distance: int = 96,
        threads: int | None = None,
        *,
        fill: bool = True,
    ) -> None:
        from renderer import Renderer, WorldView

        self.view_distance = int(view_distance)
        self.view = WorldView(radius=self.view_distance)
        self.renderer = Renderer(width, height, view_distance=self.view_distance, threads=threads)
        self.counters = SinkCounters()
        self.replica = replica
        self.frames = 0
        self.render_ms = 0.0
        self._centred = False
        # fill=False: mirror changes from now on but push what the replica
        # holds later, a slice per frame (`fill_step`), so building the view
        # never stalls a display that is still showing another source.
        self._filling = not fill
        self._thread: ThreadPoolExecutor | None = None
        self._fill_origin: tuple[int, int] | None = None
        self._fill_queue: list[tuple[int, int, int]] = []
        replica.attach(self, keys=None if fill else ())

    # -- ReplicaSink ----------------------------------------------------------------
    def set_section(self, key: tuple[int, int, int], arr: np.ndarray) -> bool:
        self.counters.sections_set += 1
        return self.view.set_section(key, arr)

    def clear_section(self, key: tuple[int, int, int]) -> None:
        self.counters.sections_cleared += 1
        self.view.clear_section(key)

    def set_block(self, x: int, y: int, z: int, block: int) -> bool:
        self.counters.blocks_set += 1
        if self._filling and (x >> 4, y >> 4, z >> 4) not in self.view.loaded:
            # Not pushed yet: it will come whole from the replica, which has this
            # change; writing it now would make the view think the section is air.
            return False
        return self.view.set_block(x, y, z, block)

    # -- FrameSource ----------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        return self.renderer.width, self.renderer.height

    def resize(self, width: int, height: int) -> None:
        if (width, height) != self.size:
            self.renderer.resize(width, height)

    def recenter(self, x: float, z: float) -> None:
        """Keep the view's window around (x, z); refill what came into it."""
        view = self.view
        before = view.origin
        view.recenter(x, z)
        if view.origin != before or not self._centred:
            self._centred = True
            replica = self.replica
            for key in view.missing_sections():
                if key in replica:
                    arr = replica.array(key)
                    if arr is not None:
                        view.set_section(key, arr)

    def fill_step(self, x: float, z: float, budget_s: float) -> bool:
        """Push replica sections into the view around (x, z) for about ``budget_s``.

        Nearest first. True once the window holds everything the replica
        has for it (the next `frame` then pushes nothing)."""
        view, replica = self.view, self.replica
        view.recenter(x, z)
        if self._fill_origin != view.origin:  # (re)plan: the window moved
            self._fill_origin = view.origin
            todo = [k for k in view.missing_sections() if k in replica]
            self._fill_queue = todo[::-1]  # popped from the end: nearest first
        deadline = time.perf_counter() + budget_s
        queue = self._fill_queue
        while queue:
            key = queue.pop()
            arr = replica.array(key) if key not in view.loaded else None
            if arr is not None:
                view.set_section(key, arr)
            if time.perf_counter() >= deadline:
                break
        if queue:
            return False
        self._filling = False
        self._centred = True
        return True

    def frame(self, scene: Scene) -> np.ndarray:
        self.recenter(scene.x, scene.z)
        return self._render(scene)

    async def frame_async(self, scene: Scene) -> np.ndarray:
        """`frame` with the render in this source's own thread.

        Only the kernel call leaves the loop: the window moves and sections
        are pushed here first, and the game applies network updates between
        frames, so nothing writes to the view while the thread reads it."""
        self.recenter(scene.x, scene.z)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="local-render")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._render, scene)

    async def wait_frame(self, timeout: float) -> None:
        await asyncio.sleep(timeout)  # a frame is there whenever the game asks

    def _render(self, scene: Scene) -> np.ndarray:
        from renderer import Camera

        cam = Camera(scene.x, scene.y, scene.z, scene.yaw, scene.pitch, scene.fov_deg)
        t0 = time.perf_counter()
        out = self.renderer.render(self.view, cam, scene.avatars, scene.target)
        self.render_ms = (time.perf_counter() - t0) * 1000.0
        self.frames += 1
        return out

    def debug_lines(self) -> list[str]:
        v = self.view
        return [
            f"render {self.render_ms:.1f} ms  {self.size[0]}x{self.size[1]}  "
            f"view {self.view_distance}  window {v.size}  sections {len(v.loaded)}",
        ]

    def close(self) -> None:
        if self.replica.sink is self:
            self.replica.attach(None)
        if self._thread is not None:
            # No render is in flight: the game awaits each one before a switch.
            self._thread.shutdown(wait=False)
            self._thread = None


@dataclass
class SolidSource(DrawnHere):
    """A flat colour (loading screens before any source exists)."""

    width: int
    height: int
    color: tuple[int, int, int] = (24, 28, 36)
    mode: str = "none"
    render_ms: float = 0.0
    _frame: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.resize(self.width, self.height)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._frame = np.empty((height, width, 3), dtype=np.uint8)
        self._frame[:] = self.color

    def frame(self, scene: Scene) -> np.ndarray:
        return self._frame

    async def frame_async(self, scene: Scene) -> np.ndarray:
        return self._frame

    async def wait_frame(self, timeout: float) -> None:
        await asyncio.sleep(timeout)

    def debug_lines(self) -> list[str]:
        return []
