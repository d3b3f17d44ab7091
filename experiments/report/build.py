"""``report.md`` and ``plots/`` of a results folder, from its files alone.

Sections: what ran (and, prominently, whether the network was emulated);
per run, per client, the time-series figure, the migrations and the
per-phase statistics; the before/after table of the first migration (the
reference study's: FPS mean and range, memory, bandwidth, RTT); and, for
scenarios with several variants, the comparison with 95 % confidence
intervals over repeats (Student t; one repeat gives no interval, and the
table says so).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments.report import plots
from experiments.report.data import ReportError, RunData, load_results
from experiments.report.phases import SWITCHED, migrations, phase_stats, phases
from experiments.report.series import BY_KEY, SIM_TICK, combined, window
from experiments.runner.stats import MeanCI, mean_ci, summarize

__all__ = ["ReportError", "build_report"]

# The reference study's preliminary migration result (CLOUDSTARS D2.1, DESIGN.md).
REFERENCE = (
    "CLOUDSTARS D2.1 (reference prototype, local → edge): FPS +13, FPS range 32 → 16,"
    " memory 1.36 → 1.07 GB, bandwidth 1.05 → 3.21 Mbit/s."
)

# Per-run figures compared across variants: (key, column title, digits).
COMPARED = (
    ("fps", "FPS", 1),
    ("frame_ms", "frame time ms", 1),
    ("rtt_sim_ms", "RTT sim ms", 1),
    ("rtt_node_ms", "RTT node ms", 1),
    ("rx_mbit", "received Mbit/s", 2),
    ("memory_mb", "memory MB", 0),
    ("battery_used_pct", "battery used %", 2),
    ("switches", "switches", 1),
    ("gap_ms", "display gap ms", 1),
    ("tick_ms", "sim tick ms", 1),
)


def f(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _log(msg: str) -> None:
    print(f"report: {msg}", file=sys.stderr, flush=True)


def run_figures(run: RunData) -> dict[str, float]:
    """One run's numbers for the comparison (clients averaged; measured phase only)."""
    end = run.duration
    out: dict[str, float] = {}
    clients = run.clients()
    for key in ("fps", "frame_ms", "rtt_sim_ms", "rtt_node_ms", "rx_mbit", "memory_mb"):
        vals = [summarize(window(combined(run, c, BY_KEY[key]), 0.0, end)).mean for c in clients]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            out[key] = float(np.mean(vals))
    used = []
    for c in clients:
        t, v = combined(run, c, BY_KEY["battery_pct"])
        sel = v[(t >= 0) & (t <= end) & np.isfinite(v)]
        if sel.size >= 2:
            used.append(float(sel[0] - sel[-1]))
    if used:
        out["battery_used_pct"] = float(np.mean(used))
    ms = [m for m in migrations(run) if 0 <= m.t < end]
    if clients:
        out["switches"] = sum(1 for m in ms if m.outcome in SWITCHED) / len(clients)
    gaps = [m.gap_ms for m in ms if m.gap_ms is not None]
    if gaps:
        out["gap_ms"] = float(np.mean(gaps))
    tick = summarize(window(combined(run, "sim", SIM_TICK), 0.0, end)).mean
    if math.isfinite(tick):
        out["tick_ms"] = tick
    return out


def compare(runs: list[RunData]) -> dict[str, dict[str, MeanCI]]:
    """{variant: {key: mean and 95 % CI over its repeats}}."""
    by_variant: dict[str, list[dict[str, float]]] = {}
    for run in runs:
        if not run.manifest.get("ok", True):
            continue  # an aborted run's partial data would bias its variant
        by_variant.setdefault(run.variant, []).append(run_figures(run))
    out = {}
    for variant, figs in by_variant.items():
        keys = {k for fig in figs for k in fig}
        out[variant] = {k: mean_ci([fig.get(k, math.nan) for fig in figs]) for k in keys}
    return out


