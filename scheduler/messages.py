"""Every message of the control-plane protocol, defined once and validated on receipt.

Clients and render nodes talk to the scheduler over one websocket each,
binary frames, one msgpack map per frame — the same framing as the sim
protocol (`shiftcraft.protocol`), whose field checks are reused here so a
name or a number means the same thing on both wires. The key ``type`` names
the message; the other keys are the dataclass fields below.

Optional fields (those with defaults) may be left out. Telemetry fields that
default to ``None`` mean *unknown*: the encoder leaves them out, the decoder
accepts them missing or ``nil``, and the scheduler never acts on an unknown
value. Unknown keys, missing required keys, wrong types and out-of-range
values raise `ProtocolError` with a stable ``code``, sent back in an
``error`` message. ``docs/scheduler.md`` documents the same messages for people.

Placements are named by *node*: ``"device"`` is the player's own machine
(local rendering); any other value is a render node's registered name
(remote rendering, video over WebRTC).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

import msgpack

from shiftcraft.protocol import (
    NAME_RE,
    U32,
    Check,
    boolean,
    build_message,
    float_in,
    int_in,
    list_of,
    one_of,
    spec,
    text,
    tuple_of,
    unpack_frame,
)

SCHED_PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024  # any control-plane frame; a telemetry sample is ~200 B
DEVICE = "device"  # the placement "render on the player's own machine"
ROLES = ("client", "render-node")
LOCATIONS = ("device", "edge", "cloud")
MODES = ("local", "remote")
OUTCOMES = ("ok", "rollback", "fallback", "failed")
MAX_PROBES = 32  # RTT probes to candidate nodes in one sample
MAX_NODE_PLAYERS = 4096

# Common shapes.
TIME = float_in(0.0, 1e12)  # seconds (Unix time or any monotonic clock)
MS = float_in(0.0, 1e6)  # milliseconds
RATIO = float_in(0.0, 1.0)
FPS = float_in(0.0, 1000.0)
BYTES = int_in(0, 2**53)
RATE = float_in(0.0, 1e12)  # bytes or bits per second, as the field name says
NAME = text(32, NAME_RE)
# "device" or a node name: NAME_RE accepts "device" too.
PLACEMENT = NAME
URL = text(512)
REASON = text(64)


def optional(check: Check) -> Check:
    """``None`` (unknown) or a value passing ``check``."""

    def check_or_none(name: str, v: Any) -> Any:
        return None if v is None else check(name, v)

    return check_or_none


def mode_of(placement: str) -> str:
    return "local" if placement == DEVICE else "remote"


# A probe of a candidate node: [node name, rtt ms].
PROBE = tuple_of(NAME, MS)


@dataclass(slots=True)
class ControlMessage:
    TYPE: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        """The wire map: unknown (``None``) fields and empty lists are left out."""
        d: dict[str, Any] = {"type": self.TYPE}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or (f.default_factory is not MISSING and not v):
                continue
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def encode(self) -> bytes:
        return encode(self)


# -- peer -> scheduler ------------------------------------------------------------------
@dataclass(slots=True)
class Register(ControlMessage):
    """First message on every connection: who is speaking.

    Clients give their player name (the name they use at the sim). Render
    nodes give their node name, where they run, how many sessions they take
    and the signalling URL clients must open (``ws://HOST:PORT/session``).
    """

    TYPE: ClassVar[str] = "register"
    version: int = spec(U32)
    role: str = spec(one_of(*ROLES))
    name: str = spec(NAME)
    token: str = spec(text(512), "")
    # Render nodes (required for them: "" is only for clients).
    location: str = spec(one_of("", *LOCATIONS), "")
    capacity: int = spec(int_in(0, 100_000), 0)  # sessions
    url: str = spec(URL, "")  # signalling websocket
    cost: float | None = spec(optional(float_in(0.0, 1e6)), None)  # per session; None: by location
    # Clients: what they can do and the stream they would ask a node for.
    can_local: bool = spec(boolean, True)
    can_remote: bool = spec(boolean, True)
    bitrate_bps: int = spec(int_in(0, 100_000_000), 0)  # 0: the scheduler's default


@dataclass(slots=True)
class Telemetry(ControlMessage):
    """Client -> scheduler, once a second: how playing feels right now.

    Window statistics (``fps``, ``frame_ms``) cover the client's last
    window (about the last second or two). ``seq`` counts samples from 1 on
    this connection (gaps = lost samples); ``t`` is the client's clock.
    """

    TYPE: ClassVar[str] = "telemetry"
    seq: int = spec(U32)
    t: float = spec(TIME)
    mode: str = spec(one_of(*MODES))
    node: str = spec(PLACEMENT)  # "device" in local mode
    fps: float = spec(FPS)  # displayed frames per second
    frame_ms: tuple = spec(tuple_of(MS, MS, MS))  # p50, p95, p99 of frame intervals
    rtt_sim_ms: float | None = spec(optional(MS), None)
    rtt_node_ms: float | None = spec(optional(MS), None)  # remote mode: data-channel RTT
    rss_bytes: int | None = spec(optional(BYTES), None)
    rx_bytes_per_s: float | None = spec(optional(RATE), None)  # sim socket + WebRTC
    tx_bytes_per_s: float | None = spec(optional(RATE), None)
    cpu: float | None = spec(optional(RATIO), None)  # share of the whole machine
    battery_level: float | None = spec(optional(RATIO), None)
    battery_charging: bool | None = spec(optional(boolean), None)
    battery_power_w: float | None = spec(optional(float_in(0.0, 1e4)), None)  # drawn
    stream_bitrate_bps: float | None = spec(optional(RATE), None)  # remote: received video
    downlink_bps: float | None = spec(optional(RATE), None)  # estimated available, bits/s
    probes: list = spec(list_of(PROBE, MAX_PROBES), [])  # RTT to candidate nodes


@dataclass(slots=True)
class NodeStatus(ControlMessage):
    """Render node -> scheduler, once a second: its load. Also its heartbeat."""

    TYPE: ClassVar[str] = "node_status"
    t: float = spec(TIME)
    sessions: int = spec(int_in(0, 100_000))
    capacity: int = spec(int_in(0, 100_000))
    accepting: bool = spec(boolean, True)  # False: draining, never chosen
    encode_ms: float | None = spec(optional(MS), None)  # mean per frame, last window
    render_ms: float | None = spec(optional(MS), None)
    fps: float | None = spec(optional(FPS), None)  # mean delivered per session
    cpu: float | None = spec(optional(RATIO), None)
    uplink_bps: float | None = spec(optional(RATE), None)  # spare egress, bits/s
    players: list = spec(list_of(NAME, MAX_NODE_PLAYERS), [])  # streamed now


@dataclass(slots=True)
class MigrationReport(ControlMessage):
    """Client -> scheduler: how a switch ended.

    ``decision`` is the `Migrate` it answers, or 0 for a switch the client
    made on its own (a fallback when its node died, a key press).
    """

    TYPE: ClassVar[str] = "migration_report"
    decision: int = spec(U32)
    outcome: str = spec(one_of(*OUTCOMES))
    from_node: str = spec(PLACEMENT)
    to_node: str = spec(PLACEMENT)  # the target (for a rollback: not where it is now)
    reason: str = spec(text(256), "")
    gap_ms: float | None = spec(optional(MS), None)  # longest interval between shown frames
    duration_ms: float | None = spec(optional(MS), None)  # command received -> old mode closed


# -- scheduler -> peer ------------------------------------------------------------------
@dataclass(slots=True)
class Welcome(ControlMessage):
    TYPE: ClassVar[str] = "welcome"
    version: int = spec(U32)
    name: str = spec(NAME)
    role: str = spec(one_of(*ROLES))
    interval_s: float = spec(float_in(0.05, 60.0), 1.0)  # send telemetry / status this often
    policy: str = spec(text(64), "")


@dataclass(slots=True)
class Migrate(ControlMessage):
    """Scheduler -> client: move rendering to ``node`` (make-before-break).

    ``url`` is the node's signalling websocket ("" for the device). The
    client answers with a `MigrationReport` carrying the same ``decision``.
    """

    TYPE: ClassVar[str] = "migrate"
    decision: int = spec(int_in(1, 2**32 - 1))
    mode: str = spec(one_of(*MODES))
    node: str = spec(PLACEMENT)
    url: str = spec(URL, "")
    location: str = spec(one_of(*LOCATIONS), "device")
    reason: str = spec(REASON, "")


@dataclass(slots=True)
class Error(ControlMessage):
    TYPE: ClassVar[str] = "error"
    code: str = spec(text(64))
    message: str = spec(text(1024))
    fatal: bool = spec(boolean, False)


MESSAGES: dict[str, type[ControlMessage]] = {
    cls.TYPE: cls
    for cls in (Register, Telemetry, NodeStatus, MigrationReport, Welcome, Migrate, Error)
}
# Who may send what after `Register`.
FROM_CLIENT = frozenset({"telemetry", "migration_report"})
FROM_NODE = frozenset({"node_status"})


# -- encoding ---------------------------------------------------------------------------
def encode(msg: ControlMessage) -> bytes:
    return msgpack.packb(msg.to_wire(), use_bin_type=True)


def from_wire(obj: Any) -> ControlMessage:
    """Validate an unpacked msgpack object and build its message."""
    return build_message(obj, MESSAGES, "a frame must be a msgpack map")


def decode(data: Any, max_bytes: int = MAX_FRAME_BYTES) -> ControlMessage:
    """Bytes of one frame -> a validated message, or `ProtocolError`."""
    return from_wire(unpack_frame(data, max_bytes))
