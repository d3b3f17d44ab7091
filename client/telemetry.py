"""The client's telemetry: what playing feels like, measured once a second.

`TelemetryCollector.collect` looks at the running `client.game.Game` and
its process and produces a `ClientSnapshot`: displayed FPS and frame-time
percentiles over the last window, RTT to the sim (protocol ping/pong) and
to the render node (data-channel ping/pong), resident memory, bytes/s in
and out on the sim socket and on the WebRTC stream, CPU, battery (modelled
or real, `client.device`) and where the picture comes from (mode, node).

From a snapshot come the two views of it:

* `ClientSnapshot.telemetry()` — the compact `scheduler.messages.Telemetry`
  sample a `SchedulerLink` pushes to the scheduler;
* `ClientMetrics` — Prometheus collectors on a registry of their own
  (names in `shiftcraft.metric_names`, base units), served by
  `client.metrics_http`.

The collector runs its own one-second loop (`run`), so the battery model
and the counters advance at one pace whether or not a scheduler is there;
the link's ``sample()`` just hands over the newest snapshot.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from client.device import Battery, BatteryReading, RealBattery
from scheduler.messages import DEVICE, MAX_PROBES, Telemetry
from shiftcraft import metric_names as m
from shiftcraft.protocol import NAME_RE

LOCAL = "local"  # client.migration's name for local rendering
# Displayed-frame intervals: 250 fps .. 1 fps, dense around 30/60 fps.
FRAME_BUCKETS = (
    0.004, 0.008, 0.0125, 0.0167, 0.02, 0.025, 0.0333, 0.04, 0.05, 0.0667, 0.1, 0.15,
    0.25, 0.5, 1.0,
)  # fmt: skip
GAP_BUCKETS = (0.005, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
LINKS = ("sim", "stream")


def process_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def process_rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # unknown, never a crash
        return None


def trigger_kind(trigger: str) -> str:
    """A migration trigger as a bounded label: ``scheduler:17`` -> ``scheduler``."""
    return trigger.split(":", 1)[0] or "manual"


@dataclass(slots=True)
class ClientSnapshot:
    """One collection: every figure the client reports (None = unknown)."""

    t: float  # wall clock (Unix seconds)
    mode: str  # local | remote
    node: str  # "device" in local mode, else the render node's name
    playing: bool  # in the game and showing frames: a sample worth sending
    fps: float
    frame_ms: tuple[float, float, float]  # p50, p95, p99 of displayed-frame intervals
    frames_total: int
    rtt_sim_ms: float | None = None
    rtt_node_ms: float | None = None
    rss_bytes: int | None = None
    cpu_seconds_total: float = 0.0
    cpu: float | None = None  # share of the whole machine, last interval
    bytes_in: dict[str, int] = field(default_factory=dict)  # link -> total
    bytes_out: dict[str, int] = field(default_factory=dict)
    rx_per_s: dict[str, float] = field(default_factory=dict)  # link -> bytes/s
    tx_per_s: dict[str, float] = field(default_factory=dict)
    stream_bitrate_bps: float | None = None
    battery: BatteryReading | None = None
    battery_energy_j: float | None = None
    probes: list[tuple[str, float]] = field(default_factory=list)  # (node, rtt ms)

    @property
    def rx_bytes_per_s(self) -> float | None:
        return sum(self.rx_per_s.values()) if self.rx_per_s else None

    @property
    def tx_bytes_per_s(self) -> float | None:
        return sum(self.tx_per_s.values()) if self.tx_per_s else None

    def telemetry(self) -> Telemetry:
        """The scheduler's sample (``seq`` is filled in by the `SchedulerLink`)."""
        b = self.battery
        return Telemetry(
            seq=0,
            t=self.t,
            mode=self.mode,
            node=self.node,
            fps=min(self.fps, 1000.0),
            frame_ms=tuple(min(v, 1e6) for v in self.frame_ms),
            rtt_sim_ms=self.rtt_sim_ms,
            rtt_node_ms=self.rtt_node_ms if self.mode == "remote" else None,
            rss_bytes=self.rss_bytes,
            rx_bytes_per_s=self.rx_bytes_per_s,
            tx_bytes_per_s=self.tx_bytes_per_s,
            cpu=self.cpu,
            battery_level=None if b is None else b.level,
            battery_charging=None if b is None else b.charging,
            battery_power_w=None if b is None else b.power_w,
            stream_bitrate_bps=self.stream_bitrate_bps if self.mode == "remote" else None,
            probes=[[n, ms] for n, ms in self.probes],
        )

    def as_dict(self) -> dict[str, Any]:
        """For ``GET /state`` and status lines (JSON-ready)."""
        b = self.battery
        return {
            "t": round(self.t, 3),
            "mode": self.mode,
            "node": self.node,
            "playing": self.playing,
            "fps": round(self.fps, 2),
            "frame_ms": [round(v, 2) for v in self.frame_ms],
            "rtt_sim_ms": _r(self.rtt_sim_ms),
            "rtt_node_ms": _r(self.rtt_node_ms),
            "rss_bytes": self.rss_bytes,
            "cpu": _r(self.cpu, 4),
            "rx_bytes_per_s": _r(self.rx_bytes_per_s),
            "tx_bytes_per_s": _r(self.tx_bytes_per_s),
            "stream_bitrate_bps": _r(self.stream_bitrate_bps),
            "probes": {n: _r(ms) for n, ms in self.probes},
            "battery": None
            if b is None
            else {
                "level": _r(b.level, 4),
                "charging": b.charging,
                "power_w": _r(b.power_w, 3),
                "source": b.source,
            },
        }


