"""``shiftcraft bench stream`` and ``stream-capacity``: remote rendering over real WebRTC.

Everything is a real process on this machine: ``shiftcraft server``
(terrain, a fresh temporary world) and ``shiftcraft render-node`` are
children; the headless remote client runs here, in the benchmark process,
with `client.remote.RemoteStream` (aiortc), as a game client in remote
mode would.

``stream``: one player ("bench") joins the sim as a player and opens a
session with the node. Every 1/60 s it makes an input frame (walking in a
circle while panning, so every frame differs and sections keep streaming)
and sends it to the sim (authoritative) and over the data channel to the
node; each sim update's authoritative body is forwarded to the node
(``state``), as the game does. Its display loop shows every frame as soon
as it is decoded (converted to RGB, as a display would). After the world
has loaded and ``--warmup`` seconds, it measures for ``--seconds``:

* ``g2g_p50_ms`` / ``g2g_p95_ms`` — glass-to-glass: the node's render-finished
  stamp (the moment the frame exists, like a camera's capture) -> the frame
  shown here. ``g2g_from_render_start_*`` counts from the moment the camera
  pose was sampled (adds the render time).
* ``fps`` — frames shown per second;
* ``encode_p50_ms`` — the node's conversion + encode time per frame;
* ``mbps`` — median over 1 s windows of video bits received (RTP payload + header);
* ``input_to_photon_p50_ms`` / ``_p95_ms`` — an input frame sent -> the first
  shown frame whose stamp says the camera reflects it.

``stream-capacity``: N headless clients, each its own session (the same
circle-walk-and-pan as ``stream``, from spawn, each starting at another
angle; data-channel input only: the node predicts the walk against its
replica, no sim player), N = 1, 2, ... until one
session's shown fps falls below ``--min-fps``; ``sessions`` is the last N
where all held. The clients here only decode (no RGB conversion) to leave
the node as much of the shared CPU as possible; they still share it.

Reproduce: ``shiftcraft bench stream --res 640x360 --fps 30 --seconds 20 --json``
and ``shiftcraft bench stream-capacity --json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.bots.launch import Child, ServerProcess, fetch_json, start_render_node
from shiftcraft.bench import progress

INPUT_HZ = 60
PAN_RAD_S = 0.5  # camera pan while walking in a circle


def _resolution(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--res", type=_resolution, default=(640, 360), help="stream size WxH")
    parser.add_argument("--fps", type=int, default=30, help="stream frame rate")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--bitrate", type=int, default=1_000_000, help="ceiling, bits/s")
    parser.add_argument("--codec", default="H264", choices=("H264", "VP8"))
    parser.add_argument("--view-distance", type=int, default=96, help="blocks")
    parser.add_argument("--seed", type=int, default=1234, help="world seed")
    parser.add_argument("--generator", default="terrain", choices=("terrain", "flat"))
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--workers", type=int, default=0, help="node render workers (0: per core)")
    parser.add_argument("--render-threads", type=int, default=0, help="numba threads (0: all)")
    parser.add_argument("--load-timeout", type=float, default=120.0, help="max wait for the world")


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return asyncio.run(measure_stream(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; children stopped")
        raise SystemExit(130) from None


# -- processes -------------------------------------------------------------------------------
@dataclass
class NodeChild:
    child: Child
    url: str

    @property
    def http_url(self) -> str:
        return "http://" + self.url.removeprefix("ws://").rstrip("/")

    async def stats(self) -> dict[str, Any]:
        return await fetch_json(self.http_url + "/stats", 5.0)

    @classmethod
    async def start(cls, sim_url: str, *args: str, timeout: float = 120.0) -> NodeChild:
        child, url = await start_render_node(
            ["--sim", sim_url, "--port", "0", *args], timeout, progress
        )
        return cls(child, url)


async def start_stack(args: argparse.Namespace, tmp: str) -> tuple[ServerProcess, NodeChild]:
    server_args = [
        "--port", "0", "--db", str(Path(tmp) / "world.sqlite3"),
        "--generator", args.generator, "--seed", str(args.seed),
        "--view-distance", str(args.view_distance), "--log-level", "WARNING",
    ]  # fmt: skip
    progress(f"starting sim ({args.generator}, seed {args.seed})")
    server = await ServerProcess.start(server_args)
    progress("starting render node")
    try:
        node = await NodeChild.start(
            server.url,
            "--view-distance", str(args.view_distance),
            "--workers", str(args.workers), "--log-level", "WARNING",
            *(["--render-threads", str(args.render_threads)] if args.render_threads else []),
        )  # fmt: skip
    except BaseException:
        await server.child.stop()
        raise
    return server, node


async def stop_stack(server: ServerProcess | None, node: NodeChild | None) -> None:
    if node is not None:
        await node.child.stop(timeout=15.0)
    if server is not None:
        await server.child.stop()


async def wait_loaded(node: NodeChild, timeout: float, quiet: float = 2.0) -> int:
    """Until the node's replica stops growing; returns its section count."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = (await node.stats())["sections"]
        if n != last:
            last, since = n, time.monotonic()
        elif n > 0 and time.monotonic() - since >= quiet:
            return n
        await asyncio.sleep(0.25)
    raise SystemExit(f"the world did not load within {timeout:g} s")


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)), 2) if values else None


