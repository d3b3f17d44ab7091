"""Read a results folder back: scenario, and per run its manifest, metrics and events.

The report is built from these files alone (``shiftcraft experiment report
DIR`` works on a folder copied elsewhere, long after the run).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.runner.events import read_events


class ReportError(RuntimeError):
    """The folder is not a results folder (or has no run in it)."""


SeriesKey = tuple[str, str, str]  # node, metric, labels


@dataclass
class RunData:
    label: str
    dir: Path
    manifest: dict[str, Any]
    events: list[dict[str, Any]]
    series: dict[SeriesKey, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return (self.manifest.get("variant") or {}).get("name") or self.label.rsplit("-r", 1)[0]

    @property
    def duration(self) -> float:
        return float(self.manifest.get("duration_s") or 0.0)

    @property
    def emulated(self) -> bool:
        return bool(self.manifest.get("emulated"))

    def clients(self) -> list[str]:
        services = self.manifest.get("services") or {}
        return [name for name, s in services.items() if s.get("kind") == "client"]

    def nodes(self) -> list[str]:
        return sorted({node for node, _, _ in self.series})

    def metrics(self, node: str) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        return {(m, lab): v for (n, m, lab), v in self.series.items() if n == node}


def load_metrics(path: Path) -> dict[SeriesKey, tuple[np.ndarray, np.ndarray]]:
    """metrics.csv → {(node, metric, labels): (t, value)} sorted by t."""
    raw: dict[SeriesKey, list[tuple[float, float]]] = defaultdict(list)
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                raw[(row["node"], row["metric"], row["labels"])].append(
                    (float(row["t"]), float(row["value"]))
                )
            except (KeyError, ValueError):
                continue  # a line cut by a crash
    out = {}
    for key, pts in raw.items():
        pts.sort()
        arr = np.asarray(pts, dtype=float)
        out[key] = (arr[:, 0], arr[:, 1])
    return out


def load_run(run_dir: Path) -> RunData:
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    return RunData(
        run_dir.name,
        run_dir,
        manifest,
        read_events(run_dir / "events.jsonl"),
        load_metrics(run_dir / "metrics.csv"),
    )


def load_results(folder: Path) -> tuple[dict[str, Any], list[RunData]]:
    """(scenario.json contents, runs in the order they ran)."""
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such folder")
    runs_dir = folder / "runs"
    if not runs_dir.is_dir():
        raise ReportError(f"{folder}: not a results folder (no runs/ in it)")
    scenario_path = folder / "scenario.json"
    scenario = json.loads(scenario_path.read_text()) if scenario_path.exists() else {}
    order = scenario.get("runs") or []
    dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir())
    dirs.sort(key=lambda p: order.index(p.name) if p.name in order else len(order))
    runs = [load_run(d) for d in dirs]
    if not runs:
        raise ReportError(f"{folder}: runs/ is empty")
    return scenario, runs
