"""``shiftcraft play``: play in a window, or headless (scripted, screenshots).

Exit status: 0 after a normal quit, 1 when the client cannot connect (or
gave up), 2 for usage errors and when no window can be opened.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any

from client.config import ClientConfig
from client.device import DEVICE_PROFILES
from client.display import DisplayUnavailable, HeadlessDisplay, WindowDisplay
from client.script import ScriptError, parse_script
from shiftcraft.protocol import NAME_RE
from shiftcraft.serve import calling_on_signals


def _resolution(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def default_name() -> str:
    """The login name, cut to what the protocol accepts (a returning name resumes)."""
    try:
        name = re.sub(r"[^A-Za-z0-9_.-]", "", getpass.getuser())[:32]
    except Exception:
        name = ""
    return name if name and NAME_RE.match(name) else "player"


def build_parser() -> argparse.ArgumentParser:
    d = ClientConfig()
    p = argparse.ArgumentParser(
        prog="shiftcraft play",
        description="play Shiftcraft (local rendering): a window, or --headless",
        epilog="controls: see docs/client.md (WASD, mouse, space, F, shift, ctrl, "
        "left/right click, 1-9, wheel, Esc, F3, F6 (switch rendering), Ctrl-Q)",
    )
    p.add_argument("--server", default=d.server, help="sim server URL (default %(default)s)")
    p.add_argument("--name", default=None, help="player name (default: your login name)")
    p.add_argument("--token", default="", help="join token (servers with --auth)")
    p.add_argument(
        "--res", type=_resolution, default=None,
        help=f"window/frame size WxH (default: the --device's, else {d.width}x{d.height})",
    )  # fmt: skip
    p.add_argument(
        "--render-scale", type=float, default=d.render_scale, help="render at this fraction"
    )
    p.add_argument("--view-distance", type=int, default=d.view_distance, help="blocks")
    p.add_argument("--fov", type=float, default=d.fov_deg, help="vertical field of view, degrees")
    p.add_argument("--headless", action="store_true", help="no window (scripts, screenshots)")
    p.add_argument("--seconds", type=float, default=None, help="quit after this many seconds")
    p.add_argument("--max-fps", type=float, default=None, help="frame cap (0 = none)")
    p.add_argument("--screenshot", default=None, help="save a PNG of the view to this path")
    p.add_argument(
        "--after",
        type=float,
        default=d.screenshot_after,
        help="seconds after the world has loaded to take --screenshot (default %(default)s)",
    )
    p.add_argument(
        "--script", default=None, help='scripted input, e.g. "walk 2; turn 90; place; quit"'
    )
    p.add_argument("--script-file", default=None, help="read the script from a file")
    p.add_argument("--loop-script", action="store_true", help="repeat the script forever")
    p.add_argument("--no-hud", action="store_true", help="draw no HUD (clean screenshots)")
    p.add_argument(
        "--latency-ms", type=float, default=0.0, help="emulate this one-way latency (each way)"
    )
    p.add_argument("--input-hz", type=float, default=d.input_hz, help="input messages per second")
    p.add_argument("--no-reconnect", action="store_true", help="quit when the server goes away")
    p.add_argument(
        "--render", choices=("local", "remote"), default=d.render,
        help="render here, or show a render node's stream (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--render-node", default="", help="render node URL for --render remote")
    p.add_argument("--stream-fps", type=int, default=d.stream_fps, help="remote stream fps")
    p.add_argument(
        "--stream-bitrate", type=int, default=d.stream_bitrate, help="remote stream bits/s (max)"
    )
    p.add_argument("--codec", default="", choices=("", "H264", "VP8"), help="remote stream codec")
    g = p.add_argument_group("migration, scheduler and telemetry (docs/client.md)")
    g.add_argument(
        "--node", action="append", default=[], type=_node, metavar="NAME=URL",
        help="a render node F6, --migrate-at and /control may switch to (repeatable); "
        "--render-node is also known as 'node'",
    )  # fmt: skip
    g.add_argument(
        "--migrate-at", action="append", default=[], type=_migrate_at, metavar="SECONDS:TARGET",
        help="switch rendering to TARGET (local, a node name or a URL) this many seconds "
        "after the game loop starts (repeatable)",
    )  # fmt: skip
    g.add_argument(
        "--migration-timeout", type=float, default=d.migration_timeout_s,
        help="abandon a switch whose target shows no frame within this many seconds",
    )  # fmt: skip
    g.add_argument(
        "--scheduler", default="", metavar="ws://HOST:PORT",
        help="register with `shiftcraft scheduler` here: telemetry out, migrate commands in",
    )  # fmt: skip
    g.add_argument("--scheduler-token", default="", help="token for the scheduler")
    g.add_argument(
        "--device", default=None, choices=sorted(DEVICE_PROFILES),
        help="device profile: its battery model and (unless --res) resolution",
    )  # fmt: skip
    g.add_argument(
        "--battery-level", type=float, default=None, metavar="0..1",
        help="start the modelled battery at this level (models one without --device)",
    )  # fmt: skip
    g.add_argument(
        "--charging", action=argparse.BooleanOptionalAction, default=None,
        help="start the modelled battery on (--charging) or off (--no-charging) a charger",
    )  # fmt: skip
    g.add_argument(
        "--battery-capacity-j", type=float, default=None, metavar="J",
        help="size of the modelled battery in joules (default: the device's)",
    )  # fmt: skip
    g.add_argument(
        "--metrics-port", type=int, default=d.metrics_port,
        help="serve /metrics, /health, /state and POST /control here (0 = off)",
    )  # fmt: skip
    g.add_argument("--metrics-host", default=d.metrics_host, help="address for --metrics-port")
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")
    return p


def _node(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name or not url:
        raise argparse.ArgumentTypeError(f"expected NAME=URL, got {text!r}")
    return name.strip(), url.strip()


def _migrate_at(text: str) -> tuple[float, str]:
    at, sep, target = text.partition(":")  # the first colon: a URL target has more
    try:
        seconds = float(at)
    except ValueError:
        seconds = -1.0
    if not sep or not target or seconds < 0:
        raise argparse.ArgumentTypeError(
            f"expected SECONDS:TARGET (e.g. 10:edge-1, 30:local), got {text!r}"
        )
    return seconds, target.strip()


def config_from_args(args: argparse.Namespace) -> ClientConfig:
    script_text = args.script
    if args.script_file:
        script_text = Path(args.script_file).read_text()
    if args.res is not None:
        width, height = args.res
    elif args.device:
        width, height = DEVICE_PROFILES[args.device].resolution
    else:
        d = ClientConfig()
        width, height = d.width, d.height
    nodes: dict[str, str] = {}
    for name, url in args.node:
        if name in nodes:
            raise ValueError(f"--node {name} given twice")
        nodes[name] = url
    if args.render_node and args.render_node not in nodes.values():
        nodes.setdefault("node", args.render_node)
    max_fps = args.max_fps
    if max_fps is None:
        max_fps = 0.0 if args.headless else 144.0  # a window need not outrun the screen
    return ClientConfig(
        server=args.server,
        name=args.name or default_name(),
        token=args.token,
        width=width,
        height=height,
        render_scale=args.render_scale,
        view_distance=args.view_distance,
        fov_deg=args.fov,
        headless=args.headless,
        seconds=args.seconds,
        max_fps=max_fps,
        screenshot=args.screenshot,
        screenshot_after=args.after,
        script=parse_script(script_text) if script_text else None,
        loop_script=args.loop_script,
        hud=not args.no_hud,
        latency_ms=args.latency_ms,
        input_hz=args.input_hz,
        reconnect=not args.no_reconnect,
        render=args.render,
        render_node=args.render_node,
        stream_fps=args.stream_fps,
        stream_bitrate=args.stream_bitrate,
        stream_codec=args.codec,
        nodes=nodes,
        migrate_at=list(args.migrate_at),
        migration_timeout_s=args.migration_timeout,
        scheduler=args.scheduler,
        scheduler_token=args.scheduler_token,
        device=args.device,
        battery_level=args.battery_level,
        charging=args.charging,
        battery_capacity_j=args.battery_capacity_j,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
    )


class StartError(Exception):
    """The agent could not start (the metrics port is taken, ...)."""


async def _play(game: Any) -> int:
    """The game loop with its agent beside it: migration, telemetry, scheduler, HTTP."""
    from client.agent import ClientAgent

    agent = ClientAgent(game)
    try:
        await agent.start()
    except OSError as exc:
        await agent.stop()
        cfg = game.config
        raise StartError(
            f"cannot serve --metrics-port on {cfg.metrics_host}:{cfg.metrics_port}: {exc}"
        ) from None
    # SIGTERM (experiment runners, containers) quits like Ctrl-Q: the loop ends,
    # the session says goodbye, the summary is printed and the exit status is 0.
    try:
        with calling_on_signals(lambda: setattr(game.controls, "quit", True), signal.SIGTERM):
            return await game.run()
    finally:
        await agent.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
        if not NAME_RE.match(config.name):
            raise ValueError(f"bad name {config.name!r}: use 1-32 of A-Z a-z 0-9 _ . -")
        config.validate()
    except (ValueError, ScriptError, OSError) as exc:
        print(f"shiftcraft play: {exc}", file=sys.stderr)
        return 2

    from client.game import Game  # after argument errors: pygame and numba load here

    try:
        display = (
            HeadlessDisplay(config.width, config.height)
            if config.headless
            else WindowDisplay(config.width, config.height, title=f"Shiftcraft - {config.name}")
        )
    except DisplayUnavailable as exc:
        print(f"shiftcraft play: {exc}", file=sys.stderr)
        return 2
    game = Game(config, display)
    try:
        code = asyncio.run(_play(game))
    except StartError as exc:
        print(f"shiftcraft play: {exc}", file=sys.stderr)
        display.close()
        return 2
    except KeyboardInterrupt:
        print("shiftcraft play: interrupted", file=sys.stderr)
        return 130
    print(f"shiftcraft play: {json.dumps(game.summary())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
