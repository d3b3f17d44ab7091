"""`RenderNode`: one sim connection, one world replica, many streaming sessions.

Tasks (one TaskGroup; `stop` ends them all)::

    sim       connect as role render-node, apply updates, reconnect on loss
    interest  tell the sim where the served players are (``view``), 4x a second
    http      websockets server: ``/session`` signalling + plain-HTTP
              ``/metrics``, ``/stats``, ``/health`` and the browser page

Each signalling websocket runs one `StreamSession` inside the websocket
server's own handler task, so a session that fails ends only itself.
Frames render on ``workers`` threads shared by all sessions (one per core
by default). A lone session's frame uses every core (the ray-caster splits
its rows: the lowest latency); once several sessions stream, each frame
runs on one core beside the others' (`RenderNode.frame_threads`): no
fork/join per pass and ~10 % less CPU a frame, which is what capacity is.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import logging
import math
import mimetypes
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from client.connection import ConnectError, SimConnection
from client.connection import ConnectionClosed as SimClosed
from renderer import kernel_threadsafe
from renderer.node.metrics import NodeMetrics
from renderer.node.session import SessionState, StreamSession
from renderer.node.world import NodeWorld
from scheduler.messages import NodeStatus
from shiftcraft import stream_protocol as sp
from shiftcraft.protocol import Message, ProtocolError, Update, Welcome

log = logging.getLogger("shiftcraft.render.node")

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
INTEREST_PERIOD_S = 0.25
CENTRE_MOVE = 8.0  # blocks a served player moves before the sim hears a new centre
OFFER_TIMEOUT_S = 10.0
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")  # names the scheduler accepts


@dataclass(slots=True)
class NodeConfig:
    sim_url: str
    host: str = "127.0.0.1"
    port: int = 8770
    token: str = ""  # for the sim (role render-node)
    name: str = field(default_factory=lambda: f"node-{secrets.token_hex(4)}")
    session_token: str = ""  # clients must present it in their offer ("" = open)
    max_sessions: int = 16
    max_view_distance: int = 96
    max_bitrate: int = 8_000_000
    workers: int = 0  # frames rendered at once (0: one per core, where the kernel allows it)
    render_threads: int | None = None  # numba threads a frame (None: by sessions streaming)
    prefetch_spawn: bool = True  # keep the spawn area loaded for sessions to come
    allow_proxy: bool = True  # join the sim as the player for offers with proxy=true
    # The scheduler (issue 5): register there and push a NodeStatus once a second.
    scheduler_url: str = ""  # ws://HOST:PORT of `shiftcraft scheduler` ("" = none)
    scheduler_token: str = ""
    location: str = "edge"  # edge | cloud: what the scheduler's policies weigh
    capacity: int | None = None  # sessions offered to the scheduler (None: max_sessions)
    public_url: str = ""  # what clients open ("" = ws://HOST:PORT as bound)
    cost: float | None = None  # per session, for the score policy (None: by location)

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"bad port {self.port}")
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        if self.workers < 0 or (self.render_threads is not None and self.render_threads < 1):
            raise ValueError("workers must be >= 0 and render_threads >= 1")
        if not 16 <= self.max_view_distance <= 512:
            raise ValueError("max_view_distance must be 16..512")
        if not self.sim_url.startswith(("ws://", "wss://")):
            raise ValueError(f"--sim must be a ws:// URL, got {self.sim_url!r}")
        if self.scheduler_url and not self.scheduler_url.startswith(("ws://", "wss://")):
            raise ValueError(f"--scheduler must be a ws:// URL, got {self.scheduler_url!r}")
        if self.location not in ("edge", "cloud"):
            raise ValueError(f"--location must be edge or cloud, not {self.location!r}")
        if self.capacity is not None and self.capacity < 0:
            raise ValueError("--capacity must be >= 0")
        if self.public_url and not self.public_url.startswith(("ws://", "wss://")):
            raise ValueError(f"--public-url must be a ws:// URL, got {self.public_url!r}")
        if self.scheduler_url and not NODE_NAME_RE.match(self.name):
            raise ValueError(f"--name {self.name!r}: the scheduler needs 1-32 of A-Z a-z 0-9 _ . -")


class RenderNode:
    def __init__(self, config: NodeConfig) -> None:
        config.validate()
        self.config = config
        self.metrics = NodeMetrics()
        self.world = NodeWorld()
        self.cores = os.cpu_count() or 1
        self.render_workers = config.workers or self.cores  # (1 where unsafe: see `run`)
        self.pool = ThreadPoolExecutor(self.render_workers, thread_name_prefix="render")
        # Encoding overlaps the next render (x264 releases the GIL);
        # each session encodes one frame at a time, in order.
        self.encode_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="encode")
        # A new session's first view (a full window of sections) is built here,
        # at a lower CPU priority: setting up one player must not stall the
        # frames of the players already streaming (or of the node it replaces).
        self.prepare_pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="prepare", initializer=_lower_priority
        )
        # Each session's view upkeep between frames (`SessionPipeline.upkeep`),
        # at the same lower priority: it fills the slack the frames leave.
        self.upkeep_pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="upkeep", initializer=_lower_priority
        )
        self.sessions: dict[str, StreamSession] = {}
        self.spawn: tuple[float, float, float] = (0.0, 80.0, 0.0)
        self.sim: SimConnection | None = None
        self.welcome: Welcome | None = None
        self.ready = asyncio.Event()  # listening and connected to the sim once
        self.url = ""
        self.ended_reasons: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._stop = asyncio.Event()
        self._server: Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self._centres_sent: list[tuple[float, float, float]] | None = None
        self._distance_sent = 0
        self._interest_wake = asyncio.Event()
        self.link: Any = None  # scheduler.agent.SchedulerLink with --scheduler
        self._cpu_last: tuple[float, float] | None = None

    # -- running -----------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        cfg = self.config
        if self.render_workers > 1 and not await asyncio.to_thread(kernel_threadsafe):
            # numba's fallback threading layer: one frame at a time.
            self.pool.shutdown()
            self.render_workers = 1
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="render")
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._sim_loop(), name="sim")
                tg.create_task(self._interest_loop(), name="interest")
                self._server = await serve(
                    self._handle,
                    cfg.host,
                    cfg.port,
                    process_request=self._process_request,
                    max_size=sp.MAX_SIGNAL_BYTES,
                    compression=None,
                    ping_interval=10,
                    ping_timeout=10,
                    close_timeout=2,
                )
                sock = next(iter(self._server.sockets))
                host, port = sock.getsockname()[:2]
                self.url = f"ws://{host}:{port}"
                if cfg.scheduler_url:
                    tg.create_task(self._scheduler_loop(), name="scheduler link")
                await self._stop.wait()
                await self._shutdown()
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.encode_pool.shutdown(wait=True, cancel_futures=True)
            self.prepare_pool.shutdown(wait=True, cancel_futures=True)
            self.upkeep_pool.shutdown(wait=True, cancel_futures=True)

    def frame_threads(self) -> int | None:
        """numba threads for the next frame (None: all; see `threads_per_frame`)."""
        if self.config.render_threads is not None:
            return self.config.render_threads
        streaming = sum(1 for s in self.sessions.values() if not s.ended)
        return threads_per_frame(self.cores, self.render_workers, streaming)

    def first_tick(self, session: StreamSession, interval: float) -> float:
        """When ``session``'s frame loop should first render (`staggered_start`)."""
        others = [
            s.next_tick
            for s in self.sessions.values()
            if s is not session and not s.ended and s.next_tick is not None
        ]
        return staggered_start(time.monotonic(), interval, others)

    async def _shutdown(self) -> None:
        for s in list(self.sessions.values()):
            s.end("node_shutdown", "the render node is shutting down")
        if self._handlers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(8.0):
                    await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3.0):
                    await self._server.wait_closed()
        if self.sim is not None:
            with contextlib.suppress(Exception):
                await self.sim.close()

    async def wait_ready(self, task: asyncio.Task | None = None, timeout: float = 120.0) -> None:
        """Until listening and welcomed by the sim (or ``task`` failed)."""
        async with asyncio.timeout(timeout):
            while not self.ready.is_set():
                if task is not None and task.done():
                    task.result()
                    raise RuntimeError("render node stopped before it was ready")
                await asyncio.sleep(0.05)

    # -- the sim -------------------------------------------------------------------------
    async def _sim_loop(self) -> None:
        cfg = self.config
        delay = 0.5
        while not self._stop.is_set():
            try:
                conn = await SimConnection.connect(
                    cfg.sim_url,
                    cfg.name,
                    role="render-node",
                    token=cfg.token,
                    lazy=True,
                    on_message=self._on_sim_message,
                )
            except ConnectError as exc:
                if exc.code not in ("refused", "network", "timeout", "closed", "handshake"):
                    raise  # a wrong token or version: retrying will not help
                log.warning("sim not reachable (%s); retrying in %.1f s", exc, delay)
                await self._sleep_or_stop(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.5
            self.sim = conn
            self.welcome = w = conn.welcome
            self.spawn = tuple(w.pos)  # type: ignore[assignment]
            self.world.reset(w.tick_rate)
            self._centres_sent = None
            self._interest_wake.set()
            self.metrics.sim_connected.set(1)
            if self.url:
                self.ready.set()
            log.info("connected to the sim at %s as %s", cfg.sim_url, cfg.name)
            stop = asyncio.ensure_future(self._stop.wait())
            closed = asyncio.ensure_future(conn.wait_closed())
            try:
                await asyncio.wait({stop, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                closed.cancel()
            self.metrics.sim_connected.set(0)
            if self._stop.is_set():
                return
            log.warning("lost the sim connection: %s", conn.close_exception)
            self.sim = None
            await self._sleep_or_stop(delay)

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    def _on_sim_message(self, msg: Message) -> None:
        if isinstance(msg, Update):
            self.world.apply(msg)
            self.metrics.sections.set(self.world.sections)

    def session_streaming(self, session: StreamSession) -> None:
        self._interest_wake.set()
        if not self.ready.is_set() and self.url:
            self.ready.set()

    async def _interest_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(INTEREST_PERIOD_S):
                    await self._interest_wake.wait()
            self._interest_wake.clear()
            if self.url and self.sim is not None and not self.ready.is_set():
                self.ready.set()
            sim = self.sim
            if sim is None or sim.closed:
                continue
            centres = [s.camera.feet for s in self.sessions.values() if not s.ended]
            distance = max(
                (s.view_distance for s in self.sessions.values()),
                default=self.config.max_view_distance,
            )
            if self.config.prefetch_spawn:
                centres.append(self.spawn)
            centres = centres[:64]
            if self._centres_changed(centres) or distance != self._distance_sent:
                try:
                    await sim.send_view(centres, distance=max(16, distance))
                except SimClosed:
                    continue
                self._centres_sent = centres
                self._distance_sent = distance

    def _centres_changed(self, centres: list[tuple[float, float, float]]) -> bool:
        old = self._centres_sent
        if old is None or len(old) != len(centres):
            return True
        return any(math.dist(a, b) > CENTRE_MOVE for a, b in zip(old, centres, strict=True))

    # -- the scheduler ---------------------------------------------------------------------
    def signalling_url(self) -> str:
        """What clients open: ``--public-url``, else the bound address (0.0.0.0: our hostname)."""
        cfg = self.config
        if cfg.public_url:
            return cfg.public_url
        host, _, port = self.url.removeprefix("ws://").rpartition(":")
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = socket.gethostname()  # in compose, the container's name resolves
        return f"ws://{host}:{port}/session"

    async def _scheduler_loop(self) -> None:
        from scheduler.agent import LinkFailed, SchedulerLink

        cfg = self.config
        self.link = SchedulerLink.node(
            cfg.scheduler_url,
            cfg.name,
            location=cfg.location,
            capacity=cfg.max_sessions if cfg.capacity is None else cfg.capacity,
            signalling_url=self.signalling_url(),
            token=cfg.scheduler_token,
            cost=cfg.cost,
            sample=self.node_status,
        )
        stop = asyncio.ensure_future(self._stop.wait())
        run = asyncio.ensure_future(self.link.run())
        try:
            await asyncio.wait({stop, run}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.link.close()
            stop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop
            try:
                await run
            except LinkFailed as exc:
                # Streaming works without the scheduler; say loudly why it is not told.
                log.error("scheduler refused this node: %s", exc)

    def node_status(self) -> NodeStatus:
        """This node's load for the scheduler (its `SchedulerLink` sends it once a second)."""
        cfg = self.config
        now = time.monotonic()
        live = [s for s in self.sessions.values() if not s.ended]
        enc = [v for s in live if (v := _mean(s.stats.encode_ms)) is not None]
        ren = [v for s in live if (v := _mean(s.stats.render_ms)) is not None]
        fps = [s.stats.fps(now) for s in live if s.state == SessionState.STREAMING]
        cpu_total = sum(os.times()[:2])
        cpu = None
        if self._cpu_last is not None and now > self._cpu_last[0]:
            busy = (cpu_total - self._cpu_last[1]) / (now - self._cpu_last[0])
            cpu = min(1.0, max(0.0, busy / (os.cpu_count() or 1)))
        self._cpu_last = (now, cpu_total)
        return NodeStatus(
            t=time.time(),
            sessions=len(live),
            capacity=cfg.max_sessions if cfg.capacity is None else cfg.capacity,
            accepting=not self._stop.is_set() and len(self.sessions) < cfg.max_sessions,
            encode_ms=sum(enc) / len(enc) if enc else None,
            render_ms=sum(ren) / len(ren) if ren else None,
            fps=min(1000.0, sum(fps) / len(fps)) if fps else None,
            cpu=cpu,
            players=sorted({s.player for s in live if NODE_NAME_RE.match(s.player)})[:4096],
        )

    # -- sessions ------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve_session(ws)
        finally:
            self._handlers.discard(task)

    async def _serve_session(self, ws: ServerConnection) -> None:
        path = urlsplit(ws.request.path).path if ws.request else ""
        if path != "/session":
            await _refuse(ws, "not_found", f"no websocket at {path}; signalling is at /session")
            return
        if self._stop.is_set():
            await _refuse(ws, "shutting_down", "the render node is shutting down")
            return
        if len(self.sessions) >= self.config.max_sessions:
            await _refuse(ws, "busy", f"this node serves at most {self.config.max_sessions}")
            return
        try:
            async with asyncio.timeout(OFFER_TIMEOUT_S):
                data = await ws.recv()
            offer = sp.decode_signal(data)
            if not isinstance(offer, sp.Offer):
                raise ProtocolError(
                    "expected_offer", f"first message must be an offer, got {offer.TYPE}"
                )
            if offer.version != sp.STREAM_PROTOCOL_VERSION:
                raise ProtocolError(
                    "bad_version",
                    f"node speaks {sp.STREAM_PROTOCOL_VERSION}, offer {offer.version}",
                )
        except TimeoutError:
            await _refuse(ws, "offer_timeout", f"no offer within {OFFER_TIMEOUT_S:g} s")
            return
        except ProtocolError as exc:
            await _refuse(ws, exc.code, exc.message)
            return
        except ConnectionClosed:
            return
        sid = f"s{next(self._ids)}"
        session = StreamSession(self, sid, offer, ws)
        self.sessions[sid] = session
        self.metrics.sessions_started.inc()
        self._publish_sessions()
        reason = "error"
        try:
            reason = await session.run()
        finally:
            self.sessions.pop(sid, None)
            self.ended_reasons[reason] = self.ended_reasons.get(reason, 0) + 1
            self.metrics.sessions_ended.labels(reason=reason).inc()
            self._publish_sessions()
            self._interest_wake.set()

    def _publish_sessions(self) -> None:
        self.metrics.sessions.set(len(self.sessions))
        self.metrics.target_bitrate.set(
            sum(s.encoder_config.bitrate for s in self.sessions.values()) / 8.0
        )

    # -- plain HTTP -----------------------------------------------------------------------
    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path = urlsplit(request.path).path
        if path == "/metrics":
            self._publish_sessions()
            return _response(http.HTTPStatus.OK, self.metrics.exposition(), CONTENT_TYPE_LATEST)
        if path == "/stats":
            return _json(http.HTTPStatus.OK, self.stats_document())
        if path == "/health":
            ok = self.sim is not None and not self.sim.closed
            return _json(
                http.HTTPStatus.OK if ok else http.HTTPStatus.SERVICE_UNAVAILABLE,
                {"status": "ok" if ok else "no_sim", "sessions": len(self.sessions)},
            )
        if path == "/client.json":
            return _json(http.HTTPStatus.OK, client_document())
        return self._static(path)

    def _static(self, path: str) -> Response:
        name = "index.html" if path in ("/", "") else path.lstrip("/")
        if name.startswith("web/"):
            name = name[4:]
        target = (WEB_ROOT / name).resolve()
        if WEB_ROOT.resolve() not in target.parents or not target.is_file():
            return _response(
                http.HTTPStatus.NOT_FOUND,
                b"not found: try /, /metrics, /stats, /health or a websocket at /session\n",
                "text/plain; charset=utf-8",
            )
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith(("javascript", "json")):
            ctype += "; charset=utf-8"
        return _response(http.HTTPStatus.OK, target.read_bytes(), ctype)

    def stats_document(self) -> dict[str, Any]:
        sessions = [s.describe() for s in self.sessions.values()]
        return {
            "node": self.config.name,
            "sim_connected": self.sim is not None and not self.sim.closed,
            "sessions": len(self.sessions),
            "streaming": sum(
                1 for s in self.sessions.values() if s.state == SessionState.STREAMING
            ),
            "session_list": sessions,
            "sections": self.world.sections,
            "updates": self.world.updates,
            "ended": dict(self.ended_reasons),
            "pid": os.getpid(),
            "time": time.time(),
        }


def _mean(values: Any) -> float | None:
    """Mean of the last few seconds of per-frame times (the deques keep 300 frames)."""
    recent = list(values)[-60:]
    return sum(recent) / len(recent) if recent else None


def client_document() -> dict[str, Any]:
    """What the browser page needs from the game's definitions (kept in one place)."""
    from client.controls import HOTBAR
    from world.blocks import BlockId

    return {
        "stream_protocol": sp.STREAM_PROTOCOL_VERSION,
        "hotbar": [[int(b), BlockId(b).name] for b in HOTBAR],
        "channel": sp.CHANNEL_LABEL,
    }


class _Stopped(Exception):
    pass


async def _refuse(ws: ServerConnection, code: str, message: str) -> None:
    with contextlib.suppress(Exception):
        await ws.send(sp.SignalError(code=code, message=message).encode())
        await ws.close(1008, code)


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def _json(status: http.HTTPStatus, obj: Any) -> Response:
    return _response(status, json.dumps(obj).encode(), "application/json")


def threads_per_frame(cores: int, workers: int, streaming: int) -> int | None:
    """numba threads for one frame when ``streaming`` sessions share
    ``workers`` render workers on ``cores`` cores (None: all of them).

    A lone session gets every core (the lowest latency); several get an
    equal share each, so frames render side by side, one core each on a
    2-core node: no fork and join per pass, ~10 % less CPU a frame."""
    if workers <= 1 or streaming <= 1:
        return None
    return max(1, cores // min(streaming, workers))


def staggered_start(now: float, interval: float, others: Iterable[float]) -> float:
    """The first frame tick (>= ``now``) for a session that renders every
    ``interval`` seconds, given the next ticks of the sessions already
    streaming: the middle of the widest gap between their phases.

    Sessions that tick together reach the render workers in a burst each
    interval and leave them idle between bursts; spread over it (a quarter
    apart for four at one rate) the load is even. (On the 2-core development
    machine `stream-capacity` showed no gain from it within its noise.)"""
    phases = sorted((t - now) % interval for t in others)
    if not phases:
        return now
    gaps = zip(phases, [*phases[1:], phases[0] + interval], strict=True)
    start, end = max(gaps, key=lambda g: g[1] - g[0])
    return now + ((start + end) / 2) % interval


def _lower_priority() -> None:
    """Nice the calling thread by 10 (Linux: a thread's priority is its own)."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + 10))
