"""``shiftcraft bench migration``: make-before-break switches local -> edge -> cloud -> local.

Sim and two render nodes ("edge", "cloud") run as processes on this machine;
a headless client in this process drives `client.migration.MigrationController`
through the cycle and reports display gaps, switch durations, rollbacks and
input continuity (the sim's acks must rise without gaps beyond what is in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from experiments.bots.launch import ServerProcess
from shiftcraft.bench import progress
from shiftcraft.bench.stream import NodeChild

CYCLE = ("edge", "cloud", "local")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cycles", type=int, default=50, help="local->edge->cloud->local rounds")
    parser.add_argument("--view-distance", type=int, default=48, help="blocks")
    parser.add_argument(
        "--fps", type=int, default=60, help="display cap and stream rate (a gap is >= 1/fps)"
    )
    parser.add_argument("--dwell", type=float, default=1.0, help="seconds in each mode")
    parser.add_argument("--timeout", type=float, default=3.0, help="first-frame timeout, s")
    parser.add_argument("--reports", default=None, help="write every switch report here (JSONL)")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))], 2)


def _gaps(reports: list[dict]) -> dict[str, Any]:
    gaps = [r["gap_ms"] for r in reports]
    return {
        "gap_p50_ms": _pct(gaps, 50),
        "gap_p95_ms": _pct(gaps, 95),
        "gap_max_ms": round(max(gaps), 2) if gaps else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from client.config import ClientConfig
    from client.display import HeadlessDisplay
    from client.game import Game
    from client.headless import GameRunner
    from client.migration import MigrationController, MigrationState

    with tempfile.TemporaryDirectory() as tmp:
        vd = str(args.view_distance)
        server = await ServerProcess.start(
            ["--port", "0", "--db", str(Path(tmp) / "w.sqlite3"), "--generator", "flat",
             "--view-distance", vd, "--log-level", "WARNING"]
        )  # fmt: skip
        nodes: dict[str, Any] = {}
        try:
            for name in ("edge", "cloud"):
                progress(f"starting render node {name}")
                nodes[name] = await NodeChild.start(
                    server.url, "--view-distance", vd, "--log-level", "WARNING"
                )
            config = ClientConfig(
                server=server.url, name="migbench", width=160, height=90, headless=True,
                view_distance=args.view_distance, max_fps=args.fps, stream_fps=args.fps,
            )  # fmt: skip
            game = Game(config, HeadlessDisplay(160, 90), log=lambda line: None)
            ctl = MigrationController(
                game, nodes={k: v.url for k, v in nodes.items()}, timeout_s=args.timeout
            )
            game.migration = ctl
            acks: list[int] = []

            shown: list[tuple[float, bool]] = []  # (time, steady) of displayed frames

            def on_frame(g: Game, info: Any) -> None:
                if info.rendered:
                    shown.append((info.now, ctl.state is MigrationState.STEADY))
                if g.server_state is not None and (not acks or acks[-1] != g.server_state[1]):
                    acks.append(g.server_state[1])

            game.on_frame = on_frame
            async with GameRunner(game) as runner:
                await runner.until_loaded(timeout=120)
                for cycle in range(args.cycles):
                    for target in CYCLE:
                        n = len(ctl.reports)
                        ctl.request(target, "bench")
                        await runner.until(
                            lambda g, n=n: (
                                len(ctl.reports) > n and ctl.state is MigrationState.STEADY
                            ),
                            timeout=30,
                        )
                        await runner.sleep(args.dwell)
                    progress(f"cycle {cycle + 1}/{args.cycles}")
                # Every frame numbered by now must be acknowledged a moment later.
                last_seq = game.predictor.sequencer.next_seq - 1
                await runner.sleep(1.5)
                final_ack = game.server_state[1]
            sim_stats = await server.stats()
        finally:
            for n in nodes.values():
                await n.child.stop(timeout=15.0)
            await server.child.stop()
    reports = ctl.reports
    if args.reports:
        Path(args.reports).write_text("".join(json.dumps(r) + "\n" for r in reports))
    ok = [r for r in reports if r["outcome"] == "ok"]
    durations = [r["duration_ms"] for r in ok]
    by_dir: dict[str, list[dict]] = {}
    for r in ok:
        by_dir.setdefault(f"{r['from']}->{r['to']}", []).append(r)
    # Frame intervals away from switches: the floor any gap is measured against.
    steady = [(b[0] - a[0]) * 1000.0 for a, b in itertools.pairwise(shown) if a[1] and b[1]]
    duplicated = sum(1 for a, b in itertools.pairwise(acks) if b <= a)
    return {
        "switches": len(reports),
        "failed": sum(1 for r in reports if r["outcome"] not in ("ok", "rollback")),
        "rollbacks": sum(1 for r in reports if r["outcome"] == "rollback"),
        # The sim counts seq gaps (frames that never arrived) and seqs it had
        # already consumed; plus anything numbered but never acknowledged.
        "lost_inputs": sim_stats["input_frames_missing_total"] + max(0, last_seq - final_ack),
        "duplicated_inputs": sim_stats["input_frames_duplicate_total"],
        "acks_out_of_order": duplicated,
        "inputs_sent": last_seq + 1,
        **_gaps(ok),
        "duration_p50_ms": _pct(durations, 50),
        "duration_p95_ms": _pct(durations, 95),
        "duration_mean_ms": round(statistics.fmean(durations), 2) if durations else None,
        "by_direction": {k: _gaps(v) for k, v in sorted(by_dir.items())},
        "fps": args.fps,
        "steady_interval_p50_ms": _pct(steady, 50),
        "steady_interval_p95_ms": _pct(steady, 95),
    }
