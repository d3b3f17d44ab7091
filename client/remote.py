"""Remote rendering mode: a frame source that shows a render node's WebRTC stream.

`RemoteStream` is the receiving end of one render-node session: it does the
signalling (``ws://NODE/session``, see ``docs/render-node.md``), receives
the video with aiortc, and talks over the unordered, unreliable data
channel ``rt``: input frames and the sim's authoritative state go to the
node, a stamp per video frame and pongs come back. It holds no world
replica and no renderer.

`RemoteSource` adapts it to the game's `client.sources.FrameSource`.

Latency, and what this module does about it:

* aiortc's jitter buffer releases a frame only when the first packet of
  the *next* frame arrives, holding every frame one frame interval (33 ms
  at 30 fps). `MarkerJitterBuffer` releases a frame as soon as its last
  packet (the RTP marker bit) is in and the frame is contiguous.
* frames are decoded on the event loop as they complete (`InlineDecoder`),
  not on aiortc's decoder thread: a 640x360 frame decodes in ~0.2 ms, less
  than the thread's hand-off and hand-back (a queue, a wake-up, a task on
  the loop per frame) cost in Python.
* decoded frames are always drained: every decoded frame replaces the
  newest one, so a slow display never shows old frames; frames replaced
  before they were shown count as superseded.
* RGB conversion happens once, for the frame actually shown.

Measurements (`RemoteStats`): time of the first decoded frame (what
make-before-break migration waits for), glass-to-glass latency per shown
frame (node's render-finished stamp -> shown here, corrected by the clock
offset estimated from data-channel pings), input-to-photon (an input
frame sent -> the first shown frame whose stamp says it reflects it),
shown fps, and video bytes received.

Failures become `RemoteEvent`s (``on_event`` and ``events``) with a clear
message, and `RemoteStream.error` holds the first fatal one: the node said
bye or error, its signalling connection dropped (a killed or restarted node
is seen at once), ICE/DTLS failed, the data channel closed, or no frame came
for `STALL_S` while streaming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from client.input_pacing import TickPacer
from shiftcraft import stream_protocol as sp
from shiftcraft.protocol import MAX_INPUT_FRAMES, ProtocolError
from world.raycast import RayHit

log = logging.getLogger("shiftcraft.client.remote")

PING_INTERVAL_S = 1.0  # also the node's heartbeat: it drops a session after 3 s of silence
FAIL_GRACE_S = 0.3  # a closed channel waits this long for the node's reason
STALL_S = 2.0  # streaming and no frame for this long: the node is gone or stuck
INPUT_REDUNDANCY = 4  # each input message repeats the last frames (the channel loses some)
MAX_STAMPS = 240
MAX_INPUTS_TRACKED = 512
PTS_MASK = (1 << 32) - 1

__all__ = [
    "MarkerJitterBuffer",
    "RemoteError",
    "RemoteEvent",
    "RemoteOptions",
    "RemoteSource",
    "RemoteStats",
    "RemoteStream",
    "ShownFrame",
    "StampMatcher",
    "signalling_url",
]


class RemoteError(Exception):
    """A session could not be opened, or ended badly. ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class RemoteEvent:
    kind: str  # "streaming", "first_frame", "configured", "closed", "error", "stalled", "resumed"
    message: str
    fatal: bool = False
    at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class RemoteOptions:
    width: int = 640
    height: int = 360
    fps: int = 30
    bitrate: int = 1_000_000  # the ceiling; the node follows the receiver's estimate below it
    codec: str = ""  # "" = H264 if both have it; "VP8" to ask for VP8
    view_distance: int = 96
    fov: float = 70.0
    token: str = ""  # the node's session token, if it requires one
    connect_timeout: float = 15.0


