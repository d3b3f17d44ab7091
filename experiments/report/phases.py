"""Migrations of a client and the phases between them, with per-phase statistics.

A *phase* is a stretch of the measured phase at one placement: from the
start (or a completed switch) to the next completed switch (or the end).
Switch times are those of the migration reports (outcome ``ok``, or
``fallback`` when the node died) in the events file — when the client had
finished switching. Rollbacks and failures change nothing and split nothing;
they are listed in the migrations table and drawn as markers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from experiments.report.data import RunData
from experiments.report.series import CLIENT_QUANTITIES, Quantity, combined, window
from experiments.runner.stats import Summary, summarize

SWITCHED = ("ok", "fallback")


@dataclass(frozen=True)
class Migration:
    t: float
    client: str
    frm: str
    to: str
    outcome: str
    gap_ms: float | None
    duration_ms: float | None
    decision: int | None
    reason: str  # the command's reason (policy), when the decision log has it


@dataclass(frozen=True)
class Phase:
    index: int
    start: float
    end: float
    placement: str

    @property
    def label(self) -> str:
        return f"{self.index + 1}: {self.placement} [{self.start:.0f}–{self.end:.0f} s]"


def migrations(run: RunData, client: str | None = None) -> list[Migration]:
    """Migration reports of the measured phase (and warm-up), by time."""
    t0 = run.manifest.get("t0")
    reasons = {
        e.get("decision"): e.get("reason")
        for e in run.events
        if e.get("kind") == "decision" and e.get("event") == "migrate"
    }
    out = []
    for e in run.events:
        if e.get("kind") != "migration" or (client and e.get("client") != client):
            continue
        t = e.get("t")
        if t is None and t0 is not None:
            t = float(e["time"]) - float(t0)
        if t is None:
            continue
        out.append(
            Migration(
                float(t), e.get("client") or "", e.get("from") or "?", e.get("to") or "?",
                e.get("outcome") or "?", _num(e.get("gap_ms")), _num(e.get("duration_ms")),
                e.get("decision"), reasons.get(e.get("decision")) or "",
            )
        )  # fmt: skip
    return sorted(out, key=lambda m: m.t)


def _num(x: object) -> float | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def initial_placement(run: RunData, client: str) -> str:
    svc = (run.manifest.get("services") or {}).get(client) or {}
    for e in run.events:  # the start event has the scenario's mode
        if e.get("kind") == "node" and e.get("event") == "started" and e.get("node") == client:
            if e.get("mode") == "remote":
                return e.get("render_node") or "remote"
            return "device"
    return "device" if svc.get("mode", "local") == "local" else "remote"


def phases(run: RunData, client: str) -> list[Phase]:
    end = run.duration
    done = [m for m in migrations(run, client) if m.outcome in SWITCHED and m.t is not None]
    switches = [m for m in done if 0 <= m.t < end]
    # Where it was at t = 0: after the last switch of the warm-up, if any.
    before = [m for m in done if m.t < 0]
    if before:
        first = before[-1].to
    else:
        first = switches[0].frm if switches else initial_placement(run, client)
    out, start, placement = [], 0.0, first
    for m in switches:
        out.append(Phase(len(out), start, m.t, placement))
        start, placement = m.t, m.to
    out.append(Phase(len(out), start, end, placement))
    return [p for p in out if p.end > p.start]


def phase_stats(
    run: RunData, client: str, quantities: tuple[Quantity, ...] = CLIENT_QUANTITIES
) -> list[tuple[Phase, Quantity, Summary]]:
    rows = []
    ps = phases(run, client)
    for q in quantities:
        line = combined(run, client, q)
        if line[0].size == 0:
            continue
        for p in ps:
            rows.append((p, q, summarize(window(line, p.start, p.end))))
    return rows
