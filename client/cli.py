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
import sys
from pathlib import Path

from client.config import ClientConfig
from client.display import DisplayUnavailable, HeadlessDisplay, WindowDisplay
from client.script import ScriptError, parse_script
from shiftcraft.protocol import NAME_RE


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
        "left/right click, 1-9, wheel, Esc, F3, Ctrl-Q)",
    )
    p.add_argument("--server", default=d.server, help="sim server URL (default %(default)s)")
    p.add_argument("--name", default=None, help="player name (default: your login name)")
    p.add_argument("--token", default="", help="join token (servers with --auth)")
    p.add_argument(
        "--res", type=_resolution, default=(d.width, d.height), help="window/frame size WxH"
    )
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
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")
    return p


def config_from_args(args: argparse.Namespace) -> ClientConfig:
    script_text = args.script
    if args.script_file:
        script_text = Path(args.script_file).read_text()
    width, height = args.res
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
    )


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
        code = asyncio.run(game.run())
    except KeyboardInterrupt:
        print("shiftcraft play: interrupted", file=sys.stderr)
        return 130
    print(f"shiftcraft play: {json.dumps(game.summary())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