def signalling_url(url: str) -> str:
    """``http(s)://`` or ``ws(s)://`` node address -> its ``ws(s)://HOST:PORT/session``."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise RemoteError("bad_url", f"not a render-node URL: {url!r}")
    path = parts.path if parts.path not in ("", "/") else "/session"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


# -- receiving -------------------------------------------------------------------------
class MarkerJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, releasing a frame as soon as it is complete.

    The stock buffer returns a frame only once a packet with the next
    timestamp arrives. The sender sets the RTP marker bit on a frame's last
    packet, so when the packets from the buffer's origin up to a marker are
    all present and share one timestamp, the frame is whole: hand it over
    now. Anything else (a gap, a frame without its marker) falls back to the
    stock behaviour, gaps and NACK retransmissions included. Also counts the
    video bytes received.
    """

    def __init__(self, capacity: int = 512, is_video: bool = True) -> None:
        super().__init__(capacity=capacity, is_video=is_video)
        self.bytes_received = 0
        self.packets_received = 0
        self.early_frames = 0  # released on the marker bit (not held for the next frame)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.packets_received += 1
        self.bytes_received += len(packet.payload) + 12
        pli, frame = super().add(packet)
        if frame is not None or not packet.marker:
            return pli, frame
        return pli, self._complete_at_marker()

    def _complete_at_marker(self) -> JitterFrame | None:
        if self._origin is None:
            return None
        packets: list[RtpPacket] = []
        timestamp = None
        for count in range(self.capacity):
            pkt = self._packets[(self._origin + count) % self.capacity]
            if pkt is None:
                return None  # a gap: wait (the stock path handles it)
            if timestamp is None:
                timestamp = pkt.timestamp
            elif pkt.timestamp != timestamp:
                return None  # an older incomplete frame sits first
            packets.append(pkt)
            if pkt.marker:
                self.remove(count + 1)
                self.early_frames += 1
                return JitterFrame(
                    data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
                    timestamp=timestamp,
                )
        return None


class InlineDecoder:
    """Decodes on the event loop, in place of aiortc's decoder thread.

    An `RTCRtpReceiver` hands each complete frame to a queue that its
    decoder thread reads, and the thread hands each decoded frame back to
    the loop as a task. Put where that queue was (before the receiver
    starts), this decodes the frame at once and calls ``deliver`` with each
    picture; the receiver's thread, given this too, only waits here for
    the end. A frame that fails to decode sets the receiver's error flag,
    which makes it ask the sender for a keyframe (PLI), as aiortc does.
    """

    def __init__(self, deliver: Callable[[av.VideoFrame], None], error: threading.Event) -> None:
        self._deliver = deliver
        self._error = error
        self._codec_name: str | None = None
        self._decoder: Any = None
        self._ended = threading.Event()

    def put(self, item: tuple[Any, JitterFrame] | None) -> None:
        if item is None:  # the receiver stopped
            self._ended.set()
            return
        codec, encoded = item
        if codec.name != self._codec_name:
            self._decoder = get_decoder(codec)
            self._codec_name = codec.name
        try:
            frames = self._decoder.decode(encoded)
        except Exception as exc:  # (any: this runs inside aiortc's receive loop)
            # The decoder keeps its state: the next keyframe repairs it.
            log.warning("failed to decode a %s frame: %s", codec.name, exc)
            self._error.set()
            return
        for frame in frames:
            self._deliver(frame)

    def get(self) -> None:
        """The receiver's decoder thread: nothing to do until the end."""
        self._ended.wait()


class StampMatcher:
    """Pairs decoded frames with their `FrameStamp`.

    A decoded frame's pts is its RTP timestamp minus the receiver's first
    one (aiortc maps it so), and the sender added a random origin too, so
    ``decoded_pts + offset = stamp.pts`` for one unknown, constant
    ``offset``. Stamp pts follow wall time, so frame spacings jitter by
    hundreds of ticks: each decoded frame votes for ``stamp.pts - pts`` over
    the recent stamps, the true offset collects a vote from every frame and
    a wrong one almost never two. It locks at `LOCK_VOTES`, and unlocks if
    matches stop (a new stream).
    """

    LOCK_VOTES = 3

    def __init__(self) -> None:
        self.stamps: dict[int, sp.FrameStamp] = {}
        self._order: deque[int] = deque()
        self.offset: int | None = None
        self._votes: dict[int, int] = {}
        self._misses = 0

    def add(self, stamp: sp.FrameStamp) -> None:
        self.stamps[stamp.pts] = stamp
        self._order.append(stamp.pts)
        while len(self._order) > MAX_STAMPS:
            self.stamps.pop(self._order.popleft(), None)

    def match(self, pts: int | None) -> sp.FrameStamp | None:
        if pts is None:
            return None
        if self.offset is not None:
            stamp = self.stamps.get(pts + self.offset)
            if stamp is not None:
                self._misses = 0
                return stamp
            self._misses += 1
            if self._misses > 30:
                self.offset = None
                self._votes.clear()
            return None
        for spts in list(self._order)[-90:]:
            o = spts - pts
            self._votes[o] = self._votes.get(o, 0) + 1
        if self._votes:
            best = max(self._votes.items(), key=lambda kv: kv[1])
            if best[1] >= self.LOCK_VOTES:
                second = max((v for o, v in self._votes.items() if o != best[0]), default=0)
                if best[1] >= second + 2:
                    self.offset = best[0]
                    self._votes.clear()
                    return self.stamps.get(pts + self.offset)
        if len(self._votes) > 20_000:
            self._votes.clear()
        return None


