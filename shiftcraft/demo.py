"""``shiftcraft demo``: the whole stack on embedded defaults, migrating by policy.

Starts, each as its own process: the sim (``ws://127.0.0.1:8765``, world in
``./data/``), the scheduler (``:8780``, battery policy), an edge render node
(``:8770``) that registers with it, a few build bots, and one player — a
game client (a window where there is a display, else headless) on a
modelled phone whose battery is nearly flat. What happens, by policy:

1. the phone renders locally and its battery drains;
2. at 15 % and draining, the scheduler moves its rendering to the edge
   node (make-before-break: the stream's first frame replaces the local
   picture; the local renderer is then dropped);
3. the demo plugs the phone's charger in a while later (the one scripted
   event: it stands in for the player); on the charger the scheduler
   brings the rendering back to the device;
4. the demo unplugs it once the battery has charged a little, and the
   story repeats.

A status line every few seconds says what each part is doing; every
switch is printed with its display gap. ``--policy threshold|score`` runs
the same stack with another policy (then nothing is scripted). Runs until
^C (or ``--seconds``) and stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.bots.behaviours import BEHAVIOURS
from experiments.bots.launch import (
    BotsProcess,
    Child,
    ServerProcess,
    start_render_node,
    start_service,
)
from experiments.bots.runner import percentile

# The phone's battery is scaled down so the story plays in about a minute:
# ~3 W drawn rendering locally empties 1000 J at about 1 % every 3 s.
BATTERY_CAPACITY_J = 1000.0
START_LEVEL = 0.19
SCHEDULER_CONFIG = {
    "engine": {"min_dwell_s": 8.0, "settle_s": 2.0, "window_s": 3.0, "min_samples": 2},
    "battery": {"on_level": 0.15, "off_level": 0.20, "k_on": 2, "k_off": 2},
    "threshold": {"fps_min": 25, "k_leave": 3, "k_return": 6},
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shiftcraft demo", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="sim port (0 = any free port)")
    p.add_argument("--scheduler-port", type=int, default=8780, help="0 = any free port")
    p.add_argument("--node-port", type=int, default=8770, help="0 = any free port")
    p.add_argument("--client-metrics-port", type=int, default=8790, help="0 = any free port")
    p.add_argument("--data", default="data", help="directory of the world and the logs")
    p.add_argument("--seed", type=int, default=None, help="world seed (new worlds only)")
    p.add_argument("--bots", type=int, default=4, help="build bots to start")
    p.add_argument("--behaviour", "--behavior", default="build", choices=sorted(BEHAVIOURS))
    p.add_argument(
        "--policy", default="battery", choices=("battery", "threshold", "score"),
        help="scheduler policy (the charger is scripted only for battery)",
    )  # fmt: skip
    p.add_argument("--no-client", action="store_true", help="start no player client")
    p.add_argument(
        "--headless", action="store_true", help="no client window even where there is a display"
    )
    p.add_argument("--res", default="640x360", help="client window size WxH")
    p.add_argument(
        "--charge-after", type=float, default=15.0,
        help="seconds in remote mode before the demo plugs the charger in",
    )  # fmt: skip
    p.add_argument("--unplug-at", type=float, default=0.30, help="battery level to unplug at")
    p.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long; 0 = until ^C")
    p.add_argument("--quiet-server", action="store_true", help="do not echo the server's log")
    return p


def say(msg: str) -> None:
    print(msg, flush=True)


def _free_port(host: str) -> int:
    # The client only takes a fixed port; the moment between closing and its
    # bind is the usual small race of ephemeral ports, fine for a demo or test.
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _http_url(ws_url: str) -> str:
    return "http://" + ws_url.removeprefix("ws://").split("/", 1)[0]


def _get_json(url: str, timeout: float = 2.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _post_json(url: str, body: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


async def get_json(url: str) -> dict[str, Any] | None:
    """A service's JSON, or None while it is not answering (starting, gone)."""
    try:
        return await asyncio.to_thread(_get_json, url)
    except (OSError, ValueError):
        return None


