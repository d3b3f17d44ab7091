"""``shiftcraft bots``: run headless bots against a server, print a summary.

Progress goes to stderr every ``--progress-every`` seconds (JSON lines with
``--json``, which the tick bench and the demo read); the summary goes to
stdout at the end. SIGINT/SIGTERM stop the bots cleanly and still print it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import asdict

from experiments.bots.behaviours import BEHAVIOURS, BehaviourOptions
from experiments.bots.runner import Progress, RunConfig, run_bots


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
    p.add_argument("--edit-interval", type=float, default=1.0, help="mean seconds between edits")
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
        options=BehaviourOptions(box=args.box, edit_interval=args.edit_interval),
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
        summary = await run_bots(
            cfg,
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
