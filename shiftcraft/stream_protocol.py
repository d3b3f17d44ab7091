"""Messages between a render node and its streaming clients, defined once.

Two carriers, both JSON text (a browser page speaks them with no library):

* the **signalling websocket** ``ws://NODE/session`` (reliable, ordered):
  ``offer`` -> ``answer`` to set up the WebRTC peer connection, then
  ``configure`` / ``configured`` to change resolution, frame rate or bitrate,
  ``bye`` and ``error``. The session lives as long as this websocket does.
* the **data channel** ``rt`` that the client opens unordered and unreliable
  (``ordered=False, maxRetransmits=0``): real-time traffic where a late
  message is worthless — ``input`` frames and the client's ``state`` (the
  sim's authoritative body) to the node, a ``frame`` stamp per video frame
  to the client, and ``ping`` / ``pong`` both ways for RTT, clock offset and
  liveness.

Field checks are those of the sim protocol (`shiftcraft.protocol`), so an
input frame means the same thing on both wires. ``docs/render-node.md``
documents the same messages for people.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from shiftcraft.protocol import (
    ANGLE,
    EDIT_ACTIONS,
    I32,
    INPUT_FRAME,
    MAX_INPUT_FRAMES,
    NAME_RE,
    U32,
    VEC3,
    Check,
    ProtocolError,
    boolean,
    build_message,
    float_in,
    int_in,
    list_of,
    one_of,
    spec,
    text,
    tuple_of,
)

STREAM_PROTOCOL_VERSION = 1
CODECS = ("H264", "VP8")
MAX_SIGNAL_BYTES = 64 * 1024  # an SDP with every codec and candidate is ~6 KiB
MAX_CHANNEL_BYTES = 4 * 1024
MIN_SIZE, MAX_WIDTH, MAX_HEIGHT = 16, 1920, 1080
MIN_BITRATE, MAX_BITRATE = 100_000, 20_000_000  # bits per second
MAX_FPS = 60
I64 = int_in(-(2**63), 2**63 - 1)
TIME = float_in(0.0, 1e12)  # seconds on some clock (Unix or monotonic)
DIM_W = int_in(0, MAX_WIDTH)  # 0 in `configure`: unchanged
DIM_H = int_in(0, MAX_HEIGHT)


def nullable(check: Check) -> Check:
    def check_or_none(name: str, v: Any) -> Any:
        return None if v is None else check(name, v)

    return check_or_none


# A targeted block: [x, y, z, nx, ny, nz, block] (face normal; block id).
HIT = tuple_of(
    I64, I64, I64, int_in(-1, 1), int_in(-1, 1), int_in(-1, 1), int_in(0, 255)
)  # fmt: skip


@dataclass(slots=True)
class StreamMessage:
    TYPE: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.TYPE}
        for f in fields(self):
            d[f.name] = getattr(self, f.name)
        return d

    def encode(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"), allow_nan=False)


# -- signalling (websocket) ---------------------------------------------------------
@dataclass(slots=True)
class Offer(StreamMessage):
    """Client -> node: start a session. Sizes, fps and bitrate are wishes the node clamps."""

    TYPE: ClassVar[str] = "offer"
    sdp: str = spec(text(MAX_SIGNAL_BYTES))
    player: str = spec(text(32, NAME_RE))  # whose camera to render
    token: str = spec(text(512), "")
    width: int = spec(int_in(MIN_SIZE, MAX_WIDTH), 640)
    height: int = spec(int_in(MIN_SIZE, MAX_HEIGHT), 360)
    fps: int = spec(int_in(1, MAX_FPS), 30)
    bitrate: int = spec(int_in(MIN_BITRATE, MAX_BITRATE), 1_000_000)  # the ceiling
    codec: str = spec(one_of("", *CODECS), "")  # "" = H264 if the offer has it
    view_distance: int = spec(int_in(16, 512), 96)
    fov: float = spec(float_in(20.0, 150.0), 70.0)
    # Where the player is now (feet) and looks: the first frames need no sim round trip.
    pos: list | None = spec(nullable(VEC3), None)
    yaw: float = spec(ANGLE, 0.0)
    pitch: float = spec(float_in(-math.pi / 2, math.pi / 2), 0.0)
    version: int = spec(U32, STREAM_PROTOCOL_VERSION)
    # The node plays on the sim for this client (a browser that cannot reach
    # the sim itself): it joins as ``player`` with ``sim_token`` and forwards
    # input frames and `EditMsg`s; the sim's acks then drive the camera.
    proxy: bool = spec(boolean, False)
    sim_token: str = spec(text(512), "")


@dataclass(slots=True)
class Answer(StreamMessage):
    """Node -> client: the SDP answer and what the node will actually send."""

    TYPE: ClassVar[str] = "answer"
    sdp: str = spec(text(MAX_SIGNAL_BYTES))
    session: str = spec(text(64))
    codec: str = spec(one_of(*CODECS))
    width: int = spec(int_in(MIN_SIZE, MAX_WIDTH))
    height: int = spec(int_in(MIN_SIZE, MAX_HEIGHT))
    fps: int = spec(int_in(1, MAX_FPS))
    bitrate: int = spec(int_in(MIN_BITRATE, MAX_BITRATE))


@dataclass(slots=True)
class Configure(StreamMessage):
    """Client -> node: change the stream; 0 leaves a field as it is."""

    TYPE: ClassVar[str] = "configure"
    width: int = spec(DIM_W, 0)
    height: int = spec(DIM_H, 0)
    fps: int = spec(int_in(0, MAX_FPS), 0)
    bitrate: int = spec(int_in(0, MAX_BITRATE), 0)


@dataclass(slots=True)
class Configured(StreamMessage):
    """Node -> client: the stream's settings now (after `Configure`, or a bitrate step)."""

    TYPE: ClassVar[str] = "configured"
    width: int = spec(int_in(MIN_SIZE, MAX_WIDTH))
    height: int = spec(int_in(MIN_SIZE, MAX_HEIGHT))
    fps: int = spec(int_in(1, MAX_FPS))
    bitrate: int = spec(int_in(MIN_BITRATE, MAX_BITRATE))  # the encoder's target now


