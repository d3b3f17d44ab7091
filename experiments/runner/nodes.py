"""Start each kind of node of a scenario on its testbed host (argv + readiness).

One function per kind; each returns a `Service` that is ready (listening,
or answering ``/health``) with its ``metrics_url`` set when it has one.
The client and render-node flags follow the contract of ``shiftcraft play``
and ``shiftcraft render-node`` (``--scheduler``, ``--metrics-port``,
``--device``...); see docs/experiments.md.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from experiments.bots.launch import python_cmd
from experiments.runner.services import Service, ServiceError, free_port, spawn_service
from experiments.scenarios.model import BotGroupSpec, ClientSpec, RenderNodeSpec, Run, SimSpec
from experiments.testbed.topology import Host

# What a client does when the scenario gives no script: walk a square, forever,
# so the view (and the sections it needs) keeps changing.
DEFAULT_SCRIPT = "walk 2; turn 90; walk 2; turn 90; walk 2; turn 90; walk 2; turn 90"

# BehaviourOptions fields that `shiftcraft bots` takes as flags (the others cannot be passed).
BOT_FLAGS = {
    "box": "--box",
    "edit_interval": "--edit-interval",
    "trip_every": "--trip-every",
    "trip_distance": "--trip-distance",
    "heading": "--heading",
    "target": "--target",
    "tnt_interval": "--tnt-interval",
    "trace": "--trace",
}


@dataclass
class Ctx:
    """What starting a node needs to know about the run."""

    run: Run
    run_dir: Path
    log_dir: Path
    start_timeout: float
    migration_timeout: float | None = None  # passed to clients when set


def _http(url: str, timeout: float, data: bytes | None = None) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:  # 4xx/5xx still carry a JSON answer
        return exc.code, exc.read()


async def http(url: str, timeout: float = 5.0, data: dict | None = None) -> tuple[int, dict]:
    """GET (or POST ``data`` as JSON) → (status, parsed JSON or {"text": ...})."""
    body = None if data is None else json.dumps(data).encode()
    status, raw = await asyncio.to_thread(_http, url, timeout, body)
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"text": raw.decode(errors="replace")[:500]}


async def _listening(svc: Service, ctx: Ctx) -> None:
    url = await svc.wait_listening(ctx.start_timeout)
    svc.port = int(url.rstrip("/").rsplit(":", 1)[1])
    svc.url = f"ws://{svc.host.address}:{svc.port}"
    host, port = await svc.host.forward(svc.port)
    svc.metrics_url = f"http://{host}:{port}/metrics"


async def start_sim(host: Host, spec: SimSpec, ctx: Ctx) -> Service:
    argv = python_cmd(
        "server", "--host", host.address, "--port", "0",
        "--db", str(ctx.run_dir / "world.sqlite3"), "--seed", str(spec.world_seed),
        "--generator", spec.generator, "--view-distance", str(spec.view_distance),
        "--tps", str(spec.tps),
    )  # fmt: skip
    svc = await spawn_service("sim", "sim", host, argv, ctx.log_dir, listens=True)
    await _listening(svc, ctx)
    return svc


async def start_scheduler(host: Host, config: dict, ctx: Ctx) -> Service:
    cfg_path = ctx.run_dir / "scheduler-config.json"
    cfg_path.write_text(json.dumps(config, indent=2) + "\n")
    argv = python_cmd(
        "scheduler", "--host", host.address, "--port", "0", "--config", str(cfg_path),
        "--log", str(ctx.run_dir / "decisions.jsonl"),
    )  # fmt: skip
    svc = await spawn_service("scheduler", "scheduler", host, argv, ctx.log_dir, listens=True)
    await _listening(svc, ctx)
    return svc


async def start_render_node(
    host: Host, spec: RenderNodeSpec, sim: Service, scheduler: Service, ctx: Ctx
) -> Service:
    argv = python_cmd(
        "render-node", "--sim", sim.url, "--host", host.address, "--port", "0",
        "--name", spec.name, "--max-sessions", str(spec.capacity),
        "--scheduler", scheduler.url, "--location", spec.location,
        "--capacity", str(spec.capacity),
    )  # fmt: skip
    svc = await spawn_service(spec.name, "render", host, argv, ctx.log_dir, listens=True)
    await _listening(svc, ctx)
    return svc


async def start_client(
    host: Host,
    spec: ClientSpec,
    sim: Service,
    scheduler: Service,
    nodes: dict[str, Service],
    ctx: Ctx,
) -> Service:
    metrics_port = free_port()
    w, h = spec.resolution
    argv = [
        *python_cmd("play", "--headless", "--server", sim.url, "--name", spec.name),
        "--res", f"{w}x{h}", "--max-fps", f"{spec.max_fps:g}",
        "--script", spec.script or DEFAULT_SCRIPT, "--loop-script",
        "--metrics-port", str(metrics_port), "--metrics-host", host.address,
        "--scheduler", scheduler.url,
        "--device", spec.device,
    ]  # fmt: skip
    if spec.battery is not None:
        argv += ["--battery-level", f"{spec.battery.level:g}"]
        argv.append("--charging" if spec.battery.charging else "--no-charging")
    for name, node in nodes.items():
        argv += ["--node", f"{name}={node.url}"]
    if ctx.migration_timeout is not None:
        argv += ["--migration-timeout", f"{ctx.migration_timeout:g}"]
    if spec.mode == "remote" and spec.node in nodes:
        argv += ["--render", "remote", "--render-node", nodes[spec.node].url]
    svc = await spawn_service(spec.name, "client", host, argv, ctx.log_dir, listens=False)
    svc.port = metrics_port
    await _client_ready(svc, ctx)
    return svc


async def _client_ready(svc: Service, ctx: Ctx) -> None:
    """Wait until the client's ``/health`` answers, through whichever address it bound.

    In a namespace the client may listen on its host address or on its own
    127.0.0.1; a relay to each is cheap, and the one that answers is kept.
    """
    candidates = [await svc.host.forward(svc.port)]
    if svc.host.netns is not None:
        local = await asyncio.to_thread(
            svc.host.testbed.forwarder.add, svc.host.netns, "127.0.0.1", svc.port
        )
        candidates.append(("127.0.0.1", local))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.start_timeout
    while loop.time() < deadline:
        if not svc.running:
            await asyncio.sleep(0.5)  # let the readers catch the last lines
            raise ServiceError(
                f"client {svc.name} exited with code {svc.proc.returncode} during start-up"
                f" ({svc.log_path}); log tail:\n{svc.tail_text()}"
            )
        for host, port in candidates:
            try:
                status, _ = await http(f"http://{host}:{port}/health", timeout=1.0)
            except OSError:
                continue
            if status < 500:
                svc.metrics_url = f"http://{host}:{port}/metrics"
                return
        await asyncio.sleep(0.5)
    raise ServiceError(
        f"client {svc.name}: GET /health on its --metrics-port {svc.port} did not answer within"
        f" {ctx.start_timeout:g} s; log tail:\n{svc.tail_text()}"
    )


def bots_argv(group: BotGroupSpec, sim: Service, seed: int) -> tuple[list[str], list[str]]:
    """(argv, options that `shiftcraft bots` has no flag for: reported as a note)."""
    argv = python_cmd(
        "bots", "--server", sim.url, "--count", str(group.count),
        "--behaviour", group.behaviour, "--seconds", "0", "--name-prefix", group.name,
        "--join-rate", f"{group.join_rate:g}", "--seed", str(seed),
        "--render", group.render, "--progress-every", "5", "--json",
    )  # fmt: skip
    skipped = []
    for key, value in group.options.items():
        if key == "loop":
            if value:
                argv.append("--loop")
        elif key in BOT_FLAGS and value is not None:
            argv += [BOT_FLAGS[key], str(value)]
        else:
            skipped.append(key)
    return argv, skipped


async def start_bots(
    host: Host, group: BotGroupSpec, sim: Service, ctx: Ctx
) -> tuple[Service, list[str]]:
    argv, skipped = bots_argv(group, sim, ctx.run.seed)
    svc = await spawn_service(f"bots:{group.name}", "bots", host, argv, ctx.log_dir, listens=False)
    return svc, skipped


def bots_summary(svc: Service) -> dict | None:
    """The JSON summary ``shiftcraft bots --json`` prints on stdout when it stops."""
    for line in reversed(svc.stdout_lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None