# -- stream ------------------------------------------------------------------------------------
class Player:
    """The benchmark's player: sim connection + remote stream + a 60 Hz input loop."""

    def __init__(self, sim, stream) -> None:
        from client.connection import InputSequencer

        self.sim = sim
        self.stream = stream
        self.seq = InputSequencer()
        self.yaw = 0.0
        self.updates = 0

    def on_sim_message(self, msg: Any) -> None:
        from shiftcraft.protocol import Update

        if isinstance(msg, Update):
            self.updates += 1
            if msg.ack >= 0:
                self.seq.ack(msg.ack)
                self.stream.send_state(msg.ack, msg.pos, msg.vel, msg.on_ground, msg.flying)

    async def input_loop(self, walk: bool = True) -> None:
        period = 1.0 / INPUT_HZ
        next_t = time.monotonic()
        while True:
            next_t += period
            self.yaw = (self.yaw + PAN_RAD_S * period) % (2 * math.pi)
            # Hop now and then so the circle does not stop at the first step up.
            jump = walk and int(next_t * 2) % 4 == 0
            frame = self.seq.frame(period, 1.0 if walk else 0.0, 0.0, self.yaw, -0.15, jump=jump)
            self.stream.send_inputs([frame])
            if self.sim is not None:
                await self.sim.send_inputs([frame])
            delay = next_t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_t = time.monotonic()


