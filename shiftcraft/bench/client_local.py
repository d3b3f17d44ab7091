"""``shiftcraft bench client-local``: a headless local-mode client walking a path.

Everything is real: ``shiftcraft server`` runs as a child process (terrain
generator, a fresh temporary world), and the client is the game's own
`client.game.Game` with a `HeadlessDisplay` — the same loop as a window,
rendering every frame with the renderer and drawing the HUD, uncapped. It
waits until the world around spawn has loaded (plus ``--settle``), then
walks a fixed path (hopping and sprinting, mostly straight on, so new
sections keep streaming in) for ``--seconds`` and reports:

* ``fps`` — frames displayed per second over the window;
* ``frame_p99_ms`` (and ``frame_p50_ms``) — intervals between displayed frames;
* ``rss_bytes`` — resident memory of the client process at the end
  (the server is another process and not counted);
* ``rx_bytes_per_s`` — payload bytes received from the sim per second;
* extras: ``sections_loaded``, ``rtt_ms``, ``distance_blocks``, ``corrections``.

Both share this machine's cores, as a player's client and a LAN server would
not; the server mostly idles once the sections are generated.

Reproduce: ``shiftcraft bench client-local --seconds 20 --res 640x360 --json``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
from pathlib import Path
from typing import Any

import psutil

from experiments.bots.launch import ServerProcess
from shiftcraft.bench import progress

# Hop-sprint forward, veering left and right: mostly straight on, so the
# client keeps crossing into new section columns.
PATH_SCRIPT = "hop 3; turn 35; hop 3; turn -70; hop 3; turn 35"


def _resolution(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--res", type=_resolution, default=(640, 360), help="frame size WxH")
    parser.add_argument("--view-distance", type=int, default=96, help="blocks (server and client)")
    parser.add_argument("--seed", type=int, default=1234, help="world seed")
    parser.add_argument("--generator", default="terrain", choices=("terrain", "flat"))
    parser.add_argument("--settle", type=float, default=1.0, help="seconds after loading")
    parser.add_argument("--max-fps", type=float, default=0.0, help="frame cap (0 = none)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="emulated one-way latency")
    parser.add_argument("--load-timeout", type=float, default=120.0, help="max wait for the world")


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return asyncio.run(measure(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; server stopped")
        raise SystemExit(130) from None


class _Window:
    """Collects what the measurement window needs from the game's frame hook."""

    def __init__(self, settle: float, seconds: float, load_timeout: float) -> None:
        self.settle = settle
        self.seconds = seconds
        self.load_timeout = load_timeout
        self.start: float | None = None
        self.end: float | None = None
        self.intervals_ms: list[float] = []
        self.rx0 = 0
        self.rx1 = 0
        self.pos0: tuple[float, float, float] | None = None
        self.pos1: tuple[float, float, float] | None = None
        self.timed_out = False

    def on_frame(self, game: Any, info: Any) -> None:
        now = info.now
        if self.start is None:
            if game.loaded_at is None:
                if now - game.started_at > self.load_timeout:
                    self.timed_out = True
                    game.controls.quit = True
                return
            if now - game.loaded_at < self.settle:
                return
            self.start = now
            self.rx0 = game.session.traffic.bytes_in
            self.pos0 = game.predictor.render_position()
            progress(f"world loaded ({len(game.replica)} sections); measuring {self.seconds:g} s")
            return
        self.intervals_ms.append(info.interval_s * 1000.0)
        if now - self.start >= self.seconds:
            self.end = now
            self.rx1 = game.session.traffic.bytes_in
            self.pos1 = game.predictor.render_position()
            game.controls.quit = True


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from client.config import ClientConfig
    from client.display import HeadlessDisplay
    from client.game import Game
    from client.script import parse_script
    from client.stats import percentile

    width, height = args.res
    with tempfile.TemporaryDirectory(prefix="shiftcraft-bench-") as tmp:
        server_args = [
            "--port", "0",
            "--db", str(Path(tmp) / "world.sqlite3"),
            "--generator", args.generator,
            "--seed", str(args.seed),
            "--view-distance", str(args.view_distance),
            "--log-level", "WARNING",
        ]  # fmt: skip
        progress(f"starting server ({args.generator}, seed {args.seed})")
        server = await ServerProcess.start(server_args)
        try:
            config = ClientConfig(
                server=server.url,
                name="bench",
                width=width,
                height=height,
                view_distance=args.view_distance,
                headless=True,
                max_fps=args.max_fps,
                script=parse_script(PATH_SCRIPT),
                loop_script=True,
                latency_ms=args.latency_ms,
                reconnect=False,
            )
            game = Game(config, HeadlessDisplay(width, height), log=progress)
            window = _Window(args.settle, args.seconds, args.load_timeout)
            game.on_frame = window.on_frame
            code = await game.run()
        finally:
            await server.child.stop()
    if window.timed_out:
        raise SystemExit(f"the world did not load within {args.load_timeout:g} s")
    if code != 0 or window.start is None or window.end is None:
        raise SystemExit(f"the client stopped early ({game.error or game.session.state.value})")
    span = window.end - window.start
    dist = math.dist(window.pos0, window.pos1) if window.pos0 and window.pos1 else 0.0
    rtt = game.session.rtt
    return {
        "fps": round(len(window.intervals_ms) / span, 2),
        "frame_p99_ms": round(percentile(window.intervals_ms, 99), 3),
        "rss_bytes": psutil.Process().memory_info().rss,
        "rx_bytes_per_s": round((window.rx1 - window.rx0) / span, 1),
        "frame_p50_ms": round(percentile(window.intervals_ms, 50), 3),
        "sections_loaded": len(game.replica),
        "rtt_ms": None if rtt is None else round(rtt * 1000.0, 2),
        "distance_blocks": round(dist, 1),
        "corrections": game.predictor.corrections if game.predictor else 0,
        "res": f"{width}x{height}",
        "view_distance": args.view_distance,
        "seconds": round(span, 2),
    }
