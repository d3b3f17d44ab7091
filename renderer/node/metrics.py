"""The render node's Prometheus collectors, on a registry of its own.

Names come from `shiftcraft.metric_names` (base units). No per-session
labels: sessions come and go, and a label per session would grow the
series without bound; per-session figures are on ``/stats`` instead.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from shiftcraft import metric_names as m

FRAME_BUCKETS = (0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25)
ENCODE_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1)


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.sessions = Gauge(m.RENDER_SESSIONS, "Sessions streaming now", registry=r)
        self.sessions_started = Counter(
            m.RENDER_SESSIONS_STARTED_TOTAL, "Sessions offered", registry=r
        )
        self.sessions_ended = Counter(
            m.RENDER_SESSIONS_ENDED_TOTAL, "Sessions ended, by reason", ["reason"], registry=r
        )
        self.frames = Counter(m.RENDER_FRAMES_TOTAL, "Frames encoded and sent", registry=r)
        self.dropped = Counter(
            m.RENDER_FRAMES_DROPPED_TOTAL,
            "Frame ticks skipped because the session was behind",
            registry=r,
        )
        self.keyframes = Counter(m.RENDER_KEYFRAMES_TOTAL, "Keyframes sent", registry=r)
        self.frame_time = Histogram(
            m.RENDER_FRAME_DURATION_SECONDS, "Time to render a frame", buckets=FRAME_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.encode_time = Histogram(
            m.RENDER_ENCODE_DURATION_SECONDS, "Time to convert and encode a frame",
            buckets=ENCODE_BUCKETS, registry=r,
        )  # fmt: skip
        self.pipeline_time = Histogram(
            m.RENDER_PIPELINE_DURATION_SECONDS,
            "Frame tick to packets handed to the sender (queueing, render, encode)",
            buckets=FRAME_BUCKETS, registry=r,
        )  # fmt: skip
        self.sent_bytes = Counter(m.RENDER_SENT_BYTES_TOTAL, "Encoded video bytes", registry=r)
        self.target_bitrate = Gauge(
            m.RENDER_TARGET_BITRATE, "Sum of the sessions' encoder targets", registry=r
        )
        self.rebuilds = Counter(
            m.RENDER_ENCODER_REBUILDS_TOTAL, "Encoders rebuilt, by reason", ["reason"], registry=r
        )
        self.sim_connected = Gauge(m.RENDER_SIM_CONNECTED, "Connected to the sim (0/1)", registry=r)
        self.sections = Gauge(m.RENDER_SECTIONS, "Sections in the node's replica", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