@dataclass(slots=True)
class ShownFrame:
    """A decoded frame as the display gets it."""

    frame: av.VideoFrame
    pts: int | None
    decoded_at: float  # monotonic
    decoded_wall: float
    stamp: sp.FrameStamp | None = None


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass
class RemoteStats:
    opened_at: float = field(default_factory=time.monotonic)
    connected_at: float | None = None
    first_frame_at: float | None = None  # first decoded frame (monotonic)
    frames_decoded: int = 0
    frames_shown: int = 0
    frames_superseded: int = 0  # decoded, then replaced before being shown
    frames_stamped: int = 0  # shown frames paired with their stamp
    g2g_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    g2g_start_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    input_to_photon_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    shown_at: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    encode_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    render_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    rtt_ms: float | None = None
    clock_offset_s: float = 0.0  # node wall clock - ours
    inputs_sent: int = 0
    # Data-channel payload bytes (inputs, state, pings out; stamps, pongs in);
    # video bytes are counted by the jitter buffer. Both feed telemetry.
    channel_bytes_in: int = 0
    channel_bytes_out: int = 0

    def fps(self, now: float | None = None, window: float = 2.0) -> float:
        now = time.monotonic() if now is None else now
        n = sum(1 for t in self.shown_at if now - t <= window)
        return n / window

    def summary(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)

        return {
            "frames_decoded": self.frames_decoded,
            "frames_shown": self.frames_shown,
            "frames_superseded": self.frames_superseded,
            "g2g_p50_ms": r(_percentile(self.g2g_ms, 50)),
            "g2g_p95_ms": r(_percentile(self.g2g_ms, 95)),
            "input_to_photon_p50_ms": r(_percentile(self.input_to_photon_ms, 50)),
            "input_to_photon_p95_ms": r(_percentile(self.input_to_photon_ms, 95)),
            "rtt_ms": r(self.rtt_ms),
            "fps": round(self.fps(), 2),
        }