def _r(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)


@dataclass(slots=True)
class _StreamCount:
    stream: Any  # kept so an id() is never reused while we track it
    bytes_in: int
    bytes_out: int
    video_in: int


class TelemetryCollector:
    """Measures a running game (see the module docstring).

    ``game`` needs: ``migration`` (a `MigrationController` or None),
    ``remote``, ``source``, ``session`` (rtt_last, traffic), ``shown_stats``,
    ``rendered`` and ``playing`` — what `client.game.Game` has.
    """

    def __init__(
        self,
        game: Any,
        *,
        battery: Battery | RealBattery | None = None,
        metrics: ClientMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_seconds: Callable[[], float] = process_cpu_seconds,
        rss_bytes: Callable[[], int | None] = process_rss_bytes,
        cpu_count: int | None = None,
        screen_on: bool = True,
        prober: NodeProber | None = None,
    ) -> None:
        self.game = game
        self.prober = prober
        self.battery = battery
        self.metrics = metrics
        self.clock = clock
        self.cpu_seconds = cpu_seconds
        self.rss_bytes = rss_bytes
        self.cpu_count = max(1, cpu_count or os.cpu_count() or 1)
        self.screen_on = screen_on  # a headless client stands in for a device whose screen is on
        self.latest: ClientSnapshot | None = None
        self.collections = 0
        self._last_at: float | None = None
        self._last_cpu: float | None = None
        self._last_sim: tuple[int, int] | None = None
        self._streams: dict[int, _StreamCount] = {}
        self._stream_in = 0  # totals over every stream this client opened
        self._stream_out = 0
        self._frames_seen = 0
        self._hist_t = -math.inf  # newest displayed frame whose interval is in the histogram

    # -- where the picture comes from ----------------------------------------------
    def placement(self) -> tuple[str, str]:
        """(mode, node) as the scheduler names them: ("local", "device") or ("remote", NAME)."""
        g = self.game
        ctl = getattr(g, "migration", None)
        if ctl is not None:
            node = ctl.node
            return ("local", DEVICE) if node == LOCAL else ("remote", node)
        return ("remote", "node") if g.remote else ("local", DEVICE)

    def _streams_now(self) -> list[Any]:
        g = self.game
        out = []
        src = getattr(g.source, "stream", None)
        if src is not None:
            out.append(src)
        ctl = getattr(g, "migration", None)
        sw = getattr(ctl, "current", None) if ctl is not None else None
        cand = getattr(getattr(sw, "candidate", None), "stream", None)
        if cand is not None and cand is not src:
            out.append(cand)
        return out

    # -- one collection ------------------------------------------------------------
    def collect(self) -> ClientSnapshot:
        g = self.game
        now = self.clock()
        dt = None if self._last_at is None else now - self._last_at
        self._last_at = now

        # Frames shown (new content only: a remote loop redraws the same video frame).
        fs = g.shown_stats
        new_frames = fs.frames - self._frames_seen
        self._frames_seen = fs.frames
        intervals = fs.intervals_after(self._hist_t)
        if fs.last is not None:
            self._hist_t = fs.last
        p50, p95, p99 = fs.percentiles_ms()
        fps = fs.fps
        if fs.last is not None and now - fs.last > fs.window_s:
            # Nothing shown for a whole window (a stalled stream): the window only
            # prunes on new frames, so it still holds old ones. Say how bad it is.
            open_ms = (now - fs.last) * 1000.0
            fps, p50, p95, p99 = 0.0, open_ms, open_ms, open_ms

        # CPU time of this process (all threads: the renderer's numba pool too).
        cpu_total = self.cpu_seconds()
        cpu = None
        if dt is not None and dt > 0 and self._last_cpu is not None:
            busy = max(0.0, cpu_total - self._last_cpu) / dt
            cpu = min(1.0, busy / self.cpu_count)
        self._last_cpu = cpu_total

        # Bytes: the sim socket (all connections so far) and every WebRTC stream.
        t = g.session.traffic
        sim_in, sim_out = t.bytes_in, t.bytes_out
        d_sim_in = d_sim_out = 0
        if self._last_sim is not None:
            d_sim_in = max(0, sim_in - self._last_sim[0])
            d_sim_out = max(0, sim_out - self._last_sim[1])
        self._last_sim = (sim_in, sim_out)
        d_stream_in, d_stream_out, d_video = self._stream_deltas()
        self._stream_in += d_stream_in
        self._stream_out += d_stream_out

        mode, node = self.placement()
        rx: dict[str, float] = {}
        tx: dict[str, float] = {}
        bitrate = None
        if dt is not None and dt > 0:
            rx = {"sim": d_sim_in / dt, "stream": d_stream_in / dt}
            tx = {"sim": d_sim_out / dt, "stream": d_stream_out / dt}
            bitrate = d_video * 8.0 / dt

        rtt_node = None
        stream = getattr(g.source, "stream", None)
        if mode == "remote" and stream is not None:
            rtt_node = stream.stats.rtt_ms
        rtt_sim = g.session.rtt_last
        reading = None
        if self.battery is not None:
            total = sim_in + sim_out + self._stream_in + self._stream_out
            reading = self.battery.sample(now, total, self.screen_on, cpu_total_s=cpu_total)
        snap = ClientSnapshot(
            t=time.time(),
            mode=mode,
            node=node,
            playing=bool(g.playing and g.rendered),
            fps=fps,
            frame_ms=(p50, p95, p99),
            frames_total=fs.frames,
            rtt_sim_ms=None if rtt_sim is None else rtt_sim * 1000.0,
            rtt_node_ms=rtt_node,
            rss_bytes=self.rss_bytes(),
            cpu_seconds_total=cpu_total,
            cpu=cpu,
            bytes_in={"sim": sim_in, "stream": self._stream_in},
            bytes_out={"sim": sim_out, "stream": self._stream_out},
            rx_per_s=rx,
            tx_per_s=tx,
            stream_bitrate_bps=bitrate,
            battery=reading,
            battery_energy_j=getattr(self.battery, "energy_used_j", None),
            probes=[] if self.prober is None else self.prober.probes(exclude=node),
        )
        self.latest = snap
        self.collections += 1
        if self.metrics is not None:
            self.metrics.update(snap, new_frames, intervals)
        return snap

    def _stream_deltas(self) -> tuple[int, int, int]:
        """Bytes each open stream moved since the last look (a closed one's tail is lost)."""
        seen: dict[int, _StreamCount] = {}
        d_in = d_out = d_video = 0
        for s in self._streams_now():
            jitter = getattr(s, "jitter", None)
            video = jitter.bytes_received if jitter is not None else 0
            cur_in = video + s.stats.channel_bytes_in
            cur_out = s.stats.channel_bytes_out
            old = self._streams.get(id(s))
            if old is None or old.stream is not s:
                old = _StreamCount(s, 0, 0, 0)
            d_in += max(0, cur_in - old.bytes_in)
            d_out += max(0, cur_out - old.bytes_out)
            if s is getattr(self.game.source, "stream", None):
                d_video += max(0, video - old.video_in)
            seen[id(s)] = _StreamCount(s, cur_in, cur_out, video)
        self._streams = seen
        return d_in, d_out, d_video

    # -- for the SchedulerLink -------------------------------------------------------
    def sample(self) -> Telemetry | None:
        """The newest snapshot as a scheduler sample; None (skip) until the game shows frames.

        Before the first frame, and while the sim connection is down, the
        figures say nothing about the rendering placement: the scheduler
        must not act on them.
        """
        snap = self.latest
        if snap is None or not snap.playing:
            return None
        return snap.telemetry()

    async def run(self, interval_s: float = 1.0) -> None:
        """Collect every ``interval_s`` until cancelled."""
        next_at = time.monotonic()
        while True:
            self.collect()
            next_at += interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a long frame): do not catch up in a burst
                next_at = time.monotonic()
                delay = 0.0
            await asyncio.sleep(delay)


