"""The game: one asyncio frame loop over a session, a world and a display source.

`Game.run` compiles (or loads) the renderer, then runs four tasks in one
TaskGroup::

    net-receive  SimSession.run_connection  connect / read / reconnect
    net-send     SimSession.run_sender      batched input frames, edits
    net-ping     SimSession.run_pinger      RTT once a second
    frame-loop   Game._frame_loop           everything below, once per frame

A frame: pump input (window events or the script) -> apply what the network
delivered (world, reconciliation, other players) -> step the predicted body
at the fixed physics rate and queue its input frames -> requested edits ->
ask the display source for a frame of the current scene -> copy it into the
canvas and draw the HUD over it -> present -> pace. When the frame loop
ends (quit, --seconds, a failure headless), it stops the session and the
other tasks end by themselves: nothing is left running.

The display source is pluggable (`client.sources`): local rendering now;
a remote video source later gets the same scene, HUD and input.
"""

from __future__ import annotations

import asyncio
import gc
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from client.config import ClientConfig
from client.controls import HOTBAR, Controls, PygameInput
from client.display import HeadlessDisplay, WindowDisplay
from client.hud import RED, WHITE, Hud, HudState
from client.prediction import Predictor
from client.remote_players import RemotePlayers
from client.replica import WorldReplica
from client.script import Script, ScriptHooks
from client.session import ConnState, SimSession
from client.sources import FrameSource, LocalRenderSource, Scene, SolidSource, warm_up_renderer
from client.stats import FrameStats, RateMeter
from shiftcraft.protocol import Error, Update, Welcome
from world.blocks import BLOCKS, BlockId
from world.coords import in_world
from world.physics import EYE_HEIGHT, aabb_overlaps_block, body_aabb, look_vector
from world.raycast import RayHit, raycast

REACH = 6.0  # blocks, as the server's reach check
LOADED_QUIET_S = 0.5  # the world counts as loaded once sections stop arriving this long

Display = HeadlessDisplay | WindowDisplay


class _KnownOrAir:
    """Block reads for ray casts: sections not received read as air (no phantom targets)."""

    __slots__ = ("replica",)

    def __init__(self, replica: WorldReplica) -> None:
        self.replica = replica

    def get_block(self, x: int, y: int, z: int) -> int:
        b = self.replica.known_block(x, y, z)
        return 0 if b is None else b


@dataclass
class FrameInfo:
    """What one frame did (for benchmarks and tests hooking `Game.on_frame`)."""

    now: float
    interval_s: float
    rendered: bool


def local_source(game: Game, welcome: Welcome, *, fill: bool = True) -> FrameSource:
    """Local rendering: the client's own renderer over its replica (``fill``:
    see `LocalRenderSource`)."""
    cfg = game.config
    # Nothing exists beyond the server's view distance: fog out there.
    vd = max(16, min(cfg.view_distance, welcome.view_distance or cfg.view_distance))
    width, height = game.render_size()
    return LocalRenderSource(
        game.replica, width, height, view_distance=vd, threads=cfg.render_threads, fill=fill
    )


SourceFactory = Callable[["Game", Welcome], FrameSource]