@dataclass(slots=True)
class EditMsg(StreamMessage):
    """Client -> node, proxy sessions only: an edit for the sim (reliable, so here)."""

    TYPE: ClassVar[str] = "edit"
    action: str = spec(one_of(*EDIT_ACTIONS))
    x: int = spec(I32)
    y: int = spec(I32)
    z: int = spec(I32)
    block: int = spec(int_in(0, 255), 0)


@dataclass(slots=True)
class Bye(StreamMessage):
    """Either side: the session ends (then the websocket closes)."""

    TYPE: ClassVar[str] = "bye"
    reason: str = spec(text(256), "")


@dataclass(slots=True)
class SignalError(StreamMessage):
    """Node -> client: something went wrong; ``fatal`` ends the session."""

    TYPE: ClassVar[str] = "error"
    code: str = spec(text(64))
    message: str = spec(text(1024))
    fatal: bool = spec(boolean, True)


# -- data channel -----------------------------------------------------------------------
@dataclass(slots=True)
class InputMsg(StreamMessage):
    """Client -> node: the newest input frames (the very frames sent to the sim).

    A message repeats the last few frames, so one lost message loses nothing;
    the node ignores frames it has seen. ``t``: client wall clock at sending.
    """

    TYPE: ClassVar[str] = "input"
    frames: list = spec(list_of(INPUT_FRAME, MAX_INPUT_FRAMES))
    t: float = spec(TIME, 0.0)


@dataclass(slots=True)
class StateMsg(StreamMessage):
    """Client -> node: the sim's authoritative body after input ``ack`` (from its update)."""

    TYPE: ClassVar[str] = "state"
    ack: int = spec(int_in(-1, 2**32 - 1))
    pos: list = spec(VEC3)
    vel: list = spec(VEC3)
    on_ground: bool = spec(boolean, False)
    flying: bool = spec(boolean, False)


@dataclass(slots=True)
class PingMsg(StreamMessage):
    TYPE: ClassVar[str] = "ping"
    id: int = spec(U32)
    t: float = spec(TIME)  # sender's wall clock


@dataclass(slots=True)
class PongMsg(StreamMessage):
    TYPE: ClassVar[str] = "pong"
    id: int = spec(U32)
    t: float = spec(TIME)  # echoed
    peer_t: float = spec(TIME)  # the answering side's wall clock when it answered


@dataclass(slots=True)
class FrameStamp(StreamMessage):
    """Node -> client, one per video frame, sent as its packets go out.

    ``pts`` is the frame's timestamp on the session's 90 kHz clock: the RTP
    timestamp minus the sender's random origin, so the client pairs stamps
    and decoded frames by pts differences (see ``client.remote.StampMatcher``).
    Times are the node's wall clock (``time.time()``), seconds.
    """

    TYPE: ClassVar[str] = "frame"
    seq: int = spec(int_in(0, 2**63 - 1))  # frames sent in this session
    pts: int = spec(int_in(0, 2**63 - 1))
    key: bool = spec(boolean)  # an IDR/key frame
    rs: float = spec(TIME)  # render started (camera pose sampled)
    rt: float = spec(TIME)  # render finished: the frame's "capture" time
    ren: float = spec(float_in(0.0, 1e6))  # render ms
    enc: float = spec(float_in(0.0, 1e6))  # encode ms
    input: int = spec(int_in(-1, 2**32 - 1))  # newest input seq the camera reflects
    pos: list = spec(VEC3)  # eye position rendered
    yaw: float = spec(ANGLE)
    pitch: float = spec(ANGLE)
    hit: list | None = spec(nullable(HIT), None)  # block under the crosshair
    # The frame's tick: when the node sampled the camera (wall clock; 0 = not
    # sent). Ticks come every 1/fps on one clock, so a client can pace its
    # input messages to arrive just before the next one (`client.input_pacing`).
    tick: float = spec(TIME, 0.0)


SIGNAL_MESSAGES: dict[str, type[StreamMessage]] = {
    c.TYPE: c for c in (Offer, Answer, Configure, Configured, EditMsg, Bye, SignalError)
}
CHANNEL_MESSAGES: dict[str, type[StreamMessage]] = {
    c.TYPE: c for c in (InputMsg, StateMsg, PingMsg, PongMsg, FrameStamp)
}
# The data channel's label and options (the client creates it).
CHANNEL_LABEL = "rt"


def from_wire(obj: Any, table: dict[str, type[StreamMessage]]) -> StreamMessage:
    """Validate a parsed JSON object and build its message (`ProtocolError` if bad)."""
    return build_message(obj, table, "a message must be a JSON object")


def decode(data: str | bytes, table: dict[str, type[StreamMessage]], max_bytes: int) -> Any:
    """Text of one message -> a validated message, or `ProtocolError`."""
    if len(data) > max_bytes:
        raise ProtocolError("too_large", f"message of {len(data)} bytes exceeds {max_bytes}")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("malformed", f"not JSON: {exc}") from None
    return from_wire(obj, table)


def decode_signal(data: str | bytes) -> Any:
    return decode(data, SIGNAL_MESSAGES, MAX_SIGNAL_BYTES)


def decode_channel(data: str | bytes) -> Any:
    return decode(data, CHANNEL_MESSAGES, MAX_CHANNEL_BYTES)