def before_after(run: RunData, client: str) -> list[str]:
    """The reference study's table around this client's first completed migration."""
    ps = phases(run, client)
    if len(ps) < 2:
        return []
    before, after = ps[0], ps[1]

    def stat(key: str, p: Any) -> Any:
        return summarize(window(combined(run, client, BY_KEY[key]), p.start, p.end))

    def means(key: str, scale: float = 1.0) -> tuple[float, float]:
        return stat(key, before).mean * scale, stat(key, after).mean * scale

    fb, fa = stat("fps", before), stat("fps", after)
    rows = [
        ("FPS mean", fb.mean, fa.mean, 1),
        ("FPS range (max − min)", fb.range, fa.range, 1),
        ("FPS p5 / p95", None, None, 1),
        ("Frame time mean (ms)", *means("frame_ms"), 1),
        ("Memory mean (GB)", *means("memory_mb", 1e-3), 2),
        ("Bandwidth received (Mbit/s)", *means("rx_mbit"), 2),
        ("Bandwidth sent (Mbit/s)", *means("tx_mbit"), 2),
        ("RTT to sim (ms)", *means("rtt_sim_ms"), 1),
        ("RTT to render node (ms)", *means("rtt_node_ms"), 1),
    ]
    out = [
        f"| {client} | before: {before.placement} ({before.start:.0f}–{before.end:.0f} s)"
        f" | after: {after.placement} ({after.start:.0f}–{after.end:.0f} s) | change |",
        "|---|---:|---:|---:|",
    ]
    for name, b, a, d in rows:
        if name.startswith("FPS p5"):
            out.append(
                f"| {name} | {f(fb.p5, d)} / {f(fb.p95, d)} | {f(fa.p5, d)} / {f(fa.p95, d)} | |"
            )
            continue
        change = a - b if b is not None and a is not None else math.nan
        sign = "+" if math.isfinite(change) and change > 0 else ""
        out.append(f"| {name} | {f(b, d)} | {f(a, d)} | {sign}{f(change, d)} |")
    return out


def _services_table(run: RunData, plot_dir: Path, folder: Path) -> list[str]:
    services = run.manifest.get("services") or {}
    if not services:
        return []
    scrape = run.manifest.get("scrape") or {}
    md = ["| node | kind | location | address | exit code | /metrics scrapes ok / failed | log |",
          "|---|---|---|---|---:|---:|---|"]  # fmt: skip
    for name, s in services.items():
        sc = scrape.get(name)
        scrapes = f"{sc['ok']} / {sc['failed']}" if sc else "–"
        code = "killed" if s.get("killed") else s.get("exit_code")
        md.append(
            f"| {name} | {s.get('kind')} | {s.get('location')} | {s.get('address')} | {code}"
            f" | {scrapes} | [{s.get('log')}](runs/{run.label}/{s.get('log')}) |"
        )
    tick = summarize(window(combined(run, "sim", SIM_TICK), 0.0, run.duration))
    if tick.n:
        md.append(
            f"\nSim tick (measured phase, per-second means): mean {f(tick.mean)} ms,"
            f" p95 {f(tick.p95)} ms, max {f(tick.max)} ms."
        )
    png = plot_dir / f"{run.label}-sim.png"
    if plots.sim_timeseries(run, png):
        md += ["", f"![sim in {run.label}]({png.relative_to(folder)})"]
    return [*md, ""]


