"""matplotlib figures (Agg backend: no display needed) of a run and of a comparison."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless machines, CI, namespaces
import matplotlib.pyplot as plt

from experiments.report.data import RunData
from experiments.report.phases import SWITCHED, migrations
from experiments.report.series import (
    CLIENT_QUANTITIES,
    PANELS,
    SIM_PLAYERS,
    SIM_SENT,
    SIM_TICK,
    lines,
)
from experiments.runner.stats import MeanCI

ACTION_COLOUR = "0.6"


def _markers(ax, run: RunData, client: str) -> None:
    for m in migrations(run, client):
        ok = m.outcome in SWITCHED
        ax.axvline(m.t, color="tab:green" if ok else "tab:red", ls="-" if ok else "--", lw=1.2)
    for e in run.events:
        if e.get("kind") == "action" and e.get("t") is not None:
            ax.axvline(float(e["t"]), color=ACTION_COLOUR, ls=":", lw=0.8)


def client_timeseries(run: RunData, client: str, path: Path) -> bool:
    """FPS, frame time, RTT, memory, bandwidth and battery over time; False if no data."""
    drawn: dict[str, list[tuple[str, tuple]]] = {key: [] for key in PANELS}
    for q in CLIENT_QUANTITIES:
        several = sum(1 for x in CLIENT_QUANTITIES if x.panel_key == q.panel_key) > 1
        for lab, line in sorted(lines(run, client, q).items()):
            name = " ".join(x for x in (q.title if several else "", lab) if x)
            drawn[q.panel_key].append((name, line))
    if not any(drawn.values()):
        return False
    warm = float(run.manifest.get("warmup_s") or 0.0)
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(9, 2.0 * len(PANELS)), sharex=True)
    for ax, (key, (title, unit)) in zip(axes, PANELS.items(), strict=True):
        for name, (t, v) in drawn[key]:
            ax.plot(t, v, lw=1.0, label=name or None)
        if not drawn[key]:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                    color="0.5")  # fmt: skip
        ax.set_ylabel(f"{title}\n({unit})", fontsize=8)
        if warm > 0:
            ax.axvspan(-warm, 0.0, color="0.92", zorder=-1)  # warm-up
        _markers(ax, run, client)
        if any(name for name, _ in drawn[key]):
            ax.legend(fontsize=6, loc="upper right")
        ax.grid(alpha=0.3)
    axes[-1].set_xlim(-warm, max(run.duration, 1.0))
    axes[-1].set_xlabel("time since the end of warm-up (s); grey: warm-up")
    mode = "emulated network" if run.emulated else "LOOPBACK, no network emulation"
    fig.suptitle(f"{run.label} — {client} ({mode})\n"
                 "green: migration, red dashed: rollback/failure, dotted: scenario action",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def comparison(
    results: dict[str, dict[str, MeanCI]], keys: list[tuple[str, str]], path: Path
) -> bool:
    """Bars of each variant's mean with its 95 % interval, one panel per quantity."""
    keys = [(k, title) for k, title in keys if any(k in r for r in results.values())]
    if not keys or not results:
        return False
    variants = list(results)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], keys, strict=True):
        cis = [results[v].get(key) for v in variants]
        means = [c.mean if c else math.nan for c in cis]
        errs = [c.half_width if c and not math.isnan(c.half_width) else 0.0 for c in cis]
        ax.bar(range(len(variants)), means, yerr=errs, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("mean over repeats, error bars: 95 % confidence interval (t)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def sim_timeseries(run: RunData, path: Path) -> bool:
    """The sim over time: tick duration, players connected, bytes sent; False if no data."""
    panels = [
        ("Sim tick (ms)", lines(run, "sim", SIM_TICK)),
        ("Players", lines(run, "sim", SIM_PLAYERS)),
        ("Sent (Mbit/s)", lines(run, "sim", SIM_SENT)),
    ]
    if not any(ls for _, ls in panels):
        return False
    warm = float(run.manifest.get("warmup_s") or 0.0)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.8 * len(panels)), sharex=True)
    for ax, (title, ls) in zip(axes, panels, strict=True):
        for lab, (t, v) in sorted(ls.items()):
            ax.plot(t, v, lw=1.0, label=lab or None)
        if warm > 0:
            ax.axvspan(-warm, 0.0, color="0.92", zorder=-1)
        for e in run.events:
            if e.get("kind") == "action" and e.get("t") is not None:
                ax.axvline(float(e["t"]), color=ACTION_COLOUR, ls=":", lw=0.8)
        if len(ls) > 1:
            ax.legend(fontsize=6, loc="upper right")
        ax.set_ylabel(title, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlim(-warm, max(run.duration, 1.0))
    axes[-1].set_xlabel("time since the end of warm-up (s); grey: warm-up, dotted: actions")
    fig.suptitle(f"{run.label} — sim server", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
