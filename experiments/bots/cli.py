"""``shiftcraft bots``: run headless bot players against a server, print a summary.

Progress goes to stderr every ``--progress-every`` seconds (JSON lines with
``--json``, which the tick bench and the demo read); the summary goes to
stdout at the end. SIGINT/SIGTERM stop the bots cleanly and still print it.

Examples::

    shiftcraft bots --count 50 --behaviour walk-modify --seconds 60
    shiftcraft bots --count 1 --behaviour walk --record trace.jsonl --seconds 20
    shiftcraft bots --count 5 --behaviour replay --trace trace.jsonl
    shiftcraft bots --count 3 --behaviour follow --target alice
    shiftcraft bots --count 4 --render local --render-res 160x90 --render-fps 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from dataclasses import asdict

from experiments.bots.behaviours import BEHAVIOURS, BehaviourOptions
from experiments.bots.runner import Progress, RunConfig, make_bots, run_bots
from experiments.bots.view import VIEWS, ViewOptions


def _resolution(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not m or int(m.group(1)) < 16 or int(m.group(2)) < 16:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT of at least 16x16, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shiftcraft bots", description=__doc__.splitlines()[0])
    p.add_argument("--server", default="ws://127.0.0.1:8765", help="sim server URL")
    p.add_argument("--count", type=int, default=10, help="number of bots")
    p.add_argument("--behaviour", "--behavior", default="walk", choices=sorted(BEHAVIOURS))
    p.add_argument(
        "--seconds", type=float, default=30.0, help="run time from the first join; 0 = until ^C"
    )
    p.add_argument("--token", default="", help="token sent in hello (same for every bot)")
    p.add_argument("--name-prefix", default="bot", help="bots are named PREFIX0, PREFIX1, ...")
    p.add_argument("--join-rate", type=float, default=20.0, help="joins per second")
    p.add_argument("--seed", type=int, default=0, help="seeds every bot's RNG (with its name)")
    p.add_argument("--role", default="bot", choices=("bot", "player"))
    p.add_argument("--box", type=float, default=16.0, help="half-size of the walk area, blocks")
    d = BehaviourOptions()
    p.add_argument("--edit-interval", type=float, default=1.0, help="mean seconds between edits")
    p.add_argument(
        "--trip-every",
        type=float,
        default=d.trip_every,
        help="walk: mean seconds between long trips out of the box (0 = none)",
    )
    p.add_argument(
        "--trip-distance", type=float, default=d.trip_distance, help="walk: trip length, blocks"
    )
    p.add_argument(
        "--heading", type=float, default=None, help="explore: degrees, 0 = +z, 90 = +x (random)"
    )
    p.add_argument("--target", default="", help="follow: player name (default: the nearest)")
    p.add_argument(
        "--tnt-interval", type=float, default=d.tnt_interval, help="tnt: seconds between charges"
    )
    p.add_argument("--trace", default="", help="replay: JSONL trace ({name} = the bot's name)")
    p.add_argument("--loop", action="store_true", help="replay: start over at the end")
    p.add_argument(
        "--record",
        default="",
        metavar="PATH",
        help="record each bot's input trace (JSONL; {name} = the bot's name)",
    )
    p.add_argument(
        "--render",
        default="none",
        choices=sorted(VIEWS),
        help="none, or local: each bot renders its view with the client's renderer",
    )
    v = ViewOptions()
    p.add_argument("--render-res", type=_resolution, default=(v.width, v.height), metavar="WxH")
    p.add_argument("--render-fps", type=float, default=v.fps, help="rendered frames/s per bot")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--progress-every", type=float, default=5.0, help="seconds; 0 = quiet")
    p.add_argument("--json", action="store_true", help="JSON summary and JSON progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.count < 0 or args.join_rate < 0 or args.seconds < 0:
        print("shiftcraft bots: --count, --join-rate and --seconds must be >= 0", file=sys.stderr)
        return 2
    cfg = RunConfig(
        url=args.server,
        count=args.count,
        behaviour=args.behaviour,
        seconds=args.seconds,
        token=args.token,
        name_prefix=args.name_prefix,
        join_rate=args.join_rate,
        seed=args.seed,
        role=args.role,
        connect_timeout=args.connect_timeout,
        options=BehaviourOptions(
            box=args.box,
            edit_interval=args.edit_interval,
            trip_every=args.trip_every,
            trip_distance=args.trip_distance,
            heading=args.heading,
            target=args.target,
            tnt_interval=args.tnt_interval,
            trace=args.trace,
            loop=args.loop,
        ),
        record=args.record,
        render=args.render,
        view=ViewOptions(width=args.render_res[0], height=args.render_res[1], fps=args.render_fps),
    )

    def show_progress(p: Progress) -> None:
        if args.json:
            line = json.dumps({"event": "progress", **asdict(p)})
        else:
            line = (
                f"[{p.elapsed_s:6.1f}s] joined {p.joined}/{cfg.count} warm {p.warm}"
                f" failed {p.failed} edits {p.edits_ok} ok / {p.edits_rejected} rejected"
            )
        print(line, file=sys.stderr, flush=True)

    async def amain() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            # Bad options (a missing trace) fail here, before any join.
            bots = make_bots(cfg)
        except ValueError as exc:
            print(f"shiftcraft bots: {exc}", file=sys.stderr)
            return 2
        summary = await run_bots(
            cfg,
            bots=bots,
            stop=stop,
            on_progress=show_progress if args.progress_every > 0 else None,
            progress_interval=args.progress_every,
        )
        if args.json:
            print(json.dumps(summary.to_dict()), flush=True)
        else:
            print(summary.text(), flush=True)
        # Exit status: 0 when at least one bot joined (load was generated).
        return 0 if summary.joined or cfg.count == 0 else 1

    return asyncio.run(amain())


if __name__ == "__main__":
    sys.exit(main())