def _run_section(run: RunData, plot_dir: Path, folder: Path) -> list[str]:
    md = [f"## Run {run.label}", ""]
    m = run.manifest
    md.append(
        f"Variant **{run.variant}** (policy `{(m.get('variant') or {}).get('policy', '?')}`),"
        f" repeat {m.get('repeat', '?')}, seed {m.get('seed', '?')};"
        f" {f(m.get('warmup_s'), 0)} s warm-up + {f(m.get('duration_s'), 0)} s measured;"
        f" {'emulated network' if run.emulated else '**loopback, no network emulation**'}."
    )
    if not m.get("ok", True):
        md.append(f"\n**This run did not finish:** {m.get('error')}")
    notes = m.get("notes") or []
    if notes:
        md += ["", "Notes:", *[f"- {n}" for n in notes]]
    md.append("")
    md += _services_table(run, plot_dir, folder)
    actions = [e for e in run.events if e.get("kind") == "action"]
    if actions:
        md += ["| t (s) | action | details | ok |", "|---:|---|---|---|"]
        for e in actions:
            details = ", ".join(
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in e.items()
                if k not in ("time", "t", "run", "kind", "action", "at_s", "line", "ok", "answer",
                             "error")
            )  # fmt: skip
            ok = "yes" if e.get("ok") else f"NO: {e.get('error', '')}"
            md.append(f"| {f(e.get('t'))} | {e.get('action')} | {details} | {ok} |")
        md.append("")
    for client in run.clients():
        md += [f"### {client}", ""]
        png = plot_dir / f"{run.label}-{client}.png"
        if plots.client_timeseries(run, client, png):
            md += [f"![{client} in {run.label}]({png.relative_to(folder)})", ""]
        else:
            md += [f"No client metrics were scraped from {client} (see logs/{client}.log).", ""]
        ms = migrations(run, client)
        if ms:
            md += ["| t (s) | from → to | outcome | reason | display gap (ms) | duration (ms) |",
                   "|---:|---|---|---|---:|---:|"]  # fmt: skip
            for mg in ms:
                md.append(
                    f"| {f(mg.t)} | {mg.frm} → {mg.to} | {mg.outcome} | {mg.reason} |"
                    f" {f(mg.gap_ms)} | {f(mg.duration_ms, 0)} |"
                )
            md.append("")
        else:
            md += ["No migration in this run.", ""]
        stats = phase_stats(run, client)
        if stats:
            md += ["Per-phase statistics (phases split at completed migrations):", "",
                   "| phase | quantity | n | mean | median | min – max | p5 | p95 |",
                   "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
            for p, q, s in stats:
                d = 2 if q.key.endswith("mbit") else 1
                md.append(
                    f"| {p.label} | {q.title} ({q.unit}) | {s.n} | {f(s.mean, d)}"
                    f" | {f(s.median, d)} | {f(s.min, d)} – {f(s.max, d)}"
                    f" | {f(s.p5, d)} | {f(s.p95, d)} |"
                )
            md.append("")
        table = before_after(run, client)
        if table:
            md += [
                "Before / after the first migration (the reference study's table):",
                "",
                *table,
                "",
            ]
    return md


def build_report(folder: Path) -> Path:
    folder = Path(folder)
    scenario, runs = load_results(folder)
    plot_dir = folder / "plots"
    plot_dir.mkdir(exist_ok=True)
    name = scenario.get("name") or folder.name
    md = [f"# Experiment report: {name}", ""]
    if scenario.get("description"):
        md += [str(scenario["description"]).strip(), ""]
    loopback = [r.label for r in runs if not r.emulated]
    if loopback:
        note = next((r.manifest.get("emulation_note") for r in runs if not r.emulated), "")
        md += [
            "> **⚠ NO NETWORK EMULATION** in "
            + ("every run" if len(loopback) == len(runs) else f"runs {', '.join(loopback)}")
            + f": all nodes ran on loopback ({note}). Link latency, jitter, loss and bandwidth"
            " in the scenario were **not applied**; RTT and bandwidth figures are loopback's.",
            "",
        ]
    if scenario.get("quick"):
        md += ["> **Quick run** (`--quick`): shortened, one repeat — a check, not data.", ""]
    first = runs[0].manifest
    host = first.get("host") or {}
    md += [
        f"- runs: {len(runs)} ({', '.join(r.label for r in runs)})",
        f"- per run: {f(first.get('warmup_s'), 0)} s warm-up"
        f" + {f(first.get('duration_s'), 0)} s measured",
        f"- machine: {host.get('cpus', '?')} CPUs ({host.get('cpu_model', '?')}),"
        f" {host.get('platform', '?')}",
        "- software: " + ", ".join(f"{k} {v}" for k, v in (first.get("versions") or {}).items()),
        f"- report built {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        " from metrics.csv, events.jsonl and manifest.json of each run",
        "",
    ]  # fmt: skip

    # Comparison first: it is the answer when a scenario compares variants.
    results = compare(runs)
    repeats = {v: max((c.n for c in r.values()), default=0) for v, r in results.items()}
    if len(results) > 1 or max(repeats.values(), default=0) > 1 or len(runs) > 1:
        md += ["## Comparison across variants", ""]
        md.append("Mean over repeats ± half-width of the 95 % confidence interval (Student t,"
                  " n − 1 degrees of freedom); each repeat contributes its measured-phase mean"
                  " (clients averaged).")  # fmt: skip
        aborted = [r.label for r in runs if not r.manifest.get("ok", True)]
        if aborted:
            md.append(f"Runs that did not finish are left out: {', '.join(aborted)}.")
        if min(repeats.values()) < 2:
            md.append("**With one repeat there is no interval** (marked n=1, no CI).")
        md += ["", "| variant | n | " + " | ".join(t for _, t, _ in COMPARED) + " |",
               "|---|---:|" + "---:|" * len(COMPARED)]  # fmt: skip
        for variant, r in results.items():
            cells = [r[k].format(d) if k in r else "–" for k, _, d in COMPARED]
            md.append(f"| {variant} | {repeats[variant]} | " + " | ".join(cells) + " |")
        png = plot_dir / "comparison.png"
        if plots.comparison(results, [(k, t) for k, t, _ in COMPARED if k != "tick_ms"], png):
            md += ["", f"![comparison]({png.relative_to(folder)})"]
        md.append("")

    if name.startswith("offload-constrained-device"):
        md += ["Reference: " + REFERENCE, ""]
    for i, run in enumerate(runs, 1):
        _log(f"run {i}/{len(runs)} {run.label}: plots and tables")
        md += _run_section(run, plot_dir, folder)
    path = folder / "report.md"
    path.write_text("\n".join(md).rstrip() + "\n")
    return path