@dataclass
class Stack:
    """The processes the demo started, in start order (stopped in reverse)."""

    server: ServerProcess | None = None
    scheduler: tuple[Child, str] | None = None
    node: tuple[Child, str] | None = None
    bots: BotsProcess | None = None
    client: Child | None = None
    client_http: str = ""
    charging: bool = False
    remote_since: float | None = None
    reports_seen: int = 0
    children: list[Child] = field(default_factory=list)


async def start_client(args: argparse.Namespace, stack: Stack, sched_url: str, node: str) -> None:
    assert stack.server is not None
    headless = args.headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    port = args.client_metrics_port or _free_port(args.host)
    argv = [
        "play", "--server", stack.server.url, "--name", "player", "--res", args.res,
        "--scheduler", sched_url, "--node", f"edge-1={node}",
        "--device", "phone", "--battery-level", str(START_LEVEL), "--no-charging",
        "--battery-capacity-j", str(BATTERY_CAPACITY_J),
        "--metrics-port", str(port), "--metrics-host", args.host,
    ]  # fmt: skip
    if headless:
        # Nobody is watching: walk about so the world (and the stream) changes.
        argv += ["--headless", "--script", "hop 3; turn 60; walk 2; turn -30", "--loop-script"]

    def echo(which: str, line: str) -> bool:
        if "migration:" in line or "error" in line.lower():
            say(f"  client | {line}")
        return False

    stack.client = await Child.spawn("client", [sys.executable, "-m", "shiftcraft", *argv], echo)
    stack.client_http = f"http://{args.host}:{port}"
    say("player client started " + ("(headless)" if headless else "(window)"))


async def demo(args: argparse.Namespace) -> int:
    # SIGTERM (docker stop, kill) ends the demo like ^C: cancel, clean up in finally.
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    stack = Stack()

    def echo_server(which: str, line: str) -> None:
        if which == "stderr" and not args.quiet_server:  # its log; stdout is the ready line
            print(f"  server | {line}", file=sys.stderr, flush=True)

    try:
        server_args = [
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--db",
            str(data / "world.db"),
        ]
        if args.seed is not None:
            server_args += ["--seed", str(args.seed)]
        say(f"starting the sim server (world: {data / 'world.db'})")
        stack.server = await ServerProcess.start(server_args, on_line=echo_server)
        say(f"  sim listening on {stack.server.url} — connect any client there")

        config = data / "scheduler.json"
        config.write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
        log = data / "decisions.jsonl"
        say(f"starting the scheduler (policy {args.policy}, decisions in {log})")
        stack.scheduler = await start_service(
            "scheduler",
            ["--host", args.host, "--port", str(args.scheduler_port), "--policy", args.policy,
             "--config", str(config), "--log", str(log)],
        )  # fmt: skip
        sched_url = stack.scheduler[1]
        say(f"  scheduler on {sched_url} (state: {_http_url(sched_url)}/state)")

        say("starting the edge render node edge-1")
        stack.node = await start_render_node(
            ["--sim", stack.server.url, "--host", args.host, "--port", str(args.node_port),
             "--scheduler", sched_url, "--name", "edge-1", "--location", "edge"],
            progress=say,
        )  # fmt: skip
        node_url = stack.node[1]
        say(f"  edge-1 on {node_url} (browser play: {_http_url(node_url)}/)")

        if args.bots > 0:
            say(f"starting {args.bots} {args.behaviour} bots")
            stack.bots = await BotsProcess.start(
                stack.server.url, args.bots, behaviour=args.behaviour, name_prefix="demo",
                join_rate=4.0,
            )  # fmt: skip
        if not args.no_client:
            await start_client(args, stack, sched_url, node_url)
        say("running; press Ctrl-C to stop" if args.seconds <= 0 else f"running {args.seconds:g} s")
        await status_loop(stack, args)
    finally:
        say("stopping ...")
        await asyncio.shield(_stop(stack))
        say("stopped")
    return 0


