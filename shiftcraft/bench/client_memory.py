"""``shiftcraft bench client-memory``: RSS of a client rendering locally vs streaming.

One sim (terrain) and one render node run as child processes. The same
headless client (`shiftcraft play --headless`, a process of its own so its
RSS is its own) walks the same scripted path twice: once rendering locally,
once in remote mode showing the node's stream. Its RSS is sampled four
times a second; the figure is the mean over the last ``--tail`` seconds of
the walk (steady state, not a transient peak).

A remote-mode client keeps no renderer, no view and no compiled kernel,
and its replica holds sections only as their wire bytes (physics reads a
handful around the player): see docs/migration.md.

Reproduce: ``shiftcraft bench client-memory --seconds 20 --json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from experiments.bots.launch import ServerProcess
from shiftcraft.bench import progress
from shiftcraft.bench.client_local import PATH_SCRIPT
from shiftcraft.bench.stream import NodeChild


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="walk per client")
    parser.add_argument("--tail", type=float, default=4.0, help="RSS averaged over the last s")
    parser.add_argument("--res", default="640x360", help="frame size WxH")
    parser.add_argument("--view-distance", type=int, default=96, help="blocks")
    parser.add_argument("--seed", type=int, default=1234, help="world seed")


def run(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_run(args))


async def _client_rss(argv: list[str], seconds: float, tail: float) -> dict[str, Any]:
    """Run one client to the end; its RSS over the walk's last ``tail`` seconds."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shiftcraft", "play", *argv,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    samples: list[tuple[float, int]] = []
    ps = psutil.Process(proc.pid)
    start = time.monotonic()
    try:
        while proc.returncode is None and time.monotonic() - start < seconds + 180:
            try:
                samples.append((time.monotonic(), ps.memory_info().rss))
            except psutil.Error:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.25)
    finally:
        if proc.returncode is None:
            proc.kill()
        err = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
        await proc.wait()
    if proc.returncode != 0 or len(samples) < 4:
        raise RuntimeError(f"client {' '.join(argv)} failed ({proc.returncode}):\n{err[-2000:]}")
    end = samples[-1][0]
    last = [rss for t, rss in samples if t >= end - tail]
    return {"rss_bytes": int(statistics.fmean(last)), "peak_rss_bytes": max(r for _, r in samples)}


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    vd = str(args.view_distance)
    with tempfile.TemporaryDirectory() as tmp:
        server = await ServerProcess.start(
            ["--port", "0", "--db", str(Path(tmp) / "w.sqlite3"), "--generator", "terrain",
             "--seed", str(args.seed), "--view-distance", vd, "--log-level", "WARNING"]
        )  # fmt: skip
        node = None
        try:
            progress("starting the render node")
            node = await NodeChild.start(
                server.url, "--view-distance", vd, "--log-level", "WARNING"
            )
            common = [
                "--headless", "--server", server.url, "--res", args.res, "--view-distance", vd,
                "--script", PATH_SCRIPT, "--loop-script", "--seconds", str(args.seconds),
                "--no-reconnect",
            ]  # fmt: skip
            progress(f"local-mode client walking for {args.seconds:g} s")
            local = await _client_rss([*common, "--name", "memlocal"], args.seconds, args.tail)
            progress(f"remote-mode client walking for {args.seconds:g} s")
            remote = await _client_rss(
                [*common, "--name", "memremote", "--render", "remote", "--render-node", node.url],
                args.seconds,
                args.tail,
            )
        finally:
            if node is not None:
                await node.child.stop(timeout=15.0)
            await server.child.stop()
    return {
        "local_rss_bytes": local["rss_bytes"],
        "remote_rss_bytes": remote["rss_bytes"],
        "ratio": round(remote["rss_bytes"] / local["rss_bytes"], 3),
        "local_peak_rss_bytes": local["peak_rss_bytes"],
        "remote_peak_rss_bytes": remote["peak_rss_bytes"],
        "seconds": args.seconds,
        "res": args.res,
        "view_distance": args.view_distance,
    }