class Game:
    def __init__(
        self,
        config: ClientConfig,
        display: Display,
        *,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] | None = None,
        source_factory: SourceFactory = local_source,
    ) -> None:
        config.validate()
        self.config = config
        # Remote mode: a render node draws the picture; this client keeps no
        # replica contents and no renderer (client/remote.py).
        self.remote = config.render == "remote"
        if self.remote and source_factory is local_source:
            from client.remote import remote_source

            source_factory = remote_source
        # Makes the display source at the first welcome; a remote-mode factory
        # (issue 4) returns a video source instead, and the rest stays the same.
        self.source_factory = source_factory
        self.display = display
        self.clock = clock
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.controls = Controls()
        self.input = PygameInput(self.controls) if display.interactive else None
        self.script: Script | None = None
        if config.script:
            self.script = Script(
                config.script,
                loop=config.loop_script,
                hooks=ScriptHooks(
                    screenshot=self.request_screenshot,
                    edits_pending=lambda: self.replica.pending_edits,
                ),
            )
        self.session = SimSession(
            config.server,
            config.name,
            config.token,
            latency_s=config.latency_ms / 1000.0,
            input_hz=config.input_hz,
            connect_timeout=config.connect_timeout,
            reconnect=config.reconnect,
            clock=clock,
        )
        self.replica = WorldReplica()
        self._ray_world = _KnownOrAir(self.replica)
        self.source: FrameSource | None = None
        self.predictor: Predictor | None = None
        self.players = RemotePlayers()
        self.hud = Hud()
        self.frame_stats = FrameStats()
        self.shown_stats = FrameStats()  # frames with new content only (telemetry's fps)
        self.rx = RateMeter()
        self.tx = RateMeter()
        self.canvas = np.zeros((config.height, config.width, 3), dtype=np.uint8)
        self.last_frame: np.ndarray | None = None  # the source's newest frame (kept when none)
        self.generation = 0  # session generation whose welcome we applied
        self.tick = 0
        self.target: RayHit | None = None
        self.first_section_at: float | None = None
        self.last_section_at: float | None = None
        self.loaded_at: float | None = None  # world around the player loaded
        self.started_at = 0.0
        self.screenshots: list[str] = []
        self.exit_code = 0
        self.error: str | None = None  # why we gave up (headless failure)
        self.on_frame: Callable[[Game, FrameInfo], None] | None = None
        # client.migration.MigrationController, when switching sources is allowed.
        self.migration: Any = None
        self.edits_sent = 0  # edits handed to the sim (results: replica.stats)
        self._heap_frozen = False
        self.welcome: Welcome | None = None
        self.frames = 0
        self.rendered = 0
        self.warm_up_s: float | None = None
        self._screenshot_done = config.screenshot is None
        self._blank_source: SolidSource | None = None
        self._shot_requests: list[str] = []
        # The newest authoritative body state: (tick, ack, pos, vel, on_ground, flying).
        self.server_state: tuple | None = None
        self._last_present = 0.0
        self._fps_shown = 0.0
        self._hud_text_at = 0.0

    # -- lifecycle ------------------------------------------------------------------
    async def run(self) -> int:
        """Play until quit; returns the process exit code."""
        try:
            if not self.remote:
                self.warm_up()
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.session.run_connection(stop), name="net-receive")
                tg.create_task(self.session.run_sender(stop), name="net-send")
                tg.create_task(self.session.run_pinger(stop), name="net-ping")
                tg.create_task(self._frame_loop(stop), name="frame-loop")
        finally:
            if self.source is not None:
                await self.source.aclose()  # a stream says bye first
            self.display.close()
        return self.exit_code

    def warm_up(self) -> None:
        """Compile or load the renderer kernel, saying so in the window and on stderr.

        Done before connecting: a first compile takes tens of seconds during
        which the loop could not read the socket, and the server would drop
        us as a slow consumer.
        """

        def progress(line: str) -> None:
            self.log(line)
            self._show_banner([line])

        self.warm_up_s = warm_up_renderer(progress)

    def _blank(self, size: tuple[int, int]) -> np.ndarray:
        if self._blank_source is None or self._blank_source.size != size:
            self._blank_source = SolidSource(*size)
        return self._blank_source.frame(Scene(0, 0, 0, 0, 0))

    def _show_banner(self, lines: list[str], color: tuple[int, int, int] = WHITE) -> None:
        frame = self._blank(self.render_size())
        self._compose(frame, HudState(mode="-", banner=lines, banner_color=color, crosshair=False))
        self.display.poll()
        self.display.present(self.canvas)

    def render_size(self) -> tuple[int, int]:
        w, h = self.display.size
        s = self.config.render_scale
        return max(16, round(w * s)), max(16, round(h * s))

    # -- the frame loop -------------------------------------------------------------------
    async def _frame_loop(self, stop: asyncio.Event) -> None:
        cfg = self.config
        self.started_at = prev = self.clock()
        min_interval = 1.0 / cfg.max_fps if cfg.max_fps > 0 else 0.0
        try:
            while True:
                now = self.clock()
                dt, prev = now - prev, now
                self._pump_input(now)
                if self._should_quit(now):
                    break
                self._apply_network(now)
                if self.migration is not None:
                    self.migration.tick(now)  # may swap self.source (make-before-break)
                remote_error = self.source.error if self.source is not None else None
                if self.migration is not None:
                    remote_error = None  # the controller falls back to local instead
                if remote_error and not self.display.interactive:
                    self.error = str(remote_error)
                    self.log(f"shiftcraft play: {self.error}")
                    self.exit_code = 1
                    break
                if self.session.state is ConnState.FAILED and not self.display.interactive:
                    self.error = self.session.status.message
                    self.log(f"shiftcraft play: {self.error}")
                    self.exit_code = 1
                    break
                self._simulate(dt)
                self._aim()
                self._edits()
                rendered = await self._draw(now, dt)
                self.frames += 1
                shown = self.clock()
                self.frame_stats.frame(shown)
                if rendered:
                    self.shown_stats.frame(shown)
                interval = shown - (self._last_present or shown)
                self._last_present = shown
                self._maybe_screenshot(shown)
                if self.migration is not None:
                    self.migration.after_frame(shown, rendered)
                if self.on_frame is not None:
                    self.on_frame(self, FrameInfo(shown, interval, rendered))
                # Pace, and always yield: the network tasks run between frames. A
                # stream wakes the loop as its frame arrives (not up to a frame later).
                delay = max(0.0, now + min_interval - self.clock())
                if self.source is not None and delay > 0.0:
                    await self.source.wait_frame(delay)
                else:
                    await asyncio.sleep(delay)
        finally:
            stop.set()
            await self.session.close()

    def _should_quit(self, now: float) -> bool:
        cfg = self.config
        if self.controls.quit:
            return True
        if cfg.seconds is not None and now - self.started_at >= cfg.seconds:
            return True
        # A headless screenshot run with nothing else to do ends after its shot.
        return (
            not self.display.interactive
            and cfg.seconds is None
            and (self.script is None or (self.script.done and not self.script.loop))
            and cfg.screenshot is not None
            and self._screenshot_done
        )

    def _pump_input(self, now: float) -> None:
        if self.input is not None:
            self.input.handle(self.display.poll(), now, self.display)
        if self.script is not None and self.loaded_at is not None:
            self.script.update(self.controls, now)
        if self.controls.switch_render:
            self.controls.switch_render = False
            if self.migration is not None:  # F6: local -> each node -> local
                self.migration.cycle()
        if self.controls.retry:
            self.controls.retry = False
            if self.session.state in (ConnState.FAILED, ConnState.RECONNECTING):
                self.session.retry()

    # -- network ----------------------------------------------------------------------
    def _apply_network(self, now: float) -> None:
        for gen, kind, payload in self.session.drain():
            if kind == "welcome":
                self._on_welcome(gen, payload)
            elif gen != self.generation:
                continue  # left over from a connection that is gone
            elif isinstance(payload, Update):
                self._on_update(payload, now)
            elif isinstance(payload, Error):
                self.log(f"server error {payload.code}: {payload.message}")
        if self.remote and self.loaded_at is None and self.rendered and self.predictor:
            self.loaded_at = now  # the node has the world: loaded once its picture shows
        if (
            self.loaded_at is None
            and self.last_section_at is not None
            and now - self.last_section_at >= LOADED_QUIET_S
            and self._body_column_loaded()
        ):
            self.loaded_at = now
            if self.replica.resyncing:
                self.replica.end_resync()
        if self.loaded_at is not None and not self._heap_frozen:
            # Everything alive once the world is in (modules, the kernel, the
            # replica) lives as long as the game: keep it out of the cyclic
            # collector's full passes, which otherwise walk it all and stalled
            # frames for 30-80 ms just after a stream was torn down.
            self._heap_frozen = True
            gc.freeze()
        t = self.session.traffic
        self.rx.sample(now, t.bytes_in)
        self.tx.sample(now, t.bytes_out)

    def _on_welcome(self, gen: int, w: Welcome) -> None:
        first = self.generation == 0
        self.generation = gen
        self.tick = 0
        self.welcome = w
        if first:
            self.controls.set_look(w.yaw, w.pitch)
            self.controls.fly = w.flying
            self._make_source(w)
            self.predictor = Predictor(self.replica, tuple(w.pos), w.flying)
        else:
            # Reconnected: keep showing what we hold while the server re-sends it.
            self.replica.begin_resync()
            assert self.predictor is not None
            self.predictor.reset(tuple(w.pos), w.flying)
            self.controls.fly = w.flying
        self.players.reset(w.tick_rate, w.player_id)
        self.first_section_at = self.last_section_at = None
        self.loaded_at = None

    def _make_source(self, w: Welcome) -> None:
        self.source = self.source_factory(self, w)

    def _on_update(self, u: Update, now: float) -> None:
        self.tick = u.tick
        n_sections = u.section_count if hasattr(u, "section_count") else len(u.sections)
        if self.remote:
            n_sections = 0  # never decoded or kept: the render node has the world
        if u.ack >= 0:
            for source in self._drawers():
                source.send_state(u.ack, u.pos, u.vel, u.on_ground, u.flying)
        if not self.remote or self.migration is not None:
            # With a migration controller the replica stays fed in remote mode
            # too, so a switch back to local has the sections in view at once.
            self.replica.apply_update(u)
        if n_sections:
            self.last_section_at = now
            if self.first_section_at is None:
                self.first_section_at = now
        self.server_state = (u.tick, u.ack, u.pos, u.vel, u.on_ground, u.flying)
        p = self.predictor
        if p is not None:
            p.reconcile(u.ack, u.pos, u.vel, u.on_ground, u.flying)
        me = (p.body.x, p.body.y, p.body.z) if p is not None else None
        if u.spawn or u.entities or u.gone:
            self.players.apply(u.tick, u.spawn, u.entities, u.gone, now, me)
        else:
            self.players.observe_tick(u.tick, now)

    def _body_column_loaded(self) -> bool:
        p = self.predictor
        if self.remote:
            return p is not None  # the render node's world; the sim keeps us honest
        return p is not None and self.replica.has_sections_around(p.body.x, p.body.y, p.body.z)

    @property
    def playing(self) -> bool:
        return self.session.playing and self.generation == self.session.generation

    # -- simulation ---------------------------------------------------------------------
    def _simulate(self, dt: float) -> None:
        p = self.predictor
        if p is None:
            return
        p.decay(dt)
        if not (self.playing and self._body_column_loaded()):
            # Not in the game yet (or between connections): the server does not
            # move us either, so neither do we; no time is owed for this wait.
            p.accumulator = 0.0
            return
        frames = p.advance(dt, self.controls.move_input)
        if frames:
            self.session.queue_inputs(frames, self.generation)
            for source in self._drawers():
                source.send_inputs(frames)  # a render node turns the camera at once

    def _drawers(self) -> list[FrameSource]:
        """The sources that draw the player's view: the one shown and the one
        a switch is preparing (its camera follows meanwhile)."""
        preparing = self.migration.preparing if self.migration is not None else None
        return [s for s in (self.source, preparing) if s is not None]

    def eye(self) -> tuple[float, float, float] | None:
        p = self.predictor
        if p is None:
            return None
        x, y, z = p.render_position()
        return (x, y + EYE_HEIGHT, z)

    def _aim(self) -> None:
        """The block under the crosshair, from where the camera is this frame."""
        if self.remote:
            # No world here: the node ray-casts from the camera it drew.
            self.target = self.source.target_hit() if self.source is not None else None
            return
        eye = self.eye()
        if eye is None:
            self.target = None
            return
        c = self.controls
        self.target = raycast(self._ray_world, eye, look_vector(c.yaw, c.pitch), REACH)

    def _edits(self) -> None:
        c = self.controls
        if not (c.want_break or c.want_place):
            return
        want_break, want_place = c.want_break, c.want_place
        c.want_break = c.want_place = False
        hit = self.target
        if hit is None or not self.playing or self.predictor is None:
            return
        if want_break:
            self.request_edit("break", *hit.pos)
        elif want_place:
            self.request_edit("place", *hit.adjacent, block=c.block)

    def request_edit(self, action: str, x: int, y: int, z: int, block: int = 0) -> bool:
        """Send an edit and show it at once (optimistic); False if it cannot succeed."""
        if not in_world(x, y, z):
            return False
        current = (
            self.replica.known_block(x, y, z) if not self.remote else self._remote_block(x, y, z)
        )
        if current is None:
            return False
        if action == "break":
            if current == BlockId.AIR or not BLOCKS.get(current).breakable:
                return False
            new = int(BlockId.AIR)
        elif action == "place":
            if not BLOCKS.replaceable[current] or not BLOCKS.get(block).placeable:
                return False
            p = self.predictor
            if p is not None and aabb_overlaps_block(body_aabb(p.body), x, y, z):
                return False  # into ourselves: the server would refuse it
            new = int(block)
        else:
            new = current
        if not self.session.queue_edit(action, x, y, z, block, self.generation):
            return False
        self.edits_sent += 1
        if action in ("break", "place") and not self.remote:
            self.replica.predict_edit(x, y, z, new)
        return True

    def _remote_block(self, x: int, y: int, z: int) -> int | None:
        """Remote mode knows only the targeted block and the air in front of it."""
        t = self.target
        if t is None:
            return None
        if (x, y, z) == t.pos:
            return t.block
        return int(BlockId.AIR) if (x, y, z) == t.adjacent else None

    # -- drawing ------------------------------------------------------------------------
    def scene(self, now: float) -> Scene | None:
        eye = self.eye()
        if eye is None:
            return None
        c = self.controls
        avatars = [(q.x, q.y, q.z, q.yaw) for q in self.players.sample(now)]
        seq = self.predictor.sequencer.next_seq - 1 if self.predictor else -1
        return Scene(
            eye[0],
            eye[1],
            eye[2],
            c.yaw,
            c.pitch,
            self.config.fov_deg,
            avatars,
            self.target.pos if self.target is not None else None,
            seq,
        )

    async def _draw(self, now: float, dt: float) -> bool:
        size = self.render_size()
        source = self.source
        rendered = False
        if source is not None:
            if source.size != size:
                source.resize(*size)
                self.last_frame = None
            scene = self.scene(now)
            # Between connections the picture freezes on the last frame (with a
            # "reconnecting" line); a remote source has no new frames then either.
            if scene is not None and (self.playing or self.last_frame is None):
                # A local render runs off the event loop (the kernel drops the
                # GIL), so sockets and a stream being set up keep moving meanwhile.
                if self.migration is None or self.migration.may_render_local(now, source.render_ms):
                    frame = await source.frame_async(scene)
                else:
                    frame = None  # a switch is being prepared: the last frame stays up
                if frame is not None:
                    self.last_frame = frame
                    rendered = True
                    self.rendered += 1
        frame = self.last_frame
        if frame is None or frame.shape[:2] != (size[1], size[0]):
            frame = self._blank(size)
        self._compose(frame, self.hud_state(now))
        self.display.present(self.canvas)
        return rendered

    def _compose(self, frame: np.ndarray, state: HudState) -> None:
        h, w, _ = frame.shape
        if self.canvas.shape != frame.shape:
            self.canvas = np.empty((h, w, 3), dtype=np.uint8)
        np.copyto(self.canvas, frame)
        if self.config.hud or state.banner:
            if not self.config.hud:
                state = HudState(mode=state.mode, banner=state.banner, crosshair=False)
            self.hud.draw(self.canvas, state)

    def hud_state(self, now: float) -> HudState:
        c, s = self.controls, self.session
        if now - self._hud_text_at >= 0.25:  # numbers that change every frame are unreadable
            self._hud_text_at = now
            self._fps_shown = self.frame_stats.fps
        st = HudState(
            mode=self.source.mode if self.source is not None else "-",
            node=self._hud_node(),
            fps=self._fps_shown,
            rtt_ms=None if s.rtt is None else s.rtt * 1000.0,
            yaw_deg=math.degrees(c.yaw),
            pitch_deg=math.degrees(c.pitch),
            hotbar=HOTBAR,
            selected=c.selected,
        )
        if self.predictor is not None:
            st.pos = self.predictor.render_position()
        state = s.state
        if state is ConnState.FAILED:
            st.banner = ["cannot connect", s.status.message]
            if self.display.interactive:
                st.banner.append("press R to retry, close the window or Ctrl-Q to quit")
            st.banner_color = RED
        elif state is ConnState.CONNECTING and self.generation == 0:
            st.banner = [f"connecting to {s.url} ..."]
        elif state is ConnState.RECONNECTING:
            wait = max(0.0, (s.status.retry_at or now) - now)
            st.status = (
                f"reconnecting... ({s.status.message}; attempt {s.status.attempt}, "
                f"next in {wait:.1f} s)"
            )
        elif state is ConnState.CONNECTING:
            st.status = "reconnecting... (connecting)"
        elif self.loaded_at is None and not self.remote:
            st.status = f"loading world... {len(self.replica)} sections"
        remote_status = self.source.status if self.source is not None else None
        if remote_status and not st.banner:
            st.status = remote_status  # the stream's state or error, in words
        if self.display.interactive and not c.pointer_grabbed and not st.banner:
            st.status = st.status or "click to capture the mouse (Esc releases it)"
        if c.debug:
            st.debug = self.debug_lines()
        return st

    def _hud_node(self) -> str:
        """Where the picture comes from (and where it is moving to), for the HUD."""
        m = self.migration
        if m is None:
            return self.config.render_node if self.remote else ""
        where = "" if m.node == "local" else m.node
        sw = m.current
        if sw is not None and sw.switched_at is None:
            where = f"{where} -> {sw.target}".strip()  # drawn after the mode: "local -> edge-1"
        return where

    def debug_lines(self) -> list[str]:
        p, s, r = self.predictor, self.session, self.replica
        fs = self.frame_stats
        lines = [
            f"tick {self.tick}  sections {len(r)}  players {len(self.players)}  "
            f"rx {self.rx.rate / 1024:.1f} KiB/s  tx {self.tx.rate / 1024:.1f} KiB/s",
            f"frame p50 {fs.p(50):.1f} ms  p99 {fs.p(99):.1f} ms  state {s.state.value}",
        ]
        if p is not None:
            b = p.body
            corr = p.last_correction
            lines.append(
                f"inputs pending {p.pending}  corrections {p.corrections}"
                + (f" (last {corr.distance:.2f})" if corr else "")
                + f"  ground {b.on_ground}  fly {b.flying}"
            )
        lines.append(
            f"yaw {math.degrees(self.controls.yaw):.0f}  pitch "
            f"{math.degrees(self.controls.pitch):.0f}  edits pending {r.pending_edits}"
        )
        if self.target is not None:
            t = self.target
            lines.append(f"target {t.pos} {BLOCKS.get(t.block).name} at {t.distance:.1f}")
        if self.session.latency_s:
            lines.append(f"emulated latency {self.session.latency_s * 1000:.0f} ms each way")
        if self.source is not None:
            lines.extend(self.source.debug_lines())
        return lines

    # -- screenshots ------------------------------------------------------------------------
    def _maybe_screenshot(self, now: float) -> None:
        while self._shot_requests:
            self.save_screenshot(self._shot_requests.pop(0))
        cfg = self.config
        if self._screenshot_done or self.loaded_at is None or cfg.screenshot is None:
            return
        if now - self.loaded_at >= cfg.screenshot_after and self.rendered:
            self._screenshot_done = True
            self.save_screenshot(cfg.screenshot)

    def request_screenshot(self, path: str) -> None:
        """Save the next frame drawn (so it shows what the script just did)."""
        self._shot_requests.append(path)

    def save_screenshot(self, path: str) -> None:
        """Save the frame as shown (HUD included unless --no-hud) as PNG."""
        import pygame

        h, w, _ = self.canvas.shape
        pygame.image.save(pygame.image.frombuffer(self.canvas, (w, h), "RGB"), path)
        self.screenshots.append(path)
        self.log(f"screenshot saved to {path}")

    # -- summary ---------------------------------------------------------------------------
    def summary(self) -> dict:
        elapsed = max(1e-9, self.clock() - self.started_at)
        t = self.session.traffic
        return {
            "frames": self.frames,
            "rendered": self.rendered,
            "seconds": round(elapsed, 2),
            "fps": round(self.frames / elapsed, 1),
            "sections": len(self.replica),
            "events": self.controls.events,
            "bytes_in": t.bytes_in,
            "bytes_out": t.bytes_out,
            "state": self.session.state.value,
        }
