"""The scheduler's Prometheus collectors, on a registry of its own.

The engine counts in plain Python (`EngineStats`: it also runs without a
service, in trace replays); `SchedulerMetrics.publish` moves what changed
into the collectors when /metrics is scraped, as the sim server does.
Labels stay few and bounded: locations (device/edge/cloud), reason codes,
outcomes, modes — and ``node`` for per-node load, one series per render node.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from shiftcraft import metric_names as m

if TYPE_CHECKING:
    from scheduler.engine import Engine

GAP_BUCKETS = (0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
EVAL_BUCKETS = (0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01)


class SchedulerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            m.SCHEDULER_DECISIONS_TOTAL,
            "Migrate commands sent, by source and target location and reason",
            ["from", "to", "reason"],
            registry=r,
        )
        self.holds = Counter(
            m.SCHEDULER_HOLDS_TOTAL,
            "Evaluations where a threshold was crossed but no command was sent, by reason",
            ["reason"],
            registry=r,
        )
        self.migrations = Counter(
            m.SCHEDULER_MIGRATIONS_TOTAL,
            "Migration outcomes reported by clients (timeout: no report)",
            ["outcome"],
            registry=r,
        )
        self.gap = Histogram(
            m.SCHEDULER_MIGRATION_GAP_SECONDS,
            "Display gap clients reported for their switches",
            buckets=GAP_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            m.SCHEDULER_MIGRATION_DURATION_SECONDS,
            "Switch durations clients reported",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.eval_time = Histogram(
            m.SCHEDULER_EVALUATION_DURATION_SECONDS,
            "Wall time of one client evaluation (view + policy)",
            buckets=EVAL_BUCKETS,
            registry=r,
        )
        self.evaluations = Counter(
            m.SCHEDULER_EVALUATIONS_TOTAL, "Client evaluations run", registry=r
        )
        self.samples = Counter(
            m.SCHEDULER_TELEMETRY_SAMPLES_TOTAL, "Telemetry samples ingested", registry=r
        )
        self.ignored = Counter(
            m.SCHEDULER_TELEMETRY_IGNORED_TOTAL,
            "Telemetry samples ignored (duplicate or out of order)",
            registry=r,
        )
        self.rejected = Counter(
            m.SCHEDULER_MESSAGES_REJECTED_TOTAL,
            "Peer messages rejected, by error code",
            ["reason"],
            registry=r,
        )
        self.clients = Gauge(
            m.SCHEDULER_CLIENTS, "Connected clients by rendering mode", ["mode"], registry=r
        )
        self.nodes = Gauge(
            m.SCHEDULER_NODES, "Alive render nodes by location", ["location"], registry=r
        )
        self.node_sessions = Gauge(
            m.SCHEDULER_NODE_SESSIONS, "Sessions a render node reports", ["node"], registry=r
        )
        self.node_capacity = Gauge(
            m.SCHEDULER_NODE_CAPACITY, "Sessions a render node accepts", ["node"], registry=r
        )
        self._published: dict[object, int] = {}
        self._node_labels: set[str] = set()
        # The service counts rejected messages here directly (per connection, rare).
        self.rejected_tally: Tally[str] = Tally()

    def observe(self, kind: str, value: float) -> None:
        """The engine's `Observer`: histograms are fed as things happen."""
        hist = {"gap": self.gap, "duration": self.duration, "evaluation": self.eval_time}.get(kind)
        if hist is not None:
            hist.observe(value)

    def _delta(self, key: object, value: int) -> int:
        d = value - self._published.get(key, 0)
        if d:
            self._published[key] = value
        return d

    def publish(self, engine: Engine, now: float) -> None:
        st = engine.stats
        for (frm, to, reason), n in st.decisions.items():
            if d := self._delta(("decision", frm, to, reason), n):
                self.decisions.labels(frm, to, reason).inc(d)
        for reason, n in st.holds.items():
            if d := self._delta(("hold", reason), n):
                self.holds.labels(reason).inc(d)
        for outcome, n in st.reports.items():
            if d := self._delta(("report", outcome), n):
                self.migrations.labels(outcome).inc(d)
        for reason, n in self.rejected_tally.items():
            if d := self._delta(("rejected", reason), n):
                self.rejected.labels(reason).inc(d)
        for key, counter, value in (
            ("evaluations", self.evaluations, st.evaluations),
            ("samples", self.samples, st.samples),
            ("ignored", self.ignored, st.samples_ignored),
        ):
            if d := self._delta(key, value):
                counter.inc(d)
        reg = engine.registry
        modes = Tally(
            "local" if c.placement == "device" else "remote"
            for c in reg.clients.values()
            if c.connected
        )
        for mode in ("local", "remote"):
            self.clients.labels(mode).set(modes.get(mode, 0))
        alive = reg.alive_nodes(now)
        locations = Tally(n.location for n in alive)
        for loc in ("device", "edge", "cloud"):
            self.nodes.labels(loc).set(locations.get(loc, 0))
        names = {n.name for n in alive}
        for gone in self._node_labels - names:
            self.node_sessions.remove(gone)
            self.node_capacity.remove(gone)
        for n in alive:
            self.node_sessions.labels(n.name).set(n.sessions)
            self.node_capacity.labels(n.name).set(n.capacity)
        self._node_labels = names

    def exposition(self, engine: Engine, now: float) -> bytes:
        self.publish(engine, now)
        return generate_latest(self.registry)