async def measure_stream(args: argparse.Namespace) -> dict[str, Any]:
    from client.connection import SimConnection
    from client.remote import RemoteOptions, RemoteStream

    width, height = args.res
    server = node = None
    sim = stream = None
    tasks: list[asyncio.Task] = []
    with tempfile.TemporaryDirectory(prefix="shiftcraft-bench-stream-") as tmp:
        try:
            server, node = await start_stack(args, tmp)
            options = RemoteOptions(
                width=width, height=height, fps=args.fps, bitrate=args.bitrate,
                codec=args.codec, view_distance=args.view_distance,
            )  # fmt: skip
            player: Player | None = None

            def on_message(msg: Any) -> None:
                if player is not None:
                    player.on_sim_message(msg)

            sim = await SimConnection.connect(server.url, "bench", lazy=True, on_message=on_message)
            w = sim.welcome
            stream = RemoteStream(node.url, "bench", options, pos=w.pos, yaw=w.yaw)
            player = Player(sim, stream)
            t_open = time.monotonic()
            await stream.open()
            first = await stream.wait_first_frame(timeout=30)
            progress(f"first frame {1000 * (first - t_open):.0f} ms after opening ({stream.codec})")
            sections = await wait_loaded(node, args.load_timeout)
            progress(f"world loaded ({sections} sections); warming up {args.warmup:g} s")
            loop = asyncio.get_running_loop()
            tasks.append(loop.create_task(player.input_loop(walk=True), name="bench-input"))
            shown_rx: list[tuple[float, int]] = []
            end_warm = time.monotonic() + args.warmup
            while time.monotonic() < end_warm:
                shown = await stream.next_frame(timeout=1.0)
                if shown is not None:
                    stream.to_rgb(shown)
            _reset(stream)
            node0 = await node.stats()
            cpu0 = _cpu_times(server, node)
            progress(f"measuring {args.seconds:g} s")
            t0 = time.monotonic()
            shown_count = 0
            next_sample = t0
            while (now := time.monotonic()) - t0 < args.seconds:
                if now >= next_sample:
                    shown_rx.append((now, stream.jitter.bytes_received))
                    next_sample += 1.0
                shown = await stream.next_frame(timeout=1.0)
                if shown is None:
                    if stream.ended:
                        raise SystemExit(f"the stream ended: {stream.error}")
                    continue
                stream.to_rgb(shown)
                shown_count += 1
            span = time.monotonic() - t0
            shown_rx.append((time.monotonic(), stream.jitter.bytes_received))
            node1 = await node.stats()
            cpu1 = _cpu_times(server, node)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if stream is not None:
                await stream.close()
            if sim is not None:
                await sim.close()
            await stop_stack(server, node)
    st = stream.stats
    mbps = [
        8 * (b1 - b0) / (t1 - t0_) / 1e6
        for (t0_, b0), (t1, b1) in itertools.pairwise(shown_rx)
        if t1 - t0_ > 0.5
    ]
    s0 = _session(node0, "bench")
    s1 = _session(node1, "bench")
    return {
        "g2g_p50_ms": _pct(list(st.g2g_ms), 50),
        "g2g_p95_ms": _pct(list(st.g2g_ms), 95),
        "fps": round(shown_count / span, 2),
        "encode_p50_ms": _pct(list(st.encode_ms), 50),
        "mbps": round(statistics.median(mbps), 3) if mbps else None,
        "input_to_photon_p50_ms": _pct(list(st.input_to_photon_ms), 50),
        "input_to_photon_p95_ms": _pct(list(st.input_to_photon_ms), 95),
        "g2g_from_render_start_p50_ms": _pct(list(st.g2g_start_ms), 50),
        "g2g_from_render_start_p95_ms": _pct(list(st.g2g_start_ms), 95),
        "render_p50_ms": _pct(list(st.render_ms), 50),
        "first_frame_ms": round(1000 * (first - t_open), 1),
        "frames_shown": shown_count,
        "frames_stamped": st.frames_stamped,
        "frames_superseded": st.frames_superseded,
        "node_frames_dropped": (s1.get("dropped", 0) - s0.get("dropped", 0)) if s1 else None,
        "keyframes": (s1.get("keyframes", 0) - s0.get("keyframes", 0)) if s1 else None,
        # Worst of the node's last ~10 s: a render, and the view upkeep before one.
        "node_render_ms_max": s1.get("render_ms_max"),
        "node_prep_ms_max": s1.get("prep_ms_max"),
        "rtt_ms": None if st.rtt_ms is None else round(st.rtt_ms, 2),
        "codec": stream.codec,
        "res": f"{width}x{height}",
        "target_fps": args.fps,
        "seconds": round(span, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        # CPU used in the window, in cores (2.0 = both of a 2-core machine).
        **{f"cpu_{k}_cores": round((cpu1[k] - cpu0[k]) / span, 2) for k in cpu0},
    }


def _cpu_times(server: ServerProcess, node: NodeChild) -> dict[str, float]:
    """CPU seconds (user + system) so far of the sim, the node and this process,
    and of the whole machine (``machine``: all but idle and I/O wait, to
    show how much of it was left)."""
    import psutil

    m = psutil.cpu_times()
    # (Linux counts guest time in user time too: not twice here.)
    idle = sum(getattr(m, f, 0.0) for f in ("idle", "iowait", "guest", "guest_nice"))
    out = {"machine": sum(m) - idle}
    for key, pid in (("sim", server.child.pid), ("node", node.child.pid), ("client", os.getpid())):
        try:
            t = psutil.Process(pid).cpu_times()
            out[key] = t.user + t.system
        except psutil.Error:
            out[key] = 0.0
    return out


def _reset(stream) -> None:
    """Start the measurement window: forget what the warm-up collected."""
    st = stream.stats
    for q in (st.g2g_ms, st.g2g_start_ms, st.input_to_photon_ms, st.encode_ms, st.render_ms):
        q.clear()
    st.frames_stamped = 0
    st.frames_superseded = 0


def _session(doc: dict[str, Any], player: str) -> dict[str, Any]:
    for s in doc.get("session_list", []):
        if s["player"] == player:
            return s
    return {}


# -- capacity ------------------------------------------------------------------------------------
def add_capacity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--res", type=_resolution, default=(640, 360), help="stream size WxH")
    parser.add_argument("--fps", type=int, default=30, help="stream frame rate")
    parser.add_argument("--min-fps", type=float, default=29.0, help="every session must hold this")
    parser.add_argument("--seconds", type=float, default=6.0, help="measurement per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after adding one")
    parser.add_argument("--max-sessions", type=int, default=12)
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--view-distance", type=int, default=96)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--generator", default="terrain", choices=("terrain", "flat"))
    parser.add_argument("--workers", type=int, default=0, help="node render workers (0: per core)")
    parser.add_argument("--render-threads", type=int, default=0, help="numba threads (0: all)")
    parser.add_argument("--load-timeout", type=float, default=120.0)


