"""``shiftcraft demo``: the whole stack on embedded defaults (issue 2 edition).

Starts the sim server (ws://127.0.0.1:8765, world in ./data/) and a handful
of build bots as separate processes, prints a status line every few seconds
from the server's /stats and the bots' progress, and runs until ^C (or
``--seconds``), then stops the bots, then the server, cleanly. Later issues
add the renderer, the client window, a render node and the scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from experiments.bots.behaviours import BEHAVIOURS
from experiments.bots.launch import BotsProcess, ServerProcess
from experiments.bots.runner import percentile


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shiftcraft demo", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 = any free port")
    p.add_argument("--data", default="data", help="directory of the world database")
    p.add_argument("--seed", type=int, default=None, help="world seed (new worlds only)")
    p.add_argument("--bots", type=int, default=6, help="build bots to start")
    p.add_argument("--behaviour", "--behavior", default="build", choices=sorted(BEHAVIOURS))
    p.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long; 0 = until ^C")
    p.add_argument("--quiet-server", action="store_true", help="do not echo the server's log")
    return p


def say(msg: str) -> None:
    print(msg, flush=True)


async def demo(args: argparse.Namespace) -> int:
    # SIGTERM (docker stop, kill) ends the demo like ^C: cancel, clean up in finally.
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    server_args = ["--host", args.host, "--port", str(args.port), "--db", str(data / "world.db")]
    if args.seed is not None:
        server_args += ["--seed", str(args.seed)]

    def echo(which: str, line: str) -> None:
        if which == "stderr" and not args.quiet_server:  # its log; stdout is the ready line
            print(f"  server | {line}", file=sys.stderr, flush=True)

    say(f"starting the sim server (world: {data / 'world.db'})")
    server = await ServerProcess.start(server_args, on_line=echo)
    bots: BotsProcess | None = None
    try:
        say(f"server listening on {server.url} — connect any client there")
        if args.bots > 0:
            say(f"starting {args.bots} {args.behaviour} bots")
            bots = await BotsProcess.start(
                server.url, args.bots, behaviour=args.behaviour, name_prefix="demo", join_rate=4.0
            )
        say("running; press Ctrl-C to stop" if args.seconds <= 0 else f"running {args.seconds:g} s")
        await status_loop(server, bots, args)
    finally:
        say("stopping bots and server ...")
        await asyncio.shield(_stop(server, bots))
        say("stopped")
    return 0


async def _stop(server: ServerProcess, bots: BotsProcess | None) -> None:
    if bots is not None:
        summary = await bots.stop()
        if summary:
            say(
                f"bots: {summary.get('joined')} joined, {summary.get('edits_ok')} edits ok,"
                f" {summary.get('edits_rejected')} rejected"
            )
    code = await server.child.stop()
    if code not in (0, None):
        say(f"server exited with code {code}")


async def status_loop(server: ServerProcess, bots: BotsProcess | None, args) -> None:
    t_start = time.monotonic()
    prev: dict | None = None
    with contextlib.suppress(OSError):
        prev = await server.stats()
    prev_t = t_start
    while args.seconds <= 0 or time.monotonic() - t_start < args.seconds:
        wait = args.status_every
        if args.seconds > 0:
            wait = min(wait, args.seconds - (time.monotonic() - t_start))
        await asyncio.sleep(max(wait, 0.0))
        if not server.child.running:
            say(f"server exited (code {server.child.proc.returncode}):\n{server.child.tail_text()}")
            raise SystemExit(1)
        try:
            stats = await server.stats()
        except OSError as exc:
            say(f"/stats unavailable: {exc}")
            continue
        now = time.monotonic()
        say(status_line(stats, prev, now - prev_t, now - t_start, bots))
        prev, prev_t = stats, now


def status_line(stats: dict, prev: dict | None, dt: float, elapsed: float, bots) -> str:
    tps = stats.get("tps", 0.0)
    if prev is not None and dt > 0:
        tps = (stats["tick"] - prev["tick"]) / dt
    ticks = stats.get("tick_ms") or []
    # The ticks since the previous line (the ring ends with the latest tick).
    since = stats["tick"] - prev["tick"] if prev is not None else len(ticks)
    recent = ticks[-max(1, since) :] if ticks else []
    p50, p99 = percentile(recent, 50), percentile(recent, 99)
    out_rate = 0.0
    if prev is not None and dt > 0:
        out_rate = (stats["bytes_out_total"] - prev["bytes_out_total"]) / dt
    line = (
        f"[{elapsed:6.0f}s] tick {stats['tick']:>6} | {tps:4.1f} TPS"
        f" | tick p50 {p50 or 0:5.1f} ms p99 {p99 or 0:5.1f} ms"
        f" | players {stats.get('players', 0):>3} | out {out_rate / 1000:7.1f} kB/s"
    )
    if bots is not None and bots.progress:
        line += f" | edits {bots.get('edits_ok')} ok / {bots.get('edits_rejected')} rejected"
    return line


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(demo(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    except RuntimeError as exc:  # the server did not start (port taken, ...)
        print(f"shiftcraft demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
