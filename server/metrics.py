"""The server's counters: plain Python numbers on the hot path, Prometheus
collectors (on a per-server registry) refreshed once per tick.

Incrementing a labelled prometheus-client counter takes a lock and a dict
lookup; doing that per message for hundreds of clients would show in the tick
time. So the tick and the connection handlers bump `ServerStats` fields, and
`ServerMetrics.publish` moves the differences into the collectors once per
tick. `/stats` reads `ServerStats` directly.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from shiftcraft import metric_names as m

TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 1.0)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


@dataclass(slots=True)
class ServerStats:
    """Monotonic totals since start (what /stats shows and /metrics exports)."""

    tick: int = 0
    ticks_skipped: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    sections_sent: int = 0
    block_deltas_sent: int = 0
    block_changes: int = 0
    input_frames: int = 0
    input_frames_dropped: int = 0
    input_frames_duplicate: int = 0  # seq already consumed: skipped, never applied twice
    input_frames_missing: int = 0  # seq gaps: frames a client sent that never arrived
    connections: int = 0
    commit_failures: int = 0
    messages_in: Tally[str] = field(default_factory=Tally)  # by type
    rejected: Tally[str] = field(default_factory=Tally)  # by reason (error code)
    edits_applied: Tally[str] = field(default_factory=Tally)  # by action
    edits_rejected: Tally[str] = field(default_factory=Tally)  # by reason
    disconnects: Tally[str] = field(default_factory=Tally)  # by reason


class TickClock:
    """The durations of recent ticks and the achieved tick rate."""

    def __init__(self, ring: int) -> None:
        self.durations: deque[float] = deque(maxlen=ring)  # seconds
        self.starts: deque[float] = deque(maxlen=ring)  # monotonic start of each tick

    def record(self, start: float, duration: float) -> None:
        self.starts.append(start)
        self.durations.append(duration)

    def tps(self, window: float = 5.0) -> float:
        """Ticks per second over the last ``window`` seconds (0 before two ticks)."""
        if len(self.starts) < 2:
            return 0.0
        now = time.monotonic()
        last = self.starts[-1]
        if now - last > window:
            return 0.0  # stalled
        n = 0
        first = last
        for s in reversed(self.starts):
            if now - s > window:
                break
            first = s
            n += 1
        return (n - 1) / (last - first) if n > 1 and last > first else 0.0


class ServerMetrics:
    """Prometheus collectors on a registry of this server's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tick_duration = Histogram(
            m.SERVER_TICK_DURATION_SECONDS,
            "Wall time of one simulation tick, including its group commit",
            buckets=TICK_BUCKETS,
            registry=r,
        )
        self.commit_duration = Histogram(
            m.SERVER_COMMIT_DURATION_SECONDS,
            "Wall time of one group commit to the world store",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.players = Gauge(m.SERVER_PLAYERS, "Connected clients by role", ["role"], registry=r)
        self.sections_loaded = Gauge(
            m.SERVER_SECTIONS_LOADED, "Sections held in memory", registry=r
        )
        self.section_cache_bytes = Gauge(
            m.SERVER_SECTION_CACHE_BYTES, "Encoded section bytes cached for sending", registry=r
        )

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=r)

        self.counters = {
            "tick": counter(m.SERVER_TICKS_TOTAL, "Ticks run"),
            "ticks_skipped": counter(
                m.SERVER_TICKS_SKIPPED_TOTAL, "Ticks skipped to resynchronise the clock"
            ),
            "bytes_out": counter(m.SERVER_SENT_BYTES_TOTAL, "Websocket payload bytes sent"),
            "bytes_in": counter(m.SERVER_RECEIVED_BYTES_TOTAL, "Websocket payload bytes received"),
            "messages_out": counter(m.SERVER_MESSAGES_SENT_TOTAL, "Messages sent"),
            "sections_sent": counter(m.SERVER_SECTIONS_SENT_TOTAL, "Sections sent to clients"),
            "block_deltas_sent": counter(
                m.SERVER_BLOCK_DELTAS_SENT_TOTAL, "Block deltas sent to clients"
            ),
            "block_changes": counter(m.SERVER_BLOCK_CHANGES_TOTAL, "Blocks changed in the world"),
            "input_frames": counter(m.SERVER_INPUT_FRAMES_TOTAL, "Input frames applied"),
            "input_frames_dropped": counter(
                m.SERVER_INPUT_FRAMES_DROPPED_TOTAL, "Input frames dropped by the speed check"
            ),
            "input_frames_duplicate": counter(
                m.SERVER_INPUT_FRAMES_DUPLICATE_TOTAL, "Input frames whose seq was already consumed"
            ),
            "input_frames_missing": counter(
                m.SERVER_INPUT_FRAMES_MISSING_TOTAL, "Input seqs skipped (frames that never came)"
            ),
            "connections": counter(m.SERVER_CONNECTIONS_TOTAL, "Websocket connections accepted"),
            "commit_failures": counter(
                m.SERVER_COMMIT_FAILURES_TOTAL, "Group commits that failed (retried next tick)"
            ),
        }
        self.labelled = {
            "messages_in": counter(
                m.SERVER_MESSAGES_RECEIVED_TOTAL, "Client messages received", ("type",)
            ),
            "rejected": counter(
                m.SERVER_MESSAGES_REJECTED_TOTAL, "Client messages rejected", ("reason",)
            ),
            "edits_applied": counter(m.SERVER_EDITS_APPLIED_TOTAL, "Edits applied", ("action",)),
            "edits_rejected": counter(
                m.SERVER_EDITS_REJECTED_TOTAL, "Edit requests rejected", ("reason",)
            ),
            "disconnects": counter(
                m.SERVER_DISCONNECTS_TOTAL, "Connections ended, by reason", ("reason",)
            ),
        }
        self._published: dict[str, int] = {}
        self._published_tallies: dict[tuple[str, str], int] = {}

    def publish(self, stats: ServerStats) -> None:
        """Move what changed in ``stats`` since the last call into the collectors."""
        for name, collector in self.counters.items():
            value = getattr(stats, name)
            delta = value - self._published.get(name, 0)
            if delta:
                collector.inc(delta)
                self._published[name] = value
        for name, collector in self.labelled.items():
            tally: Tally[str] = getattr(stats, name)
            for label, value in tally.items():
                key = (name, label)
                delta = value - self._published_tallies.get(key, 0)
                if delta:
                    collector.labels(label).inc(delta)
                    self._published_tallies[key] = value

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
