"""A session's frame pipeline: world view -> render -> convert -> encode, in worker threads.

`SessionPipeline` owns everything one session renders and encodes with —
its `WorldView`, `Renderer`, `VideoEncoder` and `StreamClock`. A frame is
two jobs: `render` (a render worker: apply the world changes queued for
this view, recentre, ray-cast, stamp pts, convert to I420 — a copy, so the
renderer's buffer is free at once) and `encode` (an encode worker). The
session runs at most one of each at a time, in order, so the render of
frame k+1 overlaps the encoding of frame k and nothing needs more than a
lock per half. The numba kernels (render, RGB -> I420) and x264 release
the GIL, so the event loop keeps serving the network meanwhile (and
several sessions' frames render at once, see `RenderNode.frame_threads`).

The event loop decides *what* to draw (a `CameraPose` snapshot, the
avatars, the wanted stream settings). Settings changes are applied at the
start of a job — the renderer resizes, the encoder is rebuilt between
frames (bitrate step, new size or codec) — and pts keep running on the
session's clock whatever happens to the encoder.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import av
import numpy as np

from renderer import Camera, Renderer, WorldView
from renderer.encoder import EncodedFrame, EncoderConfig, StreamClock, VideoEncoder, to_yuv
from renderer.node.camera import CameraPose
from renderer.node.world import Op, ViewFeed


@dataclass(slots=True)
class Rendered:
    """A rendered frame, converted and stamped, waiting for its encoder."""

    frame: av.VideoFrame  # I420, a copy: the renderer's buffer is free again
    pts: int
    config: EncoderConfig
    render_started: float  # wall clock (time.time)
    render_finished: float
    render_s: float
    convert_s: float
    prep_s: float  # applying world changes and recentring the view (before the render)


@dataclass(slots=True)
class FrameResult:
    encoded: EncodedFrame  # encode_s includes the conversion
    render_started: float
    render_finished: float
    render_s: float
    prep_s: float
    rebuilt: str  # "" or why the encoder was rebuilt ("open", "size", "bitrate", "codec")


class SessionPipeline:
    """One session's view, renderer and encoder (see the module docstring)."""

    def __init__(
        self,
        feed: ViewFeed,
        key: int,
        view_distance: int,
        encoder_config: EncoderConfig,
        render_threads: int | None = None,
    ) -> None:
        self.feed = feed
        self.key = key
        self.view_distance = int(view_distance)
        self.config = encoder_config
        self.render_threads = render_threads
        self.clock = StreamClock()
        self._queue: deque[Op] = feed.open_queue(key)
        self.view: WorldView | None = None
        self.renderer: Renderer | None = None
        self.encoder: VideoEncoder | None = None
        self.frames = 0
        self.reused = 0  # frames whose picture was unchanged: encoded again, not rendered
        self.sections_filled = 0
        self._changes = 0  # world changes applied to the view (part of the reuse key)
        self._deferred = False  # the last render left section loads to the upkeep
        self._last_key: tuple | None = None
        self._planes = np.empty(0, dtype=np.uint8)  # I420 scratch (`to_yuv`)
        # Held by the jobs using the pipeline (a render and an encode may run
        # at once: they touch different state); `close` never frees what a
        # worker is still using (a cancelled await does not stop the thread).
        self._render_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._closed = False

    # -- the view ----------------------------------------------------------------------
    def prepare(self, x: float, z: float) -> float:
        """Build the view around (x, z) from the replica; returns seconds taken.

        A full window is ~2000 sections: run it once, off the render workers,
        before the first frame (a session that starts must not stall others).
        """
        with self._render_lock:
            if self._closed:
                return 0.0
            t0 = time.perf_counter()
            self._prepare(x, z)
            return time.perf_counter() - t0

    def _prepare(self, x: float, z: float) -> None:
        self.view = WorldView(radius=self.view_distance, center=(x, z))
        self._fill()

    def _fill(self) -> None:
        view = self.view
        assert view is not None
        arrays = self.feed.arrays
        for key in view.missing_sections():
            arr = arrays.get(key)
            if arr is not None and view.set_section(key, arr):
                self.sections_filled += 1

    def _apply_changes(self, defer_loads: bool = False) -> None:
        """Apply the queued world changes in order; ``defer_loads`` (a render):
        stop at the first section load and leave it, and all after it, to the
        upkeep after this frame (a burst of loads is ~50 µs a section of
        Python; a frame late at the edge of the view is not seen) — unless
        the last render deferred too, so nothing waits more than one frame."""
        view = self.view
        assert view is not None
        q = self._queue
        deferring = defer_loads and not self._deferred
        self._deferred = False
        applied = False
        while q:
            if deferring and q[0][0] == "s":
                self._deferred = True
                break
            kind, key, value = q.popleft()
            applied = True
            if kind == "b":
                view.set_block(*key, value)
            elif kind == "s":
                view.set_section(key, value)
            else:
                view.clear_section(key)
        if applied:
            self._changes += 1  # (a render that applied nothing may reuse its picture)

    def upkeep(self, x: float, z: float) -> float:
        """Between frames (an upkeep worker): apply the world changes queued
        so far and centre the view on (x, z); returns seconds taken.

        A recentre refills a strip of sections (10-16 ms of Python at view
        distance 96); done here, in the slack after a frame, the next render
        finds its view ready and only recentres itself where the camera
        left what the window reaches (`WorldView.reaches`). Skipped while
        a render holds the view."""
        if not self._render_lock.acquire(blocking=False):
            return 0.0
        try:
            if self._closed or self.view is None:
                return 0.0
            t0 = time.perf_counter()
            self._apply_changes()
            self._recenter(x, z)
            return time.perf_counter() - t0
        finally:
            self._render_lock.release()
            self._release_if_idle()

    def _recenter(self, x: float, z: float, lazy: bool = False) -> None:
        """Centre the view on (x, z); ``lazy``: only where the window no
        longer reaches the view distance around it."""
        view = self.view
        assert view is not None
        if lazy and view.reaches(x, z, self.view_distance):
            return
        before = view.origin
        view.recenter(x, z)
        if view.origin != before:
            self._changes += 1
            self._fill()

    # -- a frame -----------------------------------------------------------------------
    def render(
        self,
        pose: CameraPose,
        avatars: list[tuple],
        cfg: EncoderConfig,
        threads: int | None = None,
    ) -> Rendered:
        """Render one frame and convert it (a render worker); ``threads``:
        numba threads for it (None: the pipeline's ``render_threads``)."""
        try:
            with self._render_lock:
                if self._closed:
                    raise RuntimeError("pipeline closed")
                return self._render(pose, avatars, cfg, threads or self.render_threads)
        finally:
            self._release_if_idle()

    def _render(
        self, pose: CameraPose, avatars: list[tuple], cfg: EncoderConfig, threads: int | None
    ) -> Rendered:
        if self.view is None:
            self._prepare(pose.x, pose.z)
        if self.renderer is None:
            self.renderer = Renderer(
                cfg.width, cfg.height, view_distance=self.view_distance, threads=self.render_threads
            )
        elif (self.renderer.width, self.renderer.height) != (cfg.width, cfg.height):
            self.renderer.resize(cfg.width, cfg.height)
        self.renderer.threads = threads
        t_prep = time.perf_counter()
        self._apply_changes(defer_loads=True)
        self._recenter(pose.x, pose.z, lazy=True)
        prep_s = time.perf_counter() - t_prep
        assert self.view is not None
        target = (pose.hit.x, pose.hit.y, pose.hit.z) if pose.hit is not None else None
        cam = Camera(pose.x, pose.y, pose.z, pose.yaw, pose.pitch, pose.fov_deg)
        # Same camera, avatars, target, world and size as the last frame: the
        # picture is the one still in the renderer's buffer (an idle player
        # costs an encode of an unchanged frame, ~1 ms, not a render).
        key = (
            pose.x, pose.y, pose.z, pose.yaw, pose.pitch, pose.fov_deg, target,
            tuple(tuple(a) for a in avatars), self._changes, cfg.width, cfg.height,
        )  # fmt: skip
        started = time.time()
        t0 = time.perf_counter()
        if key == self._last_key:
            rgb = self.renderer.frame
            self.reused += 1
        else:
            rgb = self.renderer.render(self.view, cam, avatars, target)
            self._last_key = key
        t1 = time.perf_counter()
        finished = time.time()
        pts = self.clock.pts(time.monotonic())
        if self._planes.shape != (cfg.height * 3 // 2, cfg.width):
            self._planes = np.empty((cfg.height * 3 // 2, cfg.width), dtype=np.uint8)
        frame = to_yuv(rgb, self._planes)
        return Rendered(
            frame, pts, cfg, started, finished, t1 - t0, time.perf_counter() - t1, prep_s
        )

    def encode(self, r: Rendered, keyframe: bool) -> FrameResult:
        """Encode a rendered frame (an encode worker; one at a time per session, in order)."""
        try:
            with self._encode_lock:
                if self._closed:
                    raise RuntimeError("pipeline closed")
                rebuilt = self._ensure_encoder(r.config)
                assert self.encoder is not None
                encoded = self.encoder.encode_yuv(r.frame, r.pts, keyframe=keyframe)
                encoded.encode_s += r.convert_s
                self.frames += 1
                return FrameResult(
                    encoded, r.render_started, r.render_finished, r.render_s, r.prep_s, rebuilt
                )
        finally:
            self._release_if_idle()

    def frame(
        self, pose: CameraPose, avatars: list[tuple], cfg: EncoderConfig, keyframe: bool
    ) -> FrameResult:
        """Render and encode in one go (tests, tools)."""
        return self.encode(self.render(pose, avatars, cfg), keyframe)

    def _ensure_encoder(self, cfg: EncoderConfig) -> str:
        enc = self.encoder
        if enc is None:
            why = "open"
        elif enc.config == cfg:
            return ""
        else:
            old = enc.config
            if old.codec != cfg.codec:
                why = "codec"
            elif (old.width, old.height) != (cfg.width, cfg.height):
                why = "size"
            elif old.bitrate != cfg.bitrate:
                why = "bitrate"
            else:
                why = "settings"
            enc.close()
        self.encoder = VideoEncoder(cfg)
        self.config = cfg
        return why

    def close(self) -> None:
        """Stop feeding the view; free everything now, or when the running job ends."""
        self._closed = True
        self.feed.close_queue(self.key)
        self._release_if_idle()

    def _release_if_idle(self) -> None:
        if not self._closed or not self._render_lock.acquire(blocking=False):
            return
        try:
            if not self._encode_lock.acquire(blocking=False):
                return
            try:
                self._queue.clear()
                if self.encoder is not None:
                    self.encoder.close()
                self.encoder = None
                self.view = None
                self.renderer = None
            finally:
                self._encode_lock.release()
        finally:
            self._render_lock.release()
