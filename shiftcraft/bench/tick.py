"""``shiftcraft bench tick``: server TPS and tick times under N bot players.

Everything is real: the server (``shiftcraft server``) and the bots
(``shiftcraft bots``, ``--bot-procs`` processes) are separate processes
talking websockets on loopback, as in a deployment. The bench waits until
every bot has joined and is warm (its sections stopped streaming in), then
measures for ``--seconds`` by reading the server's ``/stats``: ticks done
between the first and last read give the TPS, the tick durations recorded
in between (polled every second, matched by tick number) the percentiles,
the byte counters the bandwidth. Then the bots leave, the server stops, and
no child outlives the bench, even on ^C or an error.

Reproduce: ``shiftcraft bench tick --bots 100 --seconds 20 --json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from experiments.bots.behaviours import BEHAVIOURS
from experiments.bots.launch import BotsProcess, ServerProcess
from experiments.bots.runner import percentile
from shiftcraft.bench import progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bots", type=int, default=100, help="bot players")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument(
        "--behaviour", "--behavior", default="build", choices=sorted(BEHAVIOURS), help="bots do"
    )
    parser.add_argument("--bot-procs", type=int, default=1, help="bot processes")
    parser.add_argument("--join-rate", type=float, default=25.0, help="joins per second, total")
    parser.add_argument("--seed", type=int, default=1, help="world seed (and bots' seed)")
    parser.add_argument(
        "--warmup-timeout", type=float, default=120.0, help="max seconds to wait for warm bots"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after warm-up")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for `shiftcraft server` (repeatable, e.g. --server-arg=--tps=20)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return asyncio.run(measure(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # The children are already stopped (measure's finally); no traceback.
        progress("interrupted; server and bots stopped")
        raise SystemExit(130) from None


class StatsWindow:
    """Tick durations by tick number, merged from successive /stats reads."""

    def __init__(self) -> None:
        self.tick_ms: dict[int, float] = {}

    def add(self, stats: dict[str, Any]) -> None:
        recent = stats.get("tick_ms") or []
        last = int(stats["tick"])
        # The ring ends with the latest completed tick.
        first = last - len(recent) + 1
        for i, ms in enumerate(recent):
            self.tick_ms[first + i] = float(ms)

    def between(self, tick0: int, tick1: int) -> list[float]:
        return [ms for t, ms in self.tick_ms.items() if tick0 < t <= tick1]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    if args.bots < 1 or args.bot_procs < 1 or args.seconds <= 0:
        raise SystemExit("bench tick: --bots and --bot-procs must be >= 1, --seconds > 0")
    procs = min(args.bot_procs, args.bots)
    # SIGTERM stops the bench like ^C does: cancel, and the finally below cleans up.
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    server: ServerProcess | None = None
    fleets: list[BotsProcess] = []
    with tempfile.TemporaryDirectory(prefix="shiftcraft-bench-tick-") as tmp:
        try:
            progress(f"starting server (db in {tmp})")
            server = await ServerProcess.start(
                [
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--db",
                    str(Path(tmp) / "world.sqlite3"),
                    "--seed",
                    str(args.seed),
                    *args.server_arg,
                ]
            )
            progress(f"server at {server.url}; starting {args.bots} bots in {procs} process(es)")
            for k in range(procs):
                count = args.bots // procs + (1 if k < args.bots % procs else 0)
                fleets.append(
                    await BotsProcess.start(
                        server.url,
                        count,
                        behaviour=args.behaviour,
                        name_prefix=f"b{k}n",
                        join_rate=args.join_rate / procs,
                        seed=args.seed,
                        progress_every=0.5,
                        name=f"bots{k}",
                    )
                )
            warm_s = await wait_warm(server, fleets, args)
            await asyncio.sleep(args.settle)
            result = await window(server, fleets, args)
            result["warmup_s"] = round(warm_s, 1)
        except Exception:
            for proc in (*fleets, server):
                if proc is not None:
                    progress(proc.child.tail_text())
            raise
        finally:
            summaries = await asyncio.shield(shutdown(server, fleets))
    result["bot_summaries_ok"] = sum(1 for s in summaries if s)
    return result


async def wait_warm(server: ServerProcess, fleets: list[BotsProcess], args) -> float:
    t0 = time.monotonic()
    last_report = 0.0
    while True:
        joined = sum(f.get("joined") for f in fleets)
        warm = sum(f.get("warm") for f in fleets)
        failed = sum(f.get("failed") for f in fleets)
        elapsed = time.monotonic() - t0
        if warm + failed >= args.bots and joined + failed >= args.bots:
            progress(f"{joined} bots joined, {warm} warm, {failed} failed after {elapsed:.1f} s")
            return elapsed
        if not server.child.running:
            raise RuntimeError("server exited during warm-up")
        if all(not f.child.running for f in fleets):
            raise RuntimeError("bot processes exited during warm-up")
        if elapsed > args.warmup_timeout:
            progress(f"warm-up timeout: {joined} joined, {warm} warm; measuring anyway")
            return elapsed
        if elapsed - last_report >= 5.0:
            progress(f"  warm-up: {joined}/{args.bots} joined, {warm} warm")
            last_report = elapsed
        await asyncio.sleep(0.25)


def _cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


async def window(server: ServerProcess, fleets: list[BotsProcess], args) -> dict[str, Any]:
    ticks = StatsWindow()
    edits0 = sum(f.get("edits_ok") for f in fleets), sum(f.get("edits_rejected") for f in fleets)
    s0 = await server.stats()
    t0 = time.monotonic()
    cpu0 = _cpu(server.child.pid), sum(_cpu(f.child.pid) for f in fleets)
    ticks.add(s0)
    progress(f"measuring {args.seconds:g} s from tick {s0['tick']}")
    end = t0 + args.seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(1.0, left))
        if time.monotonic() < end - 0.05:
            ticks.add(await server.stats())
    s1 = await server.stats()
    t1 = time.monotonic()
    cpu1 = _cpu(server.child.pid), sum(_cpu(f.child.pid) for f in fleets)
    ticks.add(s1)
    dt = t1 - t0
    durations = ticks.between(int(s0["tick"]), int(s1["tick"]))
    joined = sum(f.get("joined") for f in fleets)
    per_bot = max(joined, 1)

    def r(v: float | None, nd: int = 2) -> float | None:
        return None if v is None else round(v, nd)

    return {
        "bots": args.bots,
        "tps": round((int(s1["tick"]) - int(s0["tick"])) / dt, 2),
        "tick_p50_ms": r(percentile(durations, 50)),
        "tick_p99_ms": r(percentile(durations, 99)),
        "bytes_per_s_per_bot": round(
            (s1["bytes_out_total"] - s0["bytes_out_total"]) / dt / per_bot, 1
        ),
        "tick_mean_ms": r(sum(durations) / len(durations) if durations else None),
        "tick_max_ms": r(max(durations) if durations else None),
        "ticks_measured": len(durations),
        "bytes_in_per_s_per_bot": round(
            (s1["bytes_in_total"] - s0["bytes_in_total"]) / dt / per_bot, 1
        ),
        "joined": joined,
        "warm": sum(f.get("warm") for f in fleets),
        "failed": sum(f.get("failed") for f in fleets),
        "disconnected": sum(f.get("disconnected") for f in fleets),
        "players": s1.get("players"),
        "behaviour": args.behaviour,
        "bot_procs": len(fleets),
        "seconds": round(dt, 2),
        "edits_ok": sum(f.get("edits_ok") for f in fleets) - edits0[0],
        "edits_rejected": sum(f.get("edits_rejected") for f in fleets) - edits0[1],
        "messages_rejected": s1.get("messages_rejected"),
        "server_cpu_percent": round(100.0 * (cpu1[0] - cpu0[0]) / dt, 1),
        "bots_cpu_percent": round(100.0 * (cpu1[1] - cpu0[1]) / dt, 1),
    }


async def shutdown(server: ServerProcess | None, fleets: list[BotsProcess]) -> list:
    """Bots leave first (clean disconnects), then the server stops (clean commit)."""
    summaries = await asyncio.gather(*(f.stop() for f in fleets), return_exceptions=True)
    if server is not None:
        with contextlib.suppress(Exception):
            await server.child.stop()
    return [s if isinstance(s, dict) else None for s in summaries]