class NodeProber:
    """RTT to candidate render nodes, for the scheduler's placement (``Telemetry.probes``).

    A TCP handshake with each node's signalling port costs one round trip
    and nothing on the node. It is timed in a worker thread: timed on the
    event loop it would include however long the current frame takes to
    render. Nodes are probed one after another every ``interval_s``; a
    node that does not answer within ``timeout_s`` drops out of the
    probes (unknown, never a guess).
    """

    def __init__(
        self,
        nodes: Callable[[], dict[str, str]],
        *,
        interval_s: float = 2.0,
        timeout_s: float = 1.0,
        max_age_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nodes = nodes
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        self.clock = clock
        self.rtt_ms: dict[str, tuple[float, float]] = {}  # name -> (ms, measured at)

    def probes(self, exclude: str = "") -> list[tuple[str, float]]:
        """Fresh measurements, as ``Telemetry.probes`` wants them (at most 32)."""
        now = self.clock()
        out = [
            (name, min(ms, 1e6))
            for name, (ms, at) in sorted(self.rtt_ms.items())
            if name != exclude and now - at <= self.max_age_s and NAME_RE.match(name)
        ]
        return out[:MAX_PROBES]

    def probe_once(self, url: str) -> float | None:
        """Milliseconds for one TCP handshake with the node behind ``url`` (blocking)."""
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            return None
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        t0 = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=self.timeout_s):
                return (time.perf_counter() - t0) * 1000.0
        except OSError:
            return None

    async def run(self) -> None:
        while True:
            for name, url in list(self.nodes().items()):
                ms = await asyncio.to_thread(self.probe_once, url)
                if ms is None:
                    self.rtt_ms.pop(name, None)
                else:
                    self.rtt_ms[name] = (ms, self.clock())
            await asyncio.sleep(self.interval_s)