async def _stop(stack: Stack) -> None:
    if stack.client is not None:
        await stack.client.stop(timeout=10.0)
    if stack.bots is not None:
        summary = await stack.bots.stop()
        if summary:
            say(
                f"bots: {summary.get('joined')} joined, {summary.get('edits_ok')} edits ok,"
                f" {summary.get('edits_rejected')} rejected"
            )
    for svc in (stack.node, stack.scheduler):
        if svc is not None:
            await svc[0].stop(timeout=10.0)
    if stack.server is not None:
        code = await stack.server.child.stop()
        if code not in (0, None):
            say(f"server exited with code {code}")


async def status_loop(stack: Stack, args: argparse.Namespace) -> None:
    assert stack.server is not None
    t_start = time.monotonic()
    prev: dict | None = None
    with contextlib.suppress(OSError):
        prev = await stack.server.stats()
    prev_t = next_status = t_start
    while args.seconds <= 0 or time.monotonic() - t_start < args.seconds:
        await asyncio.sleep(1.0)
        for name, child in (("server", stack.server.child), ("client", stack.client)):
            if child is not None and not child.running:
                say(f"{name} exited (code {child.proc.returncode}):\n{child.tail_text()}")
                raise SystemExit(1)
        client = await get_json(stack.client_http + "/state") if stack.client_http else None
        if client is not None:
            await _story(stack, client, args)
        now = time.monotonic()
        if now < next_status:
            continue
        next_status = now + args.status_every
        try:
            stats = await stack.server.stats()
        except OSError as exc:
            say(f"/stats unavailable: {exc}")
            continue
        line = status_line(stats, prev, now - prev_t, now - t_start, stack.bots)
        if client is not None:
            line += " | " + client_status(client)
        say(line)
        prev, prev_t = stats, now


async def _story(stack: Stack, client: dict[str, Any], args: argparse.Namespace) -> None:
    """Print new switches; plug and unplug the charger (battery policy only)."""
    reports = client.get("reports") or []
    total = int(client.get("switches_total") or len(reports))
    for r in reports[len(reports) - min(len(reports), total - stack.reports_seen) :]:
        say(
            f">>> switch {r.get('from')} -> {r.get('to')}: {r.get('outcome')}"
            f" ({r.get('trigger')}{', ' + r['reason'] if r.get('reason') else ''}),"
            f" display gap {r.get('gap_ms')} ms, took {r.get('duration_ms')} ms"
        )
    stack.reports_seen = total
    if args.policy != "battery":
        return
    now = time.monotonic()
    remote = client.get("mode") not in (None, "local")
    if remote and stack.remote_since is None:
        stack.remote_since = now
    elif not remote:
        stack.remote_since = None
    level = (client.get("battery") or {}).get("level")
    control = stack.client_http + "/control"
    if not stack.charging and stack.remote_since is not None:
        if now - stack.remote_since >= args.charge_after:
            say(">>> demo: the player plugs the phone's charger in")
            with contextlib.suppress(OSError, ValueError):
                await asyncio.to_thread(_post_json, control, {"charger": True})
                stack.charging = True
    elif stack.charging and not remote and level is not None and level >= args.unplug_at:
        say(">>> demo: the player unplugs the charger")
        with contextlib.suppress(OSError, ValueError):
            await asyncio.to_thread(_post_json, control, {"charger": False})
            stack.charging = False


def client_status(client: dict[str, Any]) -> str:
    parts = [f"player {client.get('mode', '?')}"]
    node = client.get("node")
    if node and node not in ("device", "local"):
        parts[0] += f"@{node}"
    tel = client.get("telemetry") or {}
    if tel.get("fps") is not None:
        parts.append(f"{tel['fps']:.0f} fps")
    bat = client.get("battery") or {}
    if bat.get("level") is not None:
        state = "charging" if bat.get("charging") else "draining"
        parts.append(f"battery {bat['level'] * 100:.1f}% {state}")
    return " ".join(parts)


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
    except RuntimeError as exc:  # a service did not start (port taken, ...)
        print(f"shiftcraft demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
