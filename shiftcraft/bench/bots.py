"""``shiftcraft bench bots``: how many bot players one machine drives while the sim holds 20 TPS.

The same real processes as ``shiftcraft bench tick`` (its machinery is
reused: `ServerProcess`, `BotsProcess`, `wait_warm`, `window`, `shutdown`):
one ``shiftcraft server`` and ``shiftcraft bots`` processes of
``walk-modify`` bots (not rendering) on loopback, all on this machine.

* ``--count N``: one measurement with N bots.
* no ``--count``: a ramp on one server — ``--step`` bots more at each step
  (a new bots process per step), wait until the newcomers are warm, measure
  ``--seconds``, and stop at the first step that does not hold. ``bots`` is
  the largest count that held.

A step *holds* when the server kept ``--min-tps`` (20 TPS nominal) with a
tick p99 of at most ``--max-p99-ms`` (the 50 ms budget), every bot joined
and stayed, and the bots kept sending their inputs (at least 90 % of 20
frames a second each — a saturated bot process that falls behind would
otherwise make the server look better than it is).

JSON keys (tools read them): ``bots``, ``tps``, ``tick_p99_ms``; plus
``held``, ``steps`` (every measurement) and ``limit`` (why the ramp stopped).

Reproduce: ``shiftcraft bench bots --json`` (ramp) or
``shiftcraft bench bots --count 200 --seconds 20 --json``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
from pathlib import Path
from typing import Any

from experiments.bots.launch import BotsProcess, ServerProcess
from shiftcraft.bench import progress
from shiftcraft.bench.tick import shutdown, wait_warm, window

BEHAVIOUR = "walk-modify"
INPUT_HZ = 20.0
MIN_INPUT_SHARE = 0.9  # of INPUT_HZ per bot, for the bots' load to count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=None, help="bots; default: ramp up")
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window per step")
    parser.add_argument("--step", type=int, default=100, help="ramp: bots added per step")
    parser.add_argument("--max", type=int, default=1000, help="ramp: stop at this many bots")
    parser.add_argument("--join-rate", type=float, default=25.0, help="joins per second")
    parser.add_argument("--seed", type=int, default=1, help="world seed (and bots' seed)")
    parser.add_argument("--min-tps", type=float, default=19.5, help="a step holds at >= this")
    parser.add_argument(
        "--max-p99-ms", type=float, default=50.0, help="a step holds at tick p99 <= this"
    )
    parser.add_argument(
        "--warmup-timeout", type=float, default=120.0, help="max seconds to wait for warm bots"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after warm-up")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for `shiftcraft server` (repeatable)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.count is not None and args.count < 1:
        raise SystemExit("bench bots: --count must be >= 1")
    if args.step < 1 or args.seconds <= 0:
        raise SystemExit("bench bots: --step must be >= 1 and --seconds > 0")
    try:
        return asyncio.run(ramp(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; server and bots stopped")
        raise SystemExit(130) from None


def _tick_args(args: argparse.Namespace, total: int) -> argparse.Namespace:
    """What `wait_warm` and `window` of the tick bench read."""
    return argparse.Namespace(
        bots=total,
        seconds=args.seconds,
        behaviour=BEHAVIOUR,
        warmup_timeout=args.warmup_timeout,
    )


def verdict(step: dict[str, Any], args: argparse.Namespace) -> str | None:
    """Why a measured step does not hold, or None when it does."""
    if step["failed"] or step["disconnected"]:
        return f"{step['failed']} bots failed to join, {step['disconnected']} disconnected"
    if step["joined"] < step["bots"]:
        return f"only {step['joined']} of {step['bots']} bots joined"
    if step["tps"] < args.min_tps:
        return f"tps {step['tps']} < {args.min_tps:g}"
    p99 = step["tick_p99_ms"]
    if p99 is None or p99 > args.max_p99_ms:
        return f"tick p99 {p99} ms > {args.max_p99_ms:g} ms"
    if step["inputs_per_s_per_bot"] < MIN_INPUT_SHARE * INPUT_HZ:
        return (
            f"bots sent {step['inputs_per_s_per_bot']} input frames/s each"
            f" (< {MIN_INPUT_SHARE * INPUT_HZ:g}): the bot processes fell behind"
        )
    return None


async def measure_step(
    server: ServerProcess, fleets: list[BotsProcess], args: argparse.Namespace, total: int
) -> dict[str, Any]:
    ns = _tick_args(args, total)
    warm_s = await wait_warm(server, fleets, ns)
    await asyncio.sleep(args.settle)
    s0 = await server.stats()
    result = await window(server, fleets, ns)
    s1 = await server.stats()
    frames = int(s1["input_frames_total"]) - int(s0["input_frames_total"])
    # The window's own duration is inside [s0, s1]; the brackets add ~ms.
    seconds = float(result["seconds"]) or args.seconds
    result["inputs_per_s_per_bot"] = round(frames / seconds / max(total, 1), 2)
    result["warmup_s"] = round(warm_s, 1)
    return result


async def ramp(args: argparse.Namespace) -> dict[str, Any]:
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    targets = (
        [args.count]
        if args.count is not None
        else list(range(args.step, max(args.max, args.step) + 1, args.step))
    )
    server: ServerProcess | None = None
    fleets: list[BotsProcess] = []
    steps: list[dict[str, Any]] = []
    limit = f"reached --max {targets[-1]}" if args.count is None else None
    with tempfile.TemporaryDirectory(prefix="shiftcraft-bench-bots-") as tmp:
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
            total = 0
            for k, target in enumerate(targets):
                progress(f"step {k + 1}: {target - total} more {BEHAVIOUR} bots ({target} in all)")
                fleets.append(
                    await BotsProcess.start(
                        server.url,
                        target - total,
                        behaviour=BEHAVIOUR,
                        name_prefix=f"s{k}n",
                        join_rate=args.join_rate,
                        seed=args.seed + k,
                        progress_every=0.5,
                        name=f"bots{k}",
                    )
                )
                total = target
                step = await measure_step(server, fleets, args, total)
                why = verdict(step, args)
                step["held"] = why is None
                steps.append(step)
                progress(
                    f"  {total} bots: tps {step['tps']}, tick p99 {step['tick_p99_ms']} ms,"
                    f" inputs {step['inputs_per_s_per_bot']}/s/bot, server CPU"
                    f" {step['server_cpu_percent']} %, bots CPU {step['bots_cpu_percent']} %"
                    f" -> {'held' if why is None else 'did not hold: ' + why}"
                )
                if why is not None:
                    limit = f"{total} bots: {why}"
                    break
        except Exception:
            for proc in (*fleets, server):
                if proc is not None:
                    progress(proc.child.tail_text())
            raise
        finally:
            await asyncio.shield(shutdown(server, fleets))
    held = [s for s in steps if s["held"]]
    # --count: that count, held or not; a ramp: the largest count that held (0: none).
    best = steps[-1] if args.count is not None or not held else held[-1]
    return {
        "bots": best["bots"] if args.count is not None or held else 0,
        "tps": best["tps"],
        "tick_p99_ms": best["tick_p99_ms"],
        "held": best["held"],
        "behaviour": BEHAVIOUR,
        "bot_procs": len(fleets),
        "limit": limit,
        "steps": [
            {
                k: s[k]
                for k in (
                    "bots",
                    "held",
                    "tps",
                    "tick_p50_ms",
                    "tick_p99_ms",
                    "tick_max_ms",
                    "inputs_per_s_per_bot",
                    "server_cpu_percent",
                    "bots_cpu_percent",
                    "edits_ok",
                    "warmup_s",
                )
            }
            for s in steps
        ],
    }