class ClientMetrics:
    """The client's Prometheus collectors, on a registry of its own.

    Counters and histograms are prometheus_client objects; the gauges come
    from the newest snapshot through a custom collector, so an unknown value
    is simply absent rather than a misleading 0.
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.snapshot: ClientSnapshot | None = None
        self.scheduler_connected: Callable[[], bool] | None = None
        self.frames = Counter(
            m.CLIENT_FRAMES_TOTAL, "Frames displayed with new content", registry=r
        )
        self.frame_interval = Histogram(
            m.CLIENT_FRAME_INTERVAL_SECONDS, "Interval between displayed frames",
            buckets=FRAME_BUCKETS, registry=r,
        )  # fmt: skip
        self.samples = Counter(
            m.CLIENT_TELEMETRY_SAMPLES_TOTAL, "Telemetry collections (one a second)", registry=r
        )
        self.migrations = Counter(
            m.CLIENT_MIGRATIONS_TOTAL, "Render switches, by outcome and trigger",
            ["outcome", "trigger"], registry=r,
        )  # fmt: skip
        self.migration_gap = Histogram(
            m.CLIENT_MIGRATION_GAP_SECONDS,
            "Longest interval between displayed frames around a switch",
            buckets=GAP_BUCKETS, registry=r,
        )  # fmt: skip
        self.migration_duration = Histogram(
            m.CLIENT_MIGRATION_DURATION_SECONDS, "Switch request to display switched",
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self._nodes_seen: set[str] = {DEVICE}
        r.register(_SnapshotCollector(self))

    def update(self, snap: ClientSnapshot, new_frames: int, intervals: Any) -> None:
        self.snapshot = snap
        self._nodes_seen.add(snap.node)
        self.samples.inc()
        if new_frames > 0:
            self.frames.inc(new_frames)
        for iv in intervals:
            self.frame_interval.observe(float(iv))

    def observe_report(self, report: dict[str, Any]) -> None:
        """A `MigrationController` report (see client.migration)."""
        self.migrations.labels(
            outcome=str(report.get("outcome", "")), trigger=trigger_kind(str(report["trigger"]))
        ).inc()
        gap = report.get("gap_ms")
        if gap is not None:
            self.migration_gap.observe(gap / 1000.0)
        dur = report.get("duration_ms")
        if dur is not None and report.get("outcome") != "rollback":
            self.migration_duration.observe(dur / 1000.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _SnapshotCollector(Collector):
    def __init__(self, owner: ClientMetrics) -> None:
        self.owner = owner

    def describe(self) -> list:
        return []  # names vary with what is known; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        o = self.owner
        if o.scheduler_connected is not None:
            yield _gauge(
                m.CLIENT_SCHEDULER_CONNECTED, "Registered with the scheduler (0/1)",
                float(o.scheduler_connected()),
            )  # fmt: skip
        s = o.snapshot
        if s is None:
            return
        yield _gauge(m.CLIENT_FPS, "Displayed frames per second, last window", s.fps)
        g = GaugeMetricFamily(
            m.CLIENT_FRAME_INTERVAL_WINDOW_SECONDS,
            "Percentiles of displayed-frame intervals over the last window",
            labels=["percentile"],
        )
        for q, v in zip(("50", "95", "99"), s.frame_ms, strict=True):
            g.add_metric([q], v / 1000.0)
        yield g
        if s.rtt_sim_ms is not None:
            yield _gauge(m.CLIENT_RTT_SIM_SECONDS, "Round trip to the sim", s.rtt_sim_ms / 1000.0)
        if s.rtt_node_ms is not None and s.mode == "remote":
            yield _gauge(
                m.CLIENT_RTT_NODE_SECONDS, "Round trip to the render node (data channel)",
                s.rtt_node_ms / 1000.0,
            )  # fmt: skip
        if s.rss_bytes is not None:
            yield _gauge(m.CLIENT_RESIDENT_MEMORY_BYTES, "Resident memory", s.rss_bytes)
        c = CounterMetricFamily(m.CLIENT_CPU_SECONDS_TOTAL, "CPU time used by the client")
        c.add_metric([], s.cpu_seconds_total)
        yield c
        if s.cpu is not None:
            yield _gauge(m.CLIENT_CPU_RATIO, "Share of the whole machine, last interval", s.cpu)
        for name, doc, values in (
            (m.CLIENT_RECEIVED_BYTES_TOTAL, "Bytes received, by link", s.bytes_in),
            (m.CLIENT_SENT_BYTES_TOTAL, "Bytes sent, by link", s.bytes_out),
        ):
            c = CounterMetricFamily(name, doc, labels=["link"])
            for link in LINKS:
                c.add_metric([link], float(values.get(link, 0)))
            yield c
        for name, doc, values in (
            (m.CLIENT_RECEIVE_RATE, "Bytes received per second, last interval", s.rx_per_s),
            (m.CLIENT_SEND_RATE, "Bytes sent per second, last interval", s.tx_per_s),
        ):
            if values:
                g = GaugeMetricFamily(name, doc, labels=["link"])
                for link in LINKS:
                    g.add_metric([link], values.get(link, 0.0))
                yield g
        b = s.battery
        if b is not None:
            if b.level is not None:
                yield _gauge(m.CLIENT_BATTERY_LEVEL_RATIO, "Battery level", b.level)
            if b.charging is not None:
                yield _gauge(m.CLIENT_BATTERY_CHARGING, "On a charger (0/1)", float(b.charging))
            if b.power_w is not None:
                yield _gauge(m.CLIENT_BATTERY_POWER_WATTS, "Power drawn by the device", b.power_w)
        if s.battery_energy_j is not None:
            c = CounterMetricFamily(
                m.CLIENT_BATTERY_ENERGY_JOULES_TOTAL, "Energy drawn by the device (model)"
            )
            c.add_metric([], s.battery_energy_j)
            yield c
        yield _gauge(m.CLIENT_REMOTE, "Showing a render node's stream (0/1)", s.mode == "remote")
        g = GaugeMetricFamily(
            m.CLIENT_PLACEMENT, "1 for where the picture is rendered now", labels=["node"]
        )
        for node in sorted(o._nodes_seen):
            g.add_metric([node], float(node == s.node))
        yield g


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))
