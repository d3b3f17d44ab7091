"""Replay a telemetry trace through the engine: what would a policy have done?

A trace is a JSONL file, one event per line, in time order (``t`` seconds
from the trace's start)::

    {"t": 0, "event": "meta", "description": "..."}                 # ignored
    {"t": 0, "event": "node", "register": {"name": "edge-1", "location": "edge",
                                           "capacity": 4, "url": "ws://edge:8770/session"}}
    {"t": 0, "event": "client", "register": {"name": "alice"}}
    {"t": 1, "event": "node_status", "node": "edge-1", "status": {"sessions": 0, "capacity": 4}}
    {"t": 1, "event": "telemetry", "client": "alice", "at": "device",
     "sample": {"fps": 24.0, "frame_ms": [41, 60, 75], "rtt_sim_ms": 20, ...}}
    {"t": 9, "event": "node_down", "node": "edge-1"}                 # its connection is lost
    {"t": 9, "event": "fail", "client": "alice", "node": "cloud-1", "outcome": "rollback"}

``sample`` holds `Telemetry` fields except ``seq``, ``mode`` and ``node``
(and ``t``): the replayer numbers samples and fills the placement in.
``at`` says which placement the sample describes: a *closed-loop* trace
carries, for every second, what the client would measure on the device
and on each node, and only the sample of the placement the client is at
(after the policy's decisions) is fed. A sample without ``at`` is fed
whatever the placement (an open-loop recording of one real session; add
``mode``/``node`` to it then). A second with no sample for the client's
placement is a missing sample.

The simulated client obeys every `migrate` after ``switch_s``: it reports
``ok`` and renders from the target — unless a ``fail`` event for that
target is active, in which case it reports that outcome and stays.

Engine ticks run every ``eval_interval_s``, half an interval after the
samples, as in the service where the two are not synchronised.

``python -m scheduler.replay TRACE --policy threshold [--config F] [--log F]``
prints a JSON summary (also ``shiftcraft scheduler --replay TRACE``).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler.config import EngineConfig, build_config, load_config_file
from scheduler.decisions import DecisionLog
from scheduler.engine import Engine
from scheduler.messages import (
    DEVICE,
    SCHED_PROTOCOL_VERSION,
    Migrate,
    MigrationReport,
    from_wire,
    mode_of,
)
from scheduler.policies import PolicySpec

SWITCH_S = 0.5  # how long the simulated client takes to switch


@dataclass(slots=True)
class Switch:
    t: float
    client: str
    frm: str
    to: str
    reason: str
    decision: int


@dataclass
class ReplayResult:
    switches: list[Switch] = field(default_factory=list)  # executed (outcome ok)
    commands: list[tuple[float, str, Migrate]] = field(default_factory=list)
    reports: list[tuple[float, str, MigrationReport]] = field(default_factory=list)
    placement: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # timeline
    samples_fed: int = 0
    samples_missing: int = 0  # seconds with no sample for the client's placement
    engine: Engine | None = None

    def switch_count(self, client: str | None = None) -> int:
        return sum(1 for s in self.switches if client is None or s.client == client)

    def final(self, client: str) -> str:
        return self.placement[client][-1][1]

    def placement_at(self, client: str, t: float) -> str:
        where = DEVICE
        for at, p in self.placement[client]:
            if at > t:
                break
            where = p
        return where

    def summary(self) -> dict[str, Any]:
        eng = self.engine
        return {
            "policy": eng.spec.label if eng else None,
            "switches": len(self.switches),
            "switch_list": [
                {"t": s.t, "client": s.client, "from": s.frm, "to": s.to, "reason": s.reason}
                for s in self.switches
            ],
            "commands": len(self.commands),
            "failed": sum(1 for _, _, r in self.reports if r.outcome != "ok"),
            "holds": dict(eng.stats.holds) if eng else {},
            "samples_fed": self.samples_fed,
            "samples_missing": self.samples_missing,
            "final": {c: tl[-1][1] for c, tl in self.placement.items()},
        }


def load_trace(path: str | Path) -> list[dict[str, Any]]:
    events = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
            if not isinstance(ev, dict) or "t" not in ev or "event" not in ev:
                raise ValueError(f"{path}:{n}: an event needs 't' and 'event'")
            events.append(ev)
    return events


class Replayer:
    def __init__(
        self,
        spec: PolicySpec,
        cfg: EngineConfig | None = None,
        log: DecisionLog | None = None,
        switch_s: float = SWITCH_S,
    ) -> None:
        self.cfg = cfg or EngineConfig()
        self.engine = Engine(self.cfg, spec, log, send=self._send)
        self.switch_s = switch_s
        self.result = ReplayResult(engine=self.engine)
        self.where: dict[str, str] = {}  # simulated client placement
        self.seq: dict[str, int] = {}
        self.fails: dict[tuple[str, str], str] = {}  # (client, node) -> outcome
        self._now = 0.0
        self._next_tick = 0.0
        self._queue: list[tuple[float, int, str, Migrate]] = []  # switches to execute
        self._order = itertools.count()

    def _send(self, client: str, msg: Migrate) -> bool:
        self.result.commands.append((self._now, client, msg))
        heapq.heappush(self._queue, (self._now + self.switch_s, next(self._order), client, msg))
        return True

    def _execute(self, t: float, client: str, msg: Migrate) -> None:
        frm = self.where[client]
        outcome = self.fails.get((client, msg.node), "ok")
        report = MigrationReport(
            decision=msg.decision,
            outcome=outcome,
            from_node=frm,
            to_node=msg.node,
            reason="" if outcome == "ok" else "trace: target fails",
            gap_ms=10.0 if outcome == "ok" else 0.0,
            duration_ms=self.switch_s * 1000.0,
        )
        if outcome == "ok":
            self.where[client] = msg.node
            self.result.placement[client].append((t, msg.node))
            self.result.switches.append(Switch(t, client, frm, msg.node, msg.reason, msg.decision))
        self.result.reports.append((t, client, report))
        self.engine.report(client, report, t)

    def _advance(self, until: float) -> None:
        """Run ticks and queued switches up to ``until`` (inclusive), in time order."""
        interval = self.cfg.eval_interval_s
        while True:
            next_tick = self._next_tick
            next_switch = self._queue[0][0] if self._queue else float("inf")
            t = min(next_tick, next_switch)
            if t > until:
                return
            self._now = t
            if next_switch <= next_tick:
                _, _, client, msg = heapq.heappop(self._queue)
                self._execute(t, client, msg)
            else:
                self.engine.tick(t)
                self._next_tick += interval

    def run(self, events: list[dict[str, Any]]) -> ReplayResult:
        events = sorted(events, key=lambda e: e["t"])  # stable: same-time order kept
        start = events[0]["t"] if events else 0.0
        self._next_tick = start + self.cfg.eval_interval_s / 2
        for ev in events:
            t = float(ev["t"])
            self._advance(t)
            self._now = t
            self._apply(ev, t)
        if events:
            self._advance(events[-1]["t"] + self.cfg.eval_interval_s)
        return self.result

    def _apply(self, ev: dict[str, Any], t: float) -> None:
        kind = ev["event"]
        eng = self.engine
        if kind == "node":
            reg = {"version": SCHED_PROTOCOL_VERSION, "role": "render-node", **ev["register"]}
            eng.register(from_wire({"type": "register", **reg}), t)  # type: ignore[arg-type]
        elif kind == "client":
            reg = {"version": SCHED_PROTOCOL_VERSION, "role": "client", **ev["register"]}
            msg = from_wire({"type": "register", **reg})
            eng.register(msg, t)  # type: ignore[arg-type]
            start = ev.get("start", DEVICE)
            self.where[msg.name] = start  # type: ignore[attr-defined]
            self.result.placement[msg.name] = [(t, start)]  # type: ignore[attr-defined]
            self.seq[msg.name] = 0  # type: ignore[attr-defined]
        elif kind == "node_status":
            status = from_wire({"type": "node_status", "t": t, **ev["status"]})
            eng.node_status(ev["node"], status, t)  # type: ignore[arg-type]
        elif kind == "node_down":
            node = eng.registry.nodes.get(ev["node"])
            if node is not None:
                eng.disconnect("render-node", ev["node"], t, node.conn)
        elif kind == "client_down":
            eng.disconnect("client", ev["client"], t)
        elif kind == "fail":
            key = (ev["client"], ev["node"])
            if ev.get("outcome", "rollback") == "ok":
                self.fails.pop(key, None)
            else:
                self.fails[key] = ev.get("outcome", "rollback")
        elif kind == "telemetry":
            self._telemetry(ev, t)
        elif kind != "meta":
            raise ValueError(f"unknown trace event {kind!r} at t={t}")

    def _telemetry(self, ev: dict[str, Any], t: float) -> None:
        client = ev["client"]
        at = ev.get("at")
        sample = dict(ev["sample"])
        if at is not None:
            if at != self.where.get(client):
                return  # describes a placement the client is not at
            sample.update(mode=mode_of(at), node=at)
        self.seq[client] += 1
        msg = from_wire({"type": "telemetry", "seq": self.seq[client], "t": t, **sample})
        self.engine.telemetry(client, msg, t)  # type: ignore[arg-type]
        self.result.samples_fed += 1


def replay(
    events: list[dict[str, Any]] | str | Path,
    spec: PolicySpec,
    cfg: EngineConfig | None = None,
    log: DecisionLog | None = None,
    switch_s: float = SWITCH_S,
) -> ReplayResult:
    """Run ``events`` (or a trace file) through an engine with policy ``spec``."""
    if not isinstance(events, list):
        events = load_trace(events)
    result = Replayer(spec, cfg, log, switch_s).run(events)
    # Seconds where the client's placement had no sample: missing data.
    seen: dict[str, set[int]] = {}
    for ev in events:
        if ev["event"] == "telemetry":
            c = ev["client"]
            at = ev.get("at")
            if at is None or at == result.placement_at(c, float(ev["t"])):
                seen.setdefault(c, set()).add(int(ev["t"]))
    for secs in seen.values():
        if secs:
            result.samples_missing += (max(secs) - min(secs) + 1) - len(secs)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scheduler.replay", description="replay a telemetry trace through a policy"
    )
    p.add_argument("trace")
    p.add_argument(
        "--policy", default=None, help="static-local|static:NODE|threshold|battery|score"
    )
    p.add_argument("--config", default=None, help="YAML/JSON policy parameters")
    p.add_argument("--log", default=None, help="write the decision log (JSONL) here")
    args = p.parse_args(argv)
    try:
        data = load_config_file(args.config) if args.config else {}
        cfg = build_config(data, policy=args.policy)
        with DecisionLog(args.log) as log:
            result = replay(args.trace, cfg.policy_spec(), cfg.engine, log)
    except (ValueError, OSError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
