"""Make-before-break switches of the display source (issue 5, DESIGN "Migration").

`MigrationController` is an explicit state machine driven once per frame by
the game loop (`tick` before drawing, `after_frame` after presenting)::

    steady --request--> preparing --first frame of target--> switching
           --old source released--> releasing --window closed--> steady
    preparing --timeout / target error--> steady (rollback, old mode kept)
    steady(remote) --no frame for > stall_s or stream error--> local (fallback)

The old source keeps drawing until the new one has shown a frame, so the
display never waits on a connection. Inputs always go to the sim (it is
authoritative for movement) through the same `SimSession` and sequencer in
every mode; a candidate stream only gets copies, so a switch can neither
drop nor repeat one.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client.sources import FrameSource

LOCAL = "local"
GAP_WINDOW_S = 0.5  # frames after the switch that still count towards its gap
# Work done between frames while the old source keeps the display going:
# pushing the replica into a new view (remote -> local) and shrinking the
# replica once nothing renders from it (-> remote). Small slices, so a
# frame is never late because of them.
FILL_BUDGET_S = 0.004
COMPACT_BUDGET_S = 0.002
COMPACT_EVERY_S = 5.0  # deltas decode sections again while remote
# A device whose local frames take this long is short of CPU (why it leaves):
# while the stream it moves to is set up, it renders at most half the time.
SLOW_RENDER_MS = 25.0


class MigrationState(enum.Enum):
    STEADY = "steady"
    PREPARING = "preparing"
    SWITCHING = "switching"
    RELEASING = "releasing"


@dataclass
class Switch:
    """One switch in flight (or just done), measured as it goes."""

    source: str
    target: str
    trigger: str
    started_at: float
    candidate: FrameSource | None = None
    switched_at: float | None = None
    outcome: str = "pending"  # ok | rollback | fallback
    reason: str = ""
    seq_at_start: int = -1


@dataclass
class MigrationController:
    game: Any  # client.game.Game (not imported: no cycle)
    nodes: dict[str, str] = field(default_factory=dict)  # name -> render node URL
    timeout_s: float = 3.0
    stall_s: float = 2.0
    on_report: Callable[[dict], None] | None = None
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.state = MigrationState.STEADY
        self.current: Switch | None = None
        self.node: str = LOCAL  # where the display comes from now
        self.reports: list[dict] = []
        self.shown: deque[float] = deque(maxlen=4096)  # times frames were displayed
        self._pending: list[tuple[str, str]] = []
        self._compact_at: float | None = None  # next replica compaction (remote mode)
        self._local_at = 0.0  # last local render while preparing
        if getattr(self.game, "remote", False):
            # Started in remote mode: name the node it streams from.
            url = self.game.config.render_node
            self.node = next((n for n, u in self.nodes.items() if u == url), url)
        if self.nodes:
            self.preload_remote()

    def preload_remote(self) -> None:
        """Import the WebRTC stack now: the first import takes ~0.2 s, which
        would otherwise stall the display at the first switch to a node."""
        import client.remote  # noqa: F401

    # -- triggers -----------------------------------------------------------------
    def request(self, target: str, trigger: str = "manual") -> None:
        """Ask for a switch to ``target`` ("local", a node name or a URL)."""
        self._pending.append((target, trigger))

    def cycle(self) -> None:
        """The F6 key: local -> each node -> local."""
        order = [LOCAL, *self.nodes]
        i = order.index(self.node) if self.node in order else 0
        self.request(order[(i + 1) % len(order)], "key")

    @property
    def mode(self) -> str:
        return self.node

    # -- per-frame ------------------------------------------------------------------
    def tick(self, now: float) -> None:
        g = self.game
        if self.state is MigrationState.STEADY:
            if self._pending and g.predictor is not None and g.source is not None:
                target, trigger = self._pending.pop(0)
                if target != self.node:
                    self._begin(target, trigger, now)
            elif self.node != LOCAL:
                self._watch_remote(now)
                self._compact(now)
        elif self.state is MigrationState.PREPARING:
            self._prepare(now)
        elif self.state is MigrationState.RELEASING:
            sw = self.current
            done_at = sw.switched_at if sw is not None else None
            if sw is not None and done_at is not None and now - done_at >= GAP_WINDOW_S:
                self._finish(sw)

    def may_render_local(self, now: float, render_ms: float) -> bool:
        """False to skip this frame's local render (the old picture stays up).

        Only while a switch away from local is being prepared and local frames
        are slow: the WebRTC setup and first decode then get CPU a starved
        device would otherwise spend drawing frames it is about to drop."""
        sw = self.current
        if self.state is not MigrationState.PREPARING or sw is None or sw.target == LOCAL:
            return True
        if render_ms < SLOW_RENDER_MS or now - self._local_at >= render_ms / 1000.0:
            self._local_at = now
            return True
        return False

    def after_frame(self, now: float, rendered: bool) -> None:
        if rendered:
            self.shown.append(now)

    @property
    def preparing(self) -> FrameSource | None:
        """The candidate source while a switch prepares it (the game sends it
        copies of its inputs and sim state, so its camera follows)."""
        sw = self.current
        if sw is not None and self.state is MigrationState.PREPARING:
            return sw.candidate
        return None

    # -- the machine ----------------------------------------------------------------
    def _url(self, target: str) -> str:
        return self.nodes.get(target, target)

    def _begin(self, target: str, trigger: str, now: float) -> None:
        g = self.game
        seq = g.predictor.sequencer.next_seq - 1 if g.predictor else -1
        sw = Switch(self.node, target, trigger, now, seq_at_start=seq)
        self.current = sw
        self.state = MigrationState.PREPARING
        if target == LOCAL:
            # The sim kept feeding the replica while remote: build the view from
            # it a slice per frame (`_prepare`), then draw.
            sw.candidate = self._local_source()
        else:
            sw.candidate = self._remote_source(self._url(target))

    def _local_source(self) -> FrameSource:
        from client.game import local_source

        g = self.game
        return local_source(g, g.welcome, fill=False)

    def _remote_source(self, url: str) -> FrameSource:
        from client.remote import RemoteOptions, RemoteSource, RemoteStream

        g = self.game
        cfg = g.config
        w, h = g.render_size()
        opts = RemoteOptions(
            width=w & ~1, height=h & ~1, fps=cfg.stream_fps, bitrate=cfg.stream_bitrate,
            codec=cfg.stream_codec, view_distance=cfg.view_distance, fov=cfg.fov_deg,
        )  # fmt: skip
        b = g.predictor.body
        stream = RemoteStream(
            url, cfg.name, opts, pos=(b.x, b.y, b.z), yaw=g.controls.yaw, pitch=g.controls.pitch
        )
        src = RemoteSource(stream)
        src.width, src.height = w, h
        src.start()
        return src

    def _prepare(self, now: float) -> None:
        g, sw = self.game, self.current
        assert sw is not None and sw.candidate is not None
        cand = sw.candidate
        if sw.target == LOCAL:
            scene = g.scene(now)
            # A fallback has nothing else to show: fill at once.
            budget = 1.0 if sw.outcome == "fallback" else FILL_BUDGET_S
            if scene is None or not cand.fill_step(scene.x, scene.z, budget):
                return
            frame = cand.frame(scene)
            if frame is not None:
                self._switch(sw, frame, now)
            return
        err = cand.error
        if err is not None:
            self._rollback(sw, f"target error: {err}")
        elif cand.stream.stats.first_frame_at is not None:
            self._switch(sw, None, now)
        elif now - sw.started_at > self.timeout_s:
            self._rollback(sw, f"no frame within {self.timeout_s:.1f} s")

    def _switch(self, sw: Switch, frame: Any, now: float) -> None:
        g = self.game
        self.state = MigrationState.SWITCHING
        old = g.source
        g.source = sw.candidate
        g.remote = sw.target != LOCAL
        if frame is not None:
            g.last_frame = frame  # the first local frame is the next one shown
        self.node = sw.target
        sw.switched_at = now
        self._release(old)
        self._compact_at = None  # remote: start compacting at the next steady tick
        self.state = MigrationState.RELEASING

    def _release(self, old: FrameSource | None) -> None:
        if old is None:
            return
        old.close()  # a stream says bye in the background; a renderer just goes

    def _rollback(self, sw: Switch, reason: str) -> None:
        sw.outcome, sw.reason = "rollback", reason
        if sw.candidate is not None:
            sw.candidate.close()
        sw.switched_at = self.clock()
        self._finish(sw)

    def _compact(self, now: float) -> None:
        """Remote mode: shrink the replica a slice per frame, again every few seconds."""
        g = self.game
        if self._compact_at is None:
            self._compact_at = now
        if now < self._compact_at or g.predictor is None:
            return
        b = g.predictor.body
        if g.replica.compact(b.x, b.y, b.z, COMPACT_BUDGET_S):
            self._compact_at = now + COMPACT_EVERY_S
            release_free_memory()

    def _watch_remote(self, now: float) -> None:
        g = self.game
        err = g.source.error if g.source is not None else None
        last = self.shown[-1] if self.shown else now
        if err is None and now - last <= self.stall_s:
            return
        reason = f"render node error: {err}" if err else f"no frame for {now - last:.1f} s"
        sw = Switch(self.node, LOCAL, "fallback", now, outcome="fallback", reason=reason)
        self.current = sw
        sw.candidate = self._local_source()
        self.state = MigrationState.PREPARING
        self._prepare(now)

    def _finish(self, sw: Switch) -> None:
        if sw.outcome == "pending":
            sw.outcome = "ok"
        end = (sw.switched_at or sw.started_at) + GAP_WINDOW_S
        times = [t for t in self.shown if t <= end]
        before = [t for t in times if t < sw.started_at]
        window = ([before[-1]] if before else []) + [t for t in times if t >= sw.started_at]
        gap = max((b - a for a, b in itertools.pairwise(window)), default=0.0)
        cut = sw.switched_at or sw.started_at
        pre = [t for t in window if t <= cut]
        post = [t for t in window if t >= cut]
        # Where the gap is (old source starved while preparing vs new one slow to show).
        gap_pre = max((b - a for a, b in itertools.pairwise(pre)), default=0.0)
        gap_post = max((b - a for a, b in itertools.pairwise(post)), default=0.0)
        report = {
            "from": sw.source,
            "to": sw.target if sw.outcome != "rollback" else sw.source,
            "target": sw.target,
            "trigger": sw.trigger,
            "outcome": sw.outcome,
            "reason": sw.reason,
            "gap_ms": round(gap * 1000.0, 2),
            "gap_preparing_ms": round(gap_pre * 1000.0, 2),
            "gap_after_ms": round(gap_post * 1000.0, 2),
            "duration_ms": round(((sw.switched_at or sw.started_at) - sw.started_at) * 1000, 2),
            "seq_at_start": sw.seq_at_start,
        }
        self.reports.append(report)
        self.current = None
        self.state = MigrationState.STEADY
        self.game.log(f"migration: {report}")
        if self.on_report is not None:
            self.on_report(report)


def release_free_memory() -> None:
    """Hand freed heap back to the OS (glibc keeps it otherwise): the 4 KiB
    section arrays just re-encoded are small allocations."""
    # Not glibc: no malloc_trim; the memory is reused by this process instead.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