def run_capacity(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return asyncio.run(measure_capacity(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; children stopped")
        raise SystemExit(130) from None


async def _decode_only(stream, counts: list[float]) -> None:
    """Take every frame (no RGB conversion), recording when it was shown."""
    while not stream.ended:
        shown = await stream.next_frame(timeout=1.0)
        if shown is not None:
            counts.append(time.monotonic())


async def measure_capacity(args: argparse.Namespace) -> dict[str, Any]:
    from client.remote import RemoteOptions, RemoteStream

    width, height = args.res
    server = node = None
    streams: list[RemoteStream] = []
    tasks: list[asyncio.Task] = []
    steps: list[dict[str, Any]] = []
    sessions = 0
    with tempfile.TemporaryDirectory(prefix="shiftcraft-bench-capacity-") as tmp:
        try:
            server, node = await start_stack(args, tmp)
            loop = asyncio.get_running_loop()
            shown: list[list[float]] = []
            for n in range(1, args.max_sessions + 1):
                options = RemoteOptions(
                    width=width, height=height, fps=args.fps, bitrate=args.bitrate,
                    view_distance=args.view_distance,
                )  # fmt: skip
                stream = RemoteStream(node.url, f"cap{n}", options, yaw=n * 0.8)
                await stream.open()
                await stream.wait_first_frame(timeout=30)
                streams.append(stream)
                counts: list[float] = []
                shown.append(counts)
                player = Player(None, stream)
                player.yaw = n * 0.8
                tasks.append(loop.create_task(player.input_loop(walk=True)))
                tasks.append(loop.create_task(_decode_only(stream, counts)))
                if n == 1:
                    await wait_loaded(node, args.load_timeout)
                await asyncio.sleep(args.warmup)
                doc0 = await node.stats()
                cpu0 = _cpu_times(server, node)
                t0 = time.monotonic()
                await asyncio.sleep(args.seconds)
                t1 = time.monotonic()
                cpu1 = _cpu_times(server, node)
                doc1 = await node.stats()
                fps = [sum(1 for t in c if t0 <= t < t1) / (t1 - t0) for c in shown]
                dropped = sum(
                    _session(doc1, s.player).get("dropped", 0)
                    - _session(doc0, s.player).get("dropped", 0)
                    for s in streams
                )
                renders = [
                    r
                    for s in streams
                    if (r := _session(doc1, s.player).get("render_ms_p50")) is not None
                ]
                step = {
                    "sessions": n,
                    "min_fps": round(min(fps), 2),
                    "mean_fps": round(sum(fps) / len(fps), 2),
                    "node_dropped": dropped,
                    "render_ms_p50": round(statistics.median(renders), 2) if renders else None,
                    # CPU in the window, in cores; "client": this process (all N clients).
                    **{f"{k}_cpu_cores": round((cpu1[k] - cpu0[k]) / (t1 - t0), 2) for k in cpu0},
                    # What a frame shown costs the node (render, encode, networking):
                    # capacity is the cores left to it over this times the frame rate.
                    "node_cpu_ms_per_frame": round(
                        1000 * (cpu1["node"] - cpu0["node"]) / max(1.0, sum(fps) * (t1 - t0)), 2
                    ),
                    "loadavg_1m": round(os.getloadavg()[0], 2),
                }
                steps.append(step)
                progress(f"{n} sessions: min fps {step['min_fps']}, mean {step['mean_fps']}")
                if any(s.ended for s in streams):
                    progress("a session ended: stopping")
                    break
                if min(fps) < args.min_fps:
                    break
                sessions = n
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in streams:
                await s.close()
            await stop_stack(server, node)
    return {
        "sessions": sessions,
        "min_fps_required": args.min_fps,
        "res": f"{width}x{height}",
        "target_fps": args.fps,
        "steps": steps,
        "cpu_count": os.cpu_count(),
    }