class RemoteStream:
    """One session with a render node (see the module docstring).

    ``pos``/``yaw``/``pitch``: where the player is now, so the node can draw
    the first frame before it hears from the sim. ``on_event`` is called in
    the event loop for every `RemoteEvent`.
    """

    def __init__(
        self,
        url: str,
        player: str,
        options: RemoteOptions | None = None,
        *,
        pos: Sequence[float] | None = None,
        yaw: float = 0.0,
        pitch: float = 0.0,
        on_event: Callable[[RemoteEvent], None] | None = None,
    ) -> None:
        self.url = signalling_url(url)
        self.player = player
        self.options = options or RemoteOptions()
        self.pos = tuple(map(float, pos)) if pos is not None else None
        self.yaw = float(yaw)
        self.pitch = float(pitch)
        self.on_event = on_event
        self.state = "new"  # new -> signalling -> connecting -> streaming -> closed | failed
        self.error: RemoteError | None = None
        self.events: deque[RemoteEvent] = deque(maxlen=100)
        self.stats = RemoteStats()
        self.session_id = ""
        self.codec = ""
        self.width = self.options.width
        self.height = self.options.height
        self.fps = self.options.fps
        self.bitrate = self.options.bitrate
        self.matcher = StampMatcher()
        self.jitter: MarkerJitterBuffer | None = None
        self.pc: RTCPeerConnection | None = None
        self.ws: ClientConnection | None = None
        self._channel: Any = None
        self._tasks: list[asyncio.Task] = []
        self._newest: ShownFrame | None = None
        self._newest_taken = True
        self._frame_event = asyncio.Event()
        self._first_frame = asyncio.Event()
        self._ended = asyncio.Event()
        self._recent_inputs: deque[list] = deque(maxlen=MAX_INPUT_FRAMES)
        self._unsent = 0  # input frames made since the last input message
        self._last_batch = 0  # new frames in the last input message
        self._pacer = TickPacer()
        self._flush: asyncio.TimerHandle | None = None
        self._input_sent: dict[int, float] = {}  # seq -> monotonic send time (unresolved)
        self._input_order: deque[int] = deque()
        self._unstamped: deque[tuple[int, float, float]] = deque(maxlen=32)  # (pts, mono, wall)
        self._ping_id = 0
        self._pings: dict[int, float] = {}
        self._best_rtt = math.inf
        self._closing = False
        self._stalled = False

    # -- opening -----------------------------------------------------------------------
    async def open(self) -> None:
        """Signal, negotiate and start receiving. Raises `RemoteError` (and cleans up)."""
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await self._open()
        except TimeoutError:
            await self._abort("timeout", f"no answer within {self.options.connect_timeout:g} s")
        except RemoteError as exc:
            await self._abort(exc.code, exc.message)
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            await self._abort("unreachable", f"render node at {self.url}: {exc}")
        except BaseException:
            await self._teardown()
            raise

    async def _abort(self, code: str, message: str) -> None:
        self.error = RemoteError(code, message)
        self.state = "failed"
        await self._teardown()
        raise self.error

    async def _open(self) -> None:
        o = self.options
        self.state = "signalling"
        self.ws = await ws_connect(
            self.url, max_size=sp.MAX_SIGNAL_BYTES, compression=None, proxy=None,
            open_timeout=None, close_timeout=2.0, ping_interval=10, ping_timeout=10,
        )  # fmt: skip
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("connectionstatechange", self._on_connection_state)
        transceiver = pc.addTransceiver("video", direction="recvonly")
        transceiver.setCodecPreferences(_codec_preferences(o.codec or "H264"))
        self.jitter = MarkerJitterBuffer()
        # aiortc builds its jitter buffer in the receiver's constructor and has
        # no hook to choose another; swap it before any packet can arrive.
        receiver = transceiver.receiver
        receiver._RTCRtpReceiver__jitter_buffer = self.jitter  # type: ignore[attr-defined]
        # The same for its decoder's input queue (`InlineDecoder`).
        receiver._RTCRtpReceiver__decoder_queue = InlineDecoder(  # type: ignore[attr-defined]
            self._on_frame,
            receiver._RTCRtpReceiver__decoder_error,  # type: ignore[attr-defined]
        )
        self._channel = ch = pc.createDataChannel(sp.CHANNEL_LABEL, ordered=False, maxRetransmits=0)
        ch.on("message", self._on_channel_message)
        ch.on("close", self._on_channel_close)
        await pc.setLocalDescription(await pc.createOffer())
        offer = sp.Offer(
            sdp=pc.localDescription.sdp,
            player=self.player,
            token=o.token,
            width=o.width,
            height=o.height,
            fps=o.fps,
            bitrate=o.bitrate,
            codec=o.codec,
            view_distance=o.view_distance,
            fov=o.fov,
            pos=list(self.pos) if self.pos is not None else None,
            yaw=self.yaw,
            pitch=max(-math.pi / 2, min(math.pi / 2, self.pitch)),
        )
        await self.ws.send(offer.encode())
        try:
            reply = sp.decode_signal(await self.ws.recv())
        except ConnectionClosed as exc:
            raise RemoteError(
                "closed", f"the node closed the signalling connection ({exc})"
            ) from None
        except ProtocolError as exc:
            raise RemoteError("protocol", f"bad reply from the node: {exc.message}") from None
        if isinstance(reply, sp.SignalError):
            raise RemoteError(reply.code, reply.message)
        if not isinstance(reply, sp.Answer):
            raise RemoteError("protocol", f"expected an answer, got {reply.TYPE!r}")
        self.session_id = reply.session
        self.codec = reply.codec
        self.width, self.height, self.fps, self.bitrate = (
            reply.width, reply.height, reply.fps, reply.bitrate,
        )  # fmt: skip
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply.sdp, type="answer"))
        self.state = "connecting"
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_signalling(), name=f"remote-signal-{self.player}"),
            loop.create_task(self._ping_loop(), name=f"remote-ping-{self.player}"),
            loop.create_task(self._stall_watch(), name=f"remote-stall-{self.player}"),
        ]

    # -- events ------------------------------------------------------------------------
    def _emit(self, kind: str, message: str, fatal: bool = False) -> None:
        ev = RemoteEvent(kind, message, fatal)
        self.events.append(ev)
        if fatal and self.error is None and not self._closing:
            self.error = RemoteError(kind, message)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:
                log.exception("remote event handler failed")

    def _fail(self, code: str, message: str) -> None:
        if self._closing or self.state in ("closed", "failed"):
            return
        self.state = "failed"
        self._emit(code, message, fatal=True)
        self._ended.set()
        self._frame_event.set()

    def _later_fail(self, code: str, message: str) -> None:
        # The node says why (bye/error on the signalling websocket) just before
        # it closes the peer connection; give that reason a moment to win.
        loop = asyncio.get_running_loop()
        loop.call_later(FAIL_GRACE_S, self._fail, code, message)

    def _on_channel_close(self) -> None:
        self._later_fail("channel_closed", "the data channel to the render node closed")

    def _on_connection_state(self) -> None:
        pc = self.pc
        if pc is None:
            return
        st = pc.connectionState
        if st == "connected" and self.state == "connecting":
            self.state = "streaming"
            self.stats.connected_at = time.monotonic()
            self._emit("streaming", f"connected to {self.url} ({self.codec})")
        elif st == "failed":
            self._fail("connection_failed", "WebRTC connection to the render node failed")
        elif st == "closed":
            self._later_fail("connection_closed", "WebRTC connection to the render node closed")

    async def _read_signalling(self) -> None:
        ws = self.ws
        assert ws is not None
        try:
            async for data in ws:
                try:
                    msg = sp.decode_signal(data)
                except ProtocolError:
                    continue
                if isinstance(msg, sp.Configured):
                    self.width, self.height, self.fps, self.bitrate = (
                        msg.width, msg.height, msg.fps, msg.bitrate,
                    )  # fmt: skip
                    self._emit(
                        "configured", f"{msg.width}x{msg.height}@{msg.fps} {msg.bitrate} bit/s"
                    )
                elif isinstance(msg, sp.Bye):
                    self._fail("closed", f"the render node ended the session: {msg.reason}")
                    return
                elif isinstance(msg, sp.SignalError):
                    if msg.fatal:
                        self._fail("node_error", f"render node error {msg.code}: {msg.message}")
                        return
                    self._emit("warning", f"render node: {msg.code}: {msg.message}")
        except ConnectionClosed:
            pass
        self._fail("node_lost", f"lost the signalling connection to the render node at {self.url}")

    async def _stall_watch(self) -> None:
        while not self._ended.is_set():
            await asyncio.sleep(0.25)
            if self.state != "streaming" or self.stats.first_frame_at is None:
                continue
            last = self._newest.decoded_at if self._newest is not None else 0.0
            stalled = time.monotonic() - last > STALL_S
            if stalled and not self._stalled:
                self._stalled = True
                self._emit(
                    "stalled", f"no video from the render node for {STALL_S:g} s", fatal=False
                )
            elif not stalled and self._stalled:
                self._stalled = False
                self._emit("resumed", "video from the render node resumed")

    # -- video -------------------------------------------------------------------------
    def _on_frame(self, frame: av.VideoFrame) -> None:
        """A decoded frame (`InlineDecoder`): it becomes the newest."""
        now = time.monotonic()
        wall = time.time()
        stats = self.stats
        stats.frames_decoded += 1
        pts = frame.pts
        shown = ShownFrame(frame, pts, now, wall, self.matcher.match(pts))
        if not self._newest_taken:
            stats.frames_superseded += 1
        self._newest = shown
        self._newest_taken = False
        if stats.first_frame_at is None:
            stats.first_frame_at = now
            self._first_frame.set()
            self._emit("first_frame", f"first frame after {now - stats.opened_at:.3f} s")
        self._frame_event.set()

    async def wait_first_frame(self, timeout: float | None = None) -> float:
        """Monotonic time of the first decoded frame. Raises `RemoteError` on failure/timeout."""
        waiter = asyncio.ensure_future(self._first_frame.wait())
        ender = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait(
                {waiter, ender}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            ender.cancel()
        if self.stats.first_frame_at is not None:
            return self.stats.first_frame_at
        if self.error is not None:
            raise self.error
        raise RemoteError("no_frame", f"no frame from the render node within {timeout} s")

    @property
    def has_new_frame(self) -> bool:
        return not self._newest_taken

    async def wait_new_frame(self, timeout: float | None = None) -> bool:
        """Wait until a frame not shown yet is in (True) or ``timeout`` passes."""
        if self._newest_taken:
            self._frame_event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._frame_event.wait()
        return self.has_new_frame

    async def next_frame(self, timeout: float | None = None) -> ShownFrame | None:
        """Wait for a frame not shown yet and take it (None on timeout or end)."""
        await self.wait_new_frame(timeout)
        return self.take()

    def take(self) -> ShownFrame | None:
        """The newest decoded frame if not shown yet, marked as shown now (None otherwise)."""
        if self._newest_taken or self._newest is None:
            return None
        self._newest_taken = True
        shown = self._newest
        self._record_shown(shown, time.monotonic(), time.time())
        return shown

    def to_rgb(
        self, shown: ShownFrame, width: int | None = None, height: int | None = None
    ) -> np.ndarray:
        w = width or shown.frame.width
        h = height or shown.frame.height
        if (w, h) != (shown.frame.width, shown.frame.height):
            return shown.frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
        return shown.frame.to_ndarray(format="rgb24")

    def _record_shown(self, shown: ShownFrame, now: float, wall: float) -> None:
        stats = self.stats
        stats.frames_shown += 1
        stats.shown_at.append(now)
        stamp = shown.stamp
        if stamp is None and shown.pts is not None:
            stamp = shown.stamp = (
                self.matcher.match(shown.pts) if self.matcher.offset is not None else None
            )
        if stamp is None:
            if shown.pts is not None:
                self._unstamped.append((shown.pts, now, wall))
            return
        self._account(stamp, now, wall)

    def _account(self, stamp: sp.FrameStamp, shown_mono: float, shown_wall: float) -> None:
        stats = self.stats
        stats.frames_stamped += 1
        node_to_local = -stats.clock_offset_s
        stats.g2g_ms.append((shown_wall - (stamp.rt + node_to_local)) * 1000.0)
        stats.g2g_start_ms.append((shown_wall - (stamp.rs + node_to_local)) * 1000.0)
        stats.encode_ms.append(stamp.enc)
        stats.render_ms.append(stamp.ren)
        if stamp.input >= 0:
            order = self._input_order
            while order and order[0] <= stamp.input:
                seq = order.popleft()
                sent = self._input_sent.pop(seq, None)
                if sent is not None:
                    stats.input_to_photon_ms.append((shown_mono - sent) * 1000.0)

    # -- the data channel --------------------------------------------------------------
    def _on_channel_message(self, data: Any) -> None:
        if isinstance(data, bytes | bytearray | str):
            self.stats.channel_bytes_in += len(data)
        try:
            msg = sp.decode_channel(data)
        except ProtocolError:
            return
        if isinstance(msg, sp.FrameStamp):
            self.matcher.add(msg)
            if msg.tick > 0.0 and self.fps > 0:
                # (our clock = the node's - offset)
                local = msg.tick - self.stats.clock_offset_s
                self._pacer.observe(local, 1.0 / self.fps, time.time())
            if self._unstamped and self.matcher.offset is not None:
                # A frame shown before its stamp arrived: account for it now.
                for item in list(self._unstamped):
                    pts, mono, wall = item
                    if pts + self.matcher.offset == msg.pts:
                        self._unstamped.remove(item)
                        self._account(msg, mono, wall)
                        break
        elif isinstance(msg, sp.PongMsg):
            sent = self._pings.pop(msg.id, None)
            if sent is None:
                return
            now = time.time()
            rtt = now - msg.t
            self.stats.rtt_ms = rtt * 1000.0
            if rtt <= self._best_rtt * 1.5 or rtt < 0.002:
                # The least-delayed exchange gives the best offset estimate.
                self._best_rtt = min(self._best_rtt, rtt)
                self.stats.clock_offset_s = msg.peer_t - (msg.t + rtt / 2.0)
        elif isinstance(msg, sp.PingMsg):
            self._send(sp.PongMsg(id=msg.id, t=msg.t, peer_t=time.time()))

    def _send(self, msg: sp.StreamMessage) -> bool:
        ch = self._channel
        if ch is None or ch.readyState != "open":
            return False
        data = msg.encode()
        try:
            ch.send(data)
        except Exception:  # closing under us: the close event reports it
            return False
        self.stats.channel_bytes_out += len(data)
        return True

    async def _ping_loop(self) -> None:
        while not self._ended.is_set():
            self._ping_id = (self._ping_id + 1) & 0xFFFFFFFF
            t = time.time()
            self._pings[self._ping_id] = t
            if len(self._pings) > 16:
                self._pings.pop(next(iter(self._pings)))
            self._send(sp.PingMsg(id=self._ping_id, t=t))
            await asyncio.sleep(PING_INTERVAL_S)

    def send_inputs(self, frames: Sequence[Sequence[Any]]) -> bool:
        """Send input frames ``[seq, dt, forward, strafe, yaw, pitch, flags]`` (as sent to the sim).

        Frames go out in one message per node frame, timed to arrive just
        before the node samples the camera (`client.input_pacing`), or at
        once until the node's tick clock is known. Each message repeats the
        frames of the one before, and at least the last `INPUT_REDUNDANCY`
        (the channel is unreliable). Every new frame's time here is kept
        for input-to-photon, so pacing shows in that figure.
        """
        now = time.monotonic()
        for f in frames:
            frame = [
                int(f[0]),
                float(f[1]),
                float(f[2]),
                float(f[3]),
                float(f[4]),
                float(f[5]),
                int(f[6]),
            ]
            self._recent_inputs.append(frame)
            seq = frame[0]
            if seq not in self._input_sent:
                self._input_sent[seq] = now
                self._input_order.append(seq)
        while len(self._input_order) > MAX_INPUTS_TRACKED:
            self._input_sent.pop(self._input_order.popleft(), None)
        if not self._recent_inputs:
            return False
        self.stats.inputs_sent += len(frames)
        self._unsent += len(frames)
        if self._flush is not None:
            return True  # the message already planned carries these too
        wall = time.time()
        rtt = self.stats.rtt_ms / 1000.0 if self.stats.rtt_ms is not None else None
        at = self._pacer.send_at(wall, TickPacer.lead(rtt))
        if at <= wall:
            return self._flush_inputs()
        self._flush = asyncio.get_running_loop().call_later(at - wall, self._flush_inputs)
        return True

    def _flush_inputs(self) -> bool:
        self._flush = None
        if self._unsent == 0:
            return False
        n = min(len(self._recent_inputs), max(INPUT_REDUNDANCY, self._unsent + self._last_batch))
        frames = list(self._recent_inputs)[-n:]
        self._last_batch = self._unsent
        self._unsent = 0
        return self._send(sp.InputMsg(frames=frames, t=time.time()))

    def send_state(
        self, ack: int, pos: Sequence[float], vel: Sequence[float], on_ground: bool, flying: bool
    ) -> bool:
        """Forward the sim's authoritative body (from an update) so the node reconciles exactly."""
        return self._send(
            sp.StateMsg(
                ack=int(ack),
                pos=list(pos),
                vel=list(vel),
                on_ground=bool(on_ground),
                flying=bool(flying),
            )
        )

    async def configure(
        self, width: int = 0, height: int = 0, fps: int = 0, bitrate: int = 0
    ) -> None:
        if self.ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(
                sp.Configure(width=width, height=height, fps=fps, bitrate=bitrate).encode()
            )

    # -- closing -----------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def close(self, reason: str = "client_close") -> None:
        """Say bye, close everything. Idempotent."""
        if self._closing:
            return
        self._closing = True
        if self.ws is not None and self.state in ("connecting", "streaming"):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.ws.send(sp.Bye(reason=reason).encode())
        await self._teardown()
        if self.state != "failed":
            self.state = "closed"

    async def _teardown(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._ended.set()
        self._frame_event.set()
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        for t in self._tasks:
            if t is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        self._tasks = []
        if self.pc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self.pc.close()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.ws.close()

    async def __aenter__(self) -> RemoteStream:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _codec_preferences(first: str) -> list:
    """Receiver capabilities with ``first`` (and its RTX) ahead of the rest."""
    caps = RTCRtpReceiver.getCapabilities("video").codecs
    name = f"video/{first}".lower()
    head = [c for c in caps if c.mimeType.lower() == name]
    rest = [c for c in caps if c.mimeType.lower() != name]
    return head + rest


# -- the game's frame source ------------------------------------------------------------
class RemoteSource:
    """`client.sources.FrameSource` over a `RemoteStream`.

    ``frame()`` returns the newest decoded frame not shown yet, scaled to
    the source's size if the stream's differs (it follows a resize one
    round trip later), or None (the game keeps the previous picture).
    ``scene`` is ignored: the node draws the player's camera from the
    inputs and state the game forwards with `send_inputs` / `send_state`.
    `start` opens the stream in the background; ``status`` and ``error``
    say how that goes, in words the HUD shows.
    """

    mode = "remote"
    render_ms = 0.0  # the node renders

    def __init__(self, stream: RemoteStream) -> None:
        self.stream = stream
        self.width = stream.options.width
        self.height = stream.options.height
        self.last: ShownFrame | None = None
        self._open_task: asyncio.Task | None = None
        self._close_task: asyncio.Task | None = None

    def start(self) -> None:
        """Open the stream in the background (call from the event loop)."""
        if self._open_task is None:
            self._open_task = asyncio.get_running_loop().create_task(
                self._open(), name=f"remote-open-{self.stream.player}"
            )

    async def _open(self) -> None:
        with contextlib.suppress(RemoteError):  # kept in stream.error, shown by `status`
            await self.stream.open()

    @property
    def error(self) -> RemoteError | None:
        return self.stream.error

    @property
    def status(self) -> str | None:
        s = self.stream
        if s.error is not None:
            return f"render node: {s.error.message}"
        if s.stats.first_frame_at is None:
            return f"connecting to render node {s.url} ({s.state})..."
        if s._stalled:
            return "render node: no video for a while..."
        return None

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def resize(self, width: int, height: int) -> None:
        if (width, height) == self.size:
            return
        self.width, self.height = width, height
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(
                self.stream.configure(max(16, width & ~1), max(16, height & ~1))
            )

    def frame(self, scene: Any = None) -> np.ndarray | None:
        shown = self.stream.take()
        if shown is None:
            return None
        self.last = shown
        return self.stream.to_rgb(shown, self.width, self.height)

    async def frame_async(self, scene: Any = None) -> np.ndarray | None:
        return self.frame(scene)  # (decoding already ran off the loop)

    async def wait_frame(self, timeout: float) -> None:
        """Return when a frame not shown yet is in, or after ``timeout``."""
        if self.stream.has_new_frame:
            await asyncio.sleep(0)  # still yield: the network tasks run between frames
        else:
            await self.stream.wait_new_frame(timeout)

    def send_inputs(self, frames: Sequence[Sequence[Any]]) -> bool:
        return self.stream.send_inputs(frames)

    def send_state(
        self, ack: int, pos: Sequence[float], vel: Sequence[float], on_ground: bool, flying: bool
    ) -> bool:
        return self.stream.send_state(ack, pos, vel, on_ground, flying)

    def target_hit(self) -> RayHit | None:
        """The block under the crosshair in the newest shown frame."""
        stamp = self.last.stamp if self.last is not None else None
        if stamp is None or stamp.hit is None:
            return None
        x, y, z, nx, ny, nz, block = stamp.hit
        return RayHit(x, y, z, block, (nx, ny, nz), 0.0)

    def debug_lines(self) -> list[str]:
        s = self.stream
        st = s.stats
        g2g = _percentile(list(st.g2g_ms)[-120:], 50)
        kbit = (s.jitter.bytes_received * 8 / 1000.0) if s.jitter is not None else 0.0
        return [
            f"remote {s.state} {s.codec} {s.width}x{s.height}@{s.fps}  fps {st.fps():.1f}  "
            f"g2g {_fmt(g2g)} ms  rtt {_fmt(st.rtt_ms)} ms  rx {kbit:.0f} kbit",
        ]

    def close(self) -> None:
        if self._close_task is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                if self._open_task is not None and not self._open_task.done():
                    self._open_task.cancel()
                self._close_task = loop.create_task(self.stream.close())

    async def aclose(self) -> None:
        if self._open_task is not None and not self._open_task.done():
            self._open_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._open_task
        await self.stream.close()


def remote_source(game: Any, welcome: Any) -> RemoteSource:
    """The game's source factory for ``--render remote`` (see `client.game.Game`)."""
    cfg = game.config
    width, height = game.render_size()
    options = RemoteOptions(
        width=width & ~1,
        height=height & ~1,
        fps=cfg.stream_fps,
        bitrate=cfg.stream_bitrate,
        codec=cfg.stream_codec,
        view_distance=max(16, min(cfg.view_distance, welcome.view_distance or cfg.view_distance)),
        fov=cfg.fov_deg,
        token="",
    )

    def on_event(ev: RemoteEvent) -> None:
        if ev.kind not in ("configured",):
            game.log(f"remote: {ev.kind}: {ev.message}")

    stream = RemoteStream(
        cfg.render_node, cfg.name, options,
        pos=welcome.pos, yaw=welcome.yaw, pitch=welcome.pitch, on_event=on_event,
    )  # fmt: skip
    source = RemoteSource(stream)
    source.width, source.height = width, height  # frames are scaled to it if odd
    source.start()
    return source
