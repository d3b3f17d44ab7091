"""Run a scenario: every `Run` (variant × repeat) on a fresh testbed, into a results folder.

One run, start to end:

1. a `Testbed` (emulated when this machine allows, else loopback, which the
   events, manifest and report say loudly) with the scenario's links;
2. hosts and services, in dependency order: sim, scheduler (the variant's
   ``--config``), render nodes (registered with the scheduler), clients
   (headless ``shiftcraft play``, CPU-limited by a cgroup), bot groups;
3. scraping every ``/metrics`` each second from then on (warm-up rows have
   negative ``t``), the scenario's timed actions from the end of warm-up,
   a watchdog for services that die, progress on stderr;
4. at the end: clients and bots stopped first (bots print their summary),
   then render nodes, scheduler and sim; the decision log copied into the
   events; the manifest written. The testbed then stops anything left and
   removes namespaces and cgroups — also on errors and Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from experiments.bots.launch import warm_renderer
from experiments.runner import manifest as mf
from experiments.runner.actions import Stage, apply, set_link
from experiments.runner.collect import MetricsTable, Scraper
from experiments.runner.events import EventLog, decision_events
from experiments.runner.nodes import (
    Ctx,
    bots_summary,
    start_bots,
    start_client,
    start_render_node,
    start_scheduler,
    start_sim,
)
from experiments.runner.progress import Progress
from experiments.runner.services import Service
from experiments.scenarios.model import DEVICE_PROFILES, ClientSpec, Run, Scenario
from experiments.testbed.cpu import CpuLimitUnavailable
from experiments.testbed.topology import Testbed

STOP_ORDER = ("bots", "client", "render", "scheduler", "sim")  # consumers before producers


@dataclass
class RunnerOptions:
    out: Path
    emulated: bool | None = None  # None: emulate when possible
    start_timeout: float = 180.0  # per service
    scrape_interval: float = 1.0
    quiet: bool = False
    migration_timeout: float | None = None  # clients' --migration-timeout (None: theirs)


@dataclass
class RunResult:
    label: str
    dir: Path
    ok: bool
    error: str = ""
    rows: int = 0
    events: int = 0
    emulated: bool = False


def quicken(s: Scenario, max_duration: float = 20.0, max_warmup: float = 5.0) -> Scenario:
    """``--quick``: one repeat, at most ``max_warmup`` + ``max_duration`` s, actions scaled.

    For checking a scenario end to end in a minute; its numbers are not the
    experiment's (the manifest and report say ``quick``).
    """
    duration = min(s.duration_s, max_duration)
    factor = duration / s.duration_s if s.duration_s else 1.0
    actions = [replace(a, at_s=round(a.at_s * factor, 3)) for a in s.actions]
    return replace(s, duration_s=duration, warmup_s=min(s.warmup_s, max_warmup), repeats=1,
                   actions=actions)  # fmt: skip


def with_repeats(s: Scenario, repeats: int) -> Scenario:
    """The scenario with ``repeats`` runs per variant; missing seeds continue the last one."""
    seeds = list(s.seeds[:repeats])
    while len(seeds) < repeats:
        seeds.append((seeds[-1] if seeds else 0) + 1)
    return replace(s, repeats=repeats, seeds=seeds)


@dataclass
class _RunState:
    services: dict[str, Service] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bots: dict[str, Any] = field(default_factory=dict)
    exited: set[str] = field(default_factory=set)
    stopping: bool = False


async def run_one(
    scenario: Scenario, run: Run, index: int, opts: RunnerOptions, progress: Progress
) -> RunResult:
    run_dir = opts.out / "runs" / run.label
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    events = EventLog(run_dir / "events.jsonl", run.label)
    progress.start_run(index, run.label)
    st = _RunState()
    ctx = Ctx(run, run_dir, log_dir, opts.start_timeout, opts.migration_timeout)
    started = time.time()
    table: MetricsTable | None = None
    t0: float | None = None
    tb: Testbed | None = None
    result = RunResult(run.label, run_dir, ok=False)
    stage: Stage | None = None
    try:
        tb = Testbed(emulated=opts.emulated, seed=run.seed)
        result.emulated = tb.emulated
        async with tb:
            if not tb.emulated:
                st.notes.append(tb.note)
                events.write("note", text=tb.note)
                progress.message(f"!! {tb.note}")
            stage = Stage(tb, st.services, None, events)
            for link in scenario.links:
                await set_link(stage, link.a, link.b, link)
            await _start_all(scenario, run, tb, ctx, st, events, progress)

            t0 = time.time() + scenario.warmup_s
            events.t0 = t0
            table = MetricsTable(run_dir / "metrics.csv", run.label, t0)
            scraper = Scraper(table, opts.scrape_interval)
            stage.scraper = scraper
            for svc in st.services.values():
                if svc.metrics_url:
                    scraper.add(svc.name, svc.metrics_url)
            events.write("phase", phase="warmup", duration_s=scenario.warmup_s)
            progress.set_phase("warm-up", f"{scenario.warmup_s:g}s")
            async with asyncio.TaskGroup() as tg:
                background = [
                    tg.create_task(scraper.run(), name="scrape"),
                    tg.create_task(_watchdog(st, events, progress), name="watchdog"),
                    tg.create_task(_show(progress, scraper, scenario, t0), name="progress"),
                ]
                await _sleep_until(t0)
                events.write("phase", phase="measure", duration_s=scenario.duration_s)
                progress.set_phase("measure", f"{scenario.duration_s:g}s")
                tg.create_task(_timeline(stage, scenario, t0), name="actions")
                await _sleep_until(t0 + scenario.duration_s)
                events.write("phase", phase="end")
                for task in background:
                    task.cancel()
            # The actions task has ended by itself (all its times were within the run).
            progress.set_phase("stopping")
            st.stopping = True
            await _stop_all(st, events)
            n = decision_events(run_dir / "decisions.jsonl", events)
            if n == 0 and scenario.clients:
                events.write("note", text="the scheduler's decision log is empty or missing")
            result.ok = True
    except BaseException as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        events.write("note", text=f"run aborted: {result.error}")
        raise
    finally:
        st.stopping = True
        with contextlib.suppress(Exception):
            await asyncio.shield(_stop_all(st, events))
        # The world is regenerated from its seed; its database is not a result.
        for suffix in ("", "-wal", "-shm", "-journal"):
            (run_dir / f"world.sqlite3{suffix}").unlink(missing_ok=True)
        result.rows = table.rows if table else 0
        if table is not None:
            table.close()
        result.events = events.count
        scraper_ = stage.scraper if stage is not None else None
        _write_manifest(run_dir, scenario, run, tb, st, started, t0, result, scraper_)
        events.close()
    return result


async def _start_all(
    scenario: Scenario,
    run: Run,
    tb: Testbed,
    ctx: Ctx,
    st: _RunState,
    events: EventLog,
    progress: Progress,
) -> None:
    def started(svc: Service, **extra: Any) -> None:
        st.services[svc.name] = svc
        events.write("node", event="started", node=svc.name, role=svc.kind, pid=svc.pid,
                     host=svc.host.name, location=svc.host.location,
                     address=svc.host.address, url=svc.url, **extra)  # fmt: skip

    progress.set_phase("starting", "sim")
    sim_host = await tb.add_host("sim", scenario.sim.location)
    sim = await start_sim(sim_host, scenario.sim, ctx)
    started(sim)
    # The control plane sits with the sim: client telemetry crosses the same links.
    sched_host = await tb.add_host("scheduler", scenario.sim.location)
    progress.set_phase("starting", f"scheduler ({run.variant.name})")
    sched = await start_scheduler(sched_host, run.variant.config(), ctx)
    started(sched, config=run.variant.config())
    nodes: dict[str, Service] = {}
    for spec in scenario.render_nodes:
        progress.set_phase("starting", f"render node {spec.name}")
        host = await tb.add_host(spec.name, spec.location)
        svc = await start_render_node(host, spec, sim, sched, ctx)
        if spec.cpu_share is not None:
            _limit(tb, svc, spec.cpu_share, st, events)
        nodes[spec.name] = svc
        started(svc, capacity=spec.capacity)
    for spec in scenario.clients:
        progress.set_phase("starting", f"client {spec.name} ({spec.device})")
        host = await tb.add_host(spec.name, spec.location)
        svc = await start_client(host, spec, sim, sched, nodes, ctx)
        _limit(tb, svc, spec.cpu_share, st, events)
        unsupported = _battery_overrides(spec)
        if unsupported:
            text = (
                f"client {spec.name}: battery {', '.join(unsupported)} not passed"
                " (shiftcraft play takes only level and charging); the profile's apply"
            )
            st.notes.append(text)
            events.write("note", text=text)
        started(
            svc, device=spec.device, cpu_share=spec.cpu_share, mode=spec.mode, render_node=spec.node
        )
    for group in scenario.bots:
        progress.set_phase("starting", f"{group.count} bots ({group.behaviour})")
        host = await tb.add_host(f"bots-{group.name}", group.location)
        svc, skipped = await start_bots(host, group, sim, ctx)
        started(svc, count=group.count, behaviour=group.behaviour)
        if skipped:
            text = f"bot group {group.name}: shiftcraft bots has no flag for {', '.join(skipped)}"
            st.notes.append(text)
            events.write("note", text=text)


def _battery_overrides(spec: ClientSpec) -> list[str]:
    """Battery model fields the scenario changed that the client has no flag for."""
    profile = DEVICE_PROFILES.get(spec.device)
    if spec.battery is None or profile is None or profile.battery is None:
        return []
    mine, theirs = asdict(spec.battery), asdict(profile.battery)
    return [k for k in mine if k not in ("level", "charging") and mine[k] != theirs.get(k)]


def _limit(tb: Testbed, svc: Service, share: float, st: _RunState, events: EventLog) -> None:
    try:
        svc.cpu = tb.limit_cpu(svc.pid, share)
        events.write("node", event="cpu_limit", node=svc.name, share=share)
    except (CpuLimitUnavailable, OSError) as exc:
        text = f"{svc.name}: CPU NOT LIMITED to {share:g} core(s): {exc}"
        st.notes.append(text)
        events.write("note", text=text)


async def _sleep_until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.time()))


async def _timeline(stage: Stage, scenario: Scenario, t0: float) -> None:
    for action in scenario.actions:  # sorted by time by the loader
        await _sleep_until(t0 + action.at_s)
        await apply(stage, action)


async def _watchdog(st: _RunState, events: EventLog, progress: Progress) -> None:
    """Note services that exit by themselves (a crash is a result, not a reason to stop)."""
    while True:
        for svc in list(st.services.values()):
            if svc.running or svc.name in st.exited or st.stopping:
                continue
            st.exited.add(svc.name)
            if svc.killed:
                events.write("node", event="killed", node=svc.name, code=svc.proc.returncode)
                continue
            code = svc.proc.returncode
            text = f"{svc.name} exited unexpectedly (code {code}, see logs/{svc.log_path.name})"
            st.notes.append(text)
            events.write("node", event="exited", node=svc.name, code=svc.proc.returncode)
            progress.message(f"!! {text}")
        await asyncio.sleep(1.0)


def _client_status(scraper: Scraper) -> str:
    parts = []
    for name, target in scraper.targets.items():
        fps = next(
            (v for (m, _l), v in target.last.items()
             if m.startswith("shiftcraft_client_") and m.endswith("fps")),
            None,
        )  # fmt: skip
        if fps is not None:
            parts.append(f"{name} {fps:.0f} fps")
    failing = [n for n, t in scraper.targets.items() if t.failed and not t.ok]
    if failing:
        parts.append("no metrics from " + ", ".join(failing))
    return ", ".join(parts)


async def _show(progress: Progress, scraper: Scraper, scenario: Scenario, t0: float) -> None:
    end = t0 + scenario.duration_s
    while True:
        now = time.time()
        if now < t0:
            elapsed, length = scenario.warmup_s - (t0 - now), scenario.warmup_s
        else:
            elapsed, length = now - t0, scenario.duration_s
        progress.tick(elapsed, length, end - now, _client_status(scraper))
        await asyncio.sleep(1.0)


async def _stop_all(st: _RunState, events: EventLog) -> None:
    for kind in STOP_ORDER:
        group = [s for s in st.services.values() if s.kind == kind and s._log is not None]
        group = [s for s in group if not s._log.closed]
        if not group:
            continue
        # bots print their summary on ^C; the client quits its game loop cleanly on ^C.
        sig = signal.SIGINT if kind in ("bots", "client") else signal.SIGTERM
        for svc in group:  # a CPU-starved process would take ages to shut down
            if svc.cpu is not None:
                with contextlib.suppress(Exception):
                    svc.cpu.set_share(None)
        codes = await asyncio.gather(*(s.stop(sig, 15.0) for s in group), return_exceptions=True)
        for svc, code in zip(group, codes, strict=True):
            events.write(
                "node",
                event="stopped",
                node=svc.name,
                code=code if isinstance(code, int) else str(code),
            )
            if kind == "bots":
                summary = bots_summary(svc)
                if summary is not None:
                    st.bots[svc.name] = summary
                    (svc.log_path.parent.parent / f"{svc.name.replace(':', '-')}.json").write_text(
                        json.dumps(summary, indent=2) + "\n"
                    )


def _write_manifest(
    run_dir: Path,
    scenario: Scenario,
    run: Run,
    tb: Testbed | None,
    st: _RunState,
    started: float,
    t0: float | None,
    result: RunResult,
    stage_scraper: Scraper | None,
) -> None:
    data: dict[str, Any] = {
        "scenario": scenario.name,
        "scenario_file": str(scenario.path) if scenario.path else None,
        "run": run.label,
        "variant": {
            "name": run.variant.name,
            "policy": run.variant.policy,
            "config": run.variant.config(),
        },
        "repeat": run.repeat + 1,
        "seed": run.seed,
        "emulated": bool(tb and tb.emulated),
        "emulation_note": tb.note if tb else "testbed not built",
        "testbed": tb.describe() if tb else None,
        "started": started,
        "t0": t0,
        "warmup_s": scenario.warmup_s,
        "duration_s": scenario.duration_s,
        "ended": time.time(),
        "ok": result.ok,
        "error": result.error,
        "notes": st.notes,
        "services": {
            s.name: {
                "kind": s.kind,
                "host": s.host.name,
                "location": s.host.location,
                "address": s.host.address,
                "url": s.url,
                "metrics_url": s.metrics_url,
                "pid": s.pid,
                "exit_code": s.proc.returncode,
                "killed": s.killed,
                "cpu_share": s.cpu.share if s.cpu is not None and hasattr(s.cpu, "share") else None,
                "log": str(s.log_path.relative_to(run_dir)),
            }
            for s in st.services.values()
        },
        "scrape": {
            name: {"ok": t.ok, "failed": t.failed, "last_error": t.last_error}
            for name, t in (stage_scraper.targets.items() if stage_scraper else [])
        },
        "bots": st.bots,
        "versions": mf.versions(),
        "host": mf.host_facts(),
    }
    (run_dir / "manifest.json").write_text(json.dumps(data, indent=2, default=str) + "\n")


async def _warm(progress: Progress) -> None:
    await warm_renderer(progress=progress.message)


async def run_scenario(
    scenario: Scenario, opts: RunnerOptions, progress: Progress | None = None, quick: bool = False
) -> list[RunResult]:
    """Every run of ``scenario`` into ``opts.out``; stops at the first run that fails to start."""
    opts.out.mkdir(parents=True, exist_ok=True)
    runs = scenario.runs()
    progress = progress or Progress(len(runs), scenario.run_seconds, quiet=opts.quiet)
    if scenario.path and Path(scenario.path).exists():
        shutil.copy(scenario.path, opts.out / "scenario.yaml")
    info = {"quick": quick, "runs": [r.label for r in runs], **scenario.to_dict()}
    (opts.out / "scenario.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    renders = bool(scenario.clients or scenario.render_nodes) or any(
        g.render != "none" for g in scenario.bots
    )
    results = []
    for i, run in enumerate(runs, 1):
        if renders:  # before every run: the renderer's source may change between runs
            await _warm(progress)
        results.append(await run_one(scenario, run, i, opts, progress))
    progress.done()
    return results
