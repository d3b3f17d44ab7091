"""One streamed player: a WebRTC peer connection, its camera and its frame loop.

States (`SessionState`), each entered once, in order; any state may jump
to CLOSED::

    NEGOTIATING --answer sent--> CONNECTING --ICE+DTLS up--> STREAMING --> CLOSED

A session ends for one reason, the first that happens (``end_reason``):
``client_bye`` / ``client_left`` (signalling websocket closed — a killed
client is seen at once), ``heartbeat_timeout`` (nothing on the data channel
for `HEARTBEAT_TIMEOUT_S`: the client vanished without closing anything),
``connection_failed`` / ``connection_closed`` (ICE/DTLS), ``connect_timeout``,
offer errors (``bad_token``, ``no_codec``…), ``sim_lost`` (proxy sessions),
``node_shutdown`` or ``error`` (a bug: logged, and only this session ends).
Everything a session owns — its tasks, peer connection, track, proxy, view
queue and encoder — is released in `run`'s ``finally``; the other sessions
never see any of it.

The frame loop ticks at the session's fps on the event loop. Each tick
snapshots the camera and hands a render job to the node's render worker;
the frame's encode job then runs on an encode worker while the next frame
renders (one of each in flight per session, in order). A tick that comes
while the previous frame is still rendering is skipped and counted as
dropped: a late frame is worth less than the next one, and a queue of
frames would only add latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from client.connection import ConnectError
from renderer.encoder import EncoderConfig
from renderer.node.camera import CameraDriver
from renderer.node.pipeline import FrameResult, Rendered, SessionPipeline
from renderer.node.proxy import PlayerProxy
from renderer.node.rate import BitrateController
from renderer.node.sdp import prefer_codec, video_codecs
from renderer.node.track import EncodedVideoTrack, watch_rtcp
from shiftcraft import stream_protocol as sp
from shiftcraft.protocol import ProtocolError

if TYPE_CHECKING:
    from renderer.node.service import RenderNode

log = logging.getLogger("shiftcraft.render.session")

HEARTBEAT_TIMEOUT_S = 3.0  # the client pings every second: three missed = gone
CONNECT_TIMEOUT_S = 15.0  # offer -> ICE+DTLS connected
KEYFRAME_MIN_INTERVAL_S = 0.25  # PLI storms are answered with one keyframe per this
RATE_WINDOW_S = 1.0  # sent bitrate is measured over this


class SessionState(enum.Enum):
    NEGOTIATING = "negotiating"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    CLOSED = "closed"


@dataclass(slots=True)
class SessionStats:
    started_at: float = field(default_factory=time.monotonic)
    streaming_at: float | None = None
    frames: int = 0
    dropped: int = 0
    keyframes: int = 0
    bytes_sent: int = 0
    inputs: int = 0
    messages_in: int = 0
    bad_messages: int = 0
    keyframe_requests: int = 0
    rebuilds: int = 0
    render_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    prep_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    encode_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    sent_times: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    sent_sizes: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=600))

    def fps(self, now: float, window: float = 2.0) -> float:
        n = sum(1 for t in self.sent_times if now - t <= window)
        return n / window

    def sent_bps(self, now: float, window: float = RATE_WINDOW_S) -> float:
        return 8.0 * sum(s for t, s in self.sent_sizes if now - t <= window) / window


class StreamSession:
    """See the module docstring. Created per signalling websocket by `RenderNode`."""

    def __init__(self, node: RenderNode, sid: str, offer: sp.Offer, ws: ServerConnection) -> None:
        self.node = node
        self.sid = sid
        self.key = id(self)
        self.offer = offer
        self.ws = ws
        self.player = offer.player
        self.next_tick: float | None = None  # the frame loop's next render (monotonic)
        cfg = node.config
        self.state = SessionState.NEGOTIATING
        self.end_reason = ""
        self.error_message = ""
        self._error = False
        self.stats = SessionStats()
        w, h = _even(offer.width), _even(offer.height)
        self.fps = offer.fps
        self.view_distance = min(offer.view_distance, cfg.max_view_distance)
        self.rate = BitrateController(ceiling=min(offer.bitrate, cfg.max_bitrate))
        self.encoder_config = EncoderConfig(
            codec="H264", width=w, height=h, fps=self.fps, bitrate=self.rate.target
        )
        world = node.world
        pos = offer.pos or node.spawn
        self.camera = CameraDriver(
            world.replica, pos, offer.yaw, offer.pitch, offer.fov, ray_world=world.ray_world
        )
        self.pipeline = SessionPipeline(
            world.feed, self.key, self.view_distance, self.encoder_config, cfg.render_threads
        )
        self.proxy: PlayerProxy | None = None
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.track = EncodedVideoTrack(on_overflow=self.request_keyframe)
        self._ended = asyncio.Event()
        self._connected = asyncio.Event()
        self._want_key = False
        self._last_key_at = 0.0
        self._last_rx = time.monotonic()
        self._frame_seq = 0

    # -- lifecycle ---------------------------------------------------------------------
    def end(self, reason: str, message: str = "", error: bool = False) -> None:
        """Ask the session to end (first reason wins); `run` cleans up.

        ``error``: the client is told with an ``error`` message (code = reason)
        rather than a ``bye``.
        """
        if not self.end_reason:
            self.end_reason = reason
            self.error_message = message
            self._error = error
            log.info("session %s (%s) ending: %s %s", self.sid, self.player, reason, message)
        self._ended.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def run(self) -> str:
        """Negotiate, stream until the end, clean up; returns the end reason."""
        node = self.node
        world = node.world
        world.listen(self.player, self._on_entity)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read_signalling(), name=f"signal-{self.sid}")
                try:
                    await self._negotiate()
                except ProtocolError as exc:
                    self.end(exc.code, exc.message, error=True)
                except ValueError as exc:  # aiortc: unusable SDP
                    self.end("bad_offer", str(exc), error=True)
                if not self.ended:
                    if self.proxy is not None:
                        tg.create_task(self.proxy.run(), name=f"proxy-{self.sid}")
                    tg.create_task(self._watchdog(), name=f"watchdog-{self.sid}")
                    tg.create_task(self._stream(), name=f"frames-{self.sid}")
                await self._ended.wait()
                raise _Stop
        except* _Stop:
            pass
        except* Exception as group:  # a bug in this session: end only this one
            for exc in group.exceptions:
                log.error("session %s failed", self.sid, exc_info=exc)
            self.end("error", repr(group.exceptions[0]), error=True)
        finally:
            world.unlisten(self.player, self._on_entity)
            await self._close()
        return self.end_reason

    async def _close(self) -> None:
        self.state = SessionState.CLOSED
        self.track.stop()
        # Tell the client why first: closing the peer connection closes its
        # data channel, which it would otherwise report as the reason.
        if self.end_reason not in ("client_left", "client_bye"):
            msg: sp.StreamMessage
            if self._error:
                msg = sp.SignalError(code=self.end_reason, message=self.error_message or "")
            else:
                msg = sp.Bye(reason=self.end_reason)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.ws.send(msg.encode())
        if self.proxy is not None:
            await self.proxy.close()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self.pc.close()
        # A worker may be in this pipeline's job right now: it frees itself then.
        self.pipeline.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.ws.close()

    # -- negotiation -------------------------------------------------------------------
    async def _negotiate(self) -> None:
        offer = self.offer
        cfg = self.node.config
        if cfg.session_token and offer.token != cfg.session_token:
            raise ProtocolError("bad_token", "session token not accepted")
        if offer.proxy:
            if not cfg.allow_proxy:
                raise ProtocolError("no_proxy", "this node does not play on the sim for clients")
            self.proxy = PlayerProxy(
                cfg.sim_url,
                self.player,
                offer.sim_token,
                self.camera,
                on_lost=lambda why: self.end("sim_lost", why, error=True),
            )
            try:
                await self.proxy.connect()
            except ConnectError as exc:
                self.proxy = None
                raise ProtocolError(
                    f"sim_{exc.code}", f"cannot join the sim: {exc.message}"
                ) from None
        codecs = video_codecs(offer.sdp)
        want = offer.codec or "H264"
        if want not in codecs:
            want = "H264" if "H264" in codecs else "VP8"
        if want not in codecs:
            raise ProtocolError("no_codec", f"offer has neither H264 nor VP8 video ({codecs})")
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("datachannel", self._on_datachannel)
        await pc.setRemoteDescription(
            RTCSessionDescription(sdp=prefer_codec(offer.sdp, want), type="offer")
        )
        sender = pc.addTrack(self.track)
        watch_rtcp(
            sender,
            on_remb=self._on_remb,
            on_keyframe_request=self._on_keyframe_request,
        )
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        negotiated = video_codecs(pc.localDescription.sdp)
        codec = negotiated[0] if negotiated else want
        if codec not in sp.CODECS:
            raise ProtocolError("no_codec", f"negotiated {codec}, which the node cannot encode")
        self.encoder_config = self.encoder_config.with_(codec=codec)
        ec = self.encoder_config
        await self.ws.send(
            sp.Answer(
                sdp=pc.localDescription.sdp,
                session=self.sid,
                codec=codec,
                width=ec.width,
                height=ec.height,
                fps=ec.fps,
                bitrate=ec.bitrate,
            ).encode()
        )
        self.state = SessionState.CONNECTING
        self._last_rx = time.monotonic()

    def _on_connection_state(self) -> None:
        pc = self.pc
        if pc is None:
            return
        state = pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state == "failed":
            self.end("connection_failed", "ICE/DTLS connection failed")
        elif state == "closed":
            self.end("connection_closed", "peer connection closed")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != sp.CHANNEL_LABEL:
            return
        self.channel = channel
        channel.on("message", self._on_channel_message)
        channel.on("close", lambda: self.end("channel_closed", "data channel closed"))

    async def _read_signalling(self) -> None:
        try:
            async for data in self.ws:
                try:
                    msg = sp.decode_signal(data)
                except ProtocolError as exc:
                    await self.ws.send(
                        sp.SignalError(code=exc.code, message=exc.message, fatal=False).encode()
                    )
                    continue
                if isinstance(msg, sp.Bye):
                    self.end("client_bye", msg.reason)
                    return
                if isinstance(msg, sp.Configure):
                    await self._configure(msg)
                elif isinstance(msg, sp.EditMsg):
                    if self.proxy is None:
                        err = sp.SignalError(
                            code="not_proxy", message="edits go to the sim", fatal=False
                        )
                        await self.ws.send(err.encode())
                    else:
                        await self.proxy.edit(msg.action, msg.x, msg.y, msg.z, msg.block)
        except ConnectionClosed:
            pass
        self.end("client_left", "signalling websocket closed")

    async def _configure(self, msg: sp.Configure) -> None:
        ec = self.encoder_config
        changes: dict[str, Any] = {}
        if msg.width and msg.height:
            changes["width"], changes["height"] = _even(msg.width), _even(msg.height)
        if msg.fps:
            self.fps = msg.fps
            changes["fps"] = msg.fps
        if msg.bitrate:
            new = self.rate.set_ceiling(
                max(sp.MIN_BITRATE, min(msg.bitrate, self.node.config.max_bitrate))
            )
            if new is not None:
                changes["bitrate"] = new
        if changes:
            self.encoder_config = ec.with_(**changes)
        ec = self.encoder_config
        await self.ws.send(
            sp.Configured(width=ec.width, height=ec.height, fps=ec.fps, bitrate=ec.bitrate).encode()
        )

    # -- the data channel --------------------------------------------------------------
    def _on_channel_message(self, data: Any) -> None:
        self._last_rx = time.monotonic()
        self.stats.messages_in += 1
        try:
            msg = sp.decode_channel(data)
        except ProtocolError:
            self.stats.bad_messages += 1  # unreliable channel: drop, never answer
            return
        if isinstance(msg, sp.InputMsg):
            fresh = self.camera.on_input(msg.frames)
            self.stats.inputs += len(fresh)
            if self.proxy is not None and fresh:
                self.proxy.queue_inputs(fresh)
        elif isinstance(msg, sp.StateMsg):
            self.camera.on_state(msg.ack, msg.pos, msg.vel, msg.on_ground, msg.flying)
        elif isinstance(msg, sp.PingMsg):
            self._send_channel(sp.PongMsg(id=msg.id, t=msg.t, peer_t=time.time()))

    def _send_channel(self, msg: sp.StreamMessage) -> None:
        ch = self.channel
        if ch is not None and ch.readyState == "open":
            ch.send(msg.encode())

    def _on_entity(self, x: float, y: float, z: float, yaw: float, pitch: float) -> None:
        self.camera.on_entity(x, y, z, yaw, pitch)

    # -- feedback ----------------------------------------------------------------------
    def request_keyframe(self) -> None:
        self._want_key = True

    def _on_keyframe_request(self) -> None:
        self.stats.keyframe_requests += 1
        self.request_keyframe()

    def _on_remb(self, bps: int) -> None:
        now = time.monotonic()
        new = self.rate.on_estimate(bps, self.stats.sent_bps(now), now)
        if new is not None:
            self.encoder_config = self.encoder_config.with_(bitrate=new)
            ec = self.encoder_config
            msg = sp.Configured(width=ec.width, height=ec.height, fps=ec.fps, bitrate=new)
            task = asyncio.ensure_future(self._send_signal(msg))
            task.add_done_callback(lambda t: t.exception())

    async def _send_signal(self, msg: sp.StreamMessage) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(msg.encode())

    # -- streaming ---------------------------------------------------------------------
    async def _watchdog(self) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._connected.wait()
        except TimeoutError:
            self.end(
                "connect_timeout",
                f"no WebRTC connection within {CONNECT_TIMEOUT_S:g} s",
                error=True,
            )
            return
        self.state = SessionState.STREAMING
        self.stats.streaming_at = time.monotonic()
        self._last_rx = time.monotonic()
        self.node.session_streaming(self)
        while not self.ended:
            await asyncio.sleep(0.25)
            if time.monotonic() - self._last_rx > HEARTBEAT_TIMEOUT_S:
                self.end(
                    "heartbeat_timeout", f"nothing from the client for {HEARTBEAT_TIMEOUT_S:g} s"
                )

    async def _stream(self) -> None:
        """The frame loop: render on the tick; encode and send while the next one renders."""
        await self._connected.wait()
        loop = asyncio.get_running_loop()
        node = self.node
        metrics = node.metrics
        # The first view is a full window: build it off the render workers.
        pose = self.camera.pose(with_hit=False)
        await loop.run_in_executor(node.prepare_pool, self.pipeline.prepare, pose.x, pose.z)
        sending: asyncio.Task | None = None
        next_t = self.next_tick = node.first_tick(self, 1.0 / self.fps)
        try:
            while not self.ended:
                now = time.monotonic()
                if next_t > now:
                    await asyncio.sleep(next_t - now)
                interval = 1.0 / self.fps
                tick = next_t
                next_t += interval
                late = time.monotonic() - next_t
                if late > 0:
                    # Behind by whole frames: skip those ticks instead of queueing them.
                    skipped = int(late / interval) + 1
                    next_t += skipped * interval
                    self.stats.dropped += skipped
                    metrics.dropped.inc(skipped)
                self.next_tick = next_t
                pose = self.camera.pose()
                tick_wall = time.time() - (time.monotonic() - tick)
                avatars = node.world.avatars(time.monotonic(), exclude=self.player)
                rendered = await loop.run_in_executor(
                    node.pool,
                    self.pipeline.render,
                    pose,
                    avatars,
                    self.encoder_config,
                    node.frame_threads(),
                )
                if sending is not None:
                    await sending  # encodes stay in order, one at a time
                if self.ended:
                    break
                sending = loop.create_task(self._encode_and_send(rendered, pose, tick, tick_wall))
                # The next frame's view upkeep now, in the slack before its tick.
                upkeep = loop.run_in_executor(
                    node.upkeep_pool, self.pipeline.upkeep, pose.x, pose.z
                )
                upkeep.add_done_callback(_log_upkeep_failure)
            if sending is not None:
                await sending
        except RuntimeError:
            if not self.ended:
                raise
            # The pipeline closed under a running job: the end, not an error.
        finally:
            if sending is not None and not sending.done():
                sending.cancel()

    async def _encode_and_send(
        self, rendered: Rendered, pose, tick: float, tick_wall: float
    ) -> None:
        keyframe = self._keyframe_due(time.monotonic())
        result: FrameResult = await asyncio.get_running_loop().run_in_executor(
            self.node.encode_pool, self.pipeline.encode, rendered, keyframe
        )
        if not self.ended:
            self._send_frame(result, pose, tick, tick_wall)

    def _keyframe_due(self, now: float) -> bool:
        if self._want_key and now - self._last_key_at >= KEYFRAME_MIN_INTERVAL_S:
            self._want_key = False
            return True
        return False

    def _send_frame(self, r: FrameResult, pose, tick: float, tick_wall: float) -> None:
        enc = r.encoded
        now = time.monotonic()
        stats = self.stats
        metrics = self.node.metrics
        if r.rebuilt:
            stats.rebuilds += 1
            metrics.rebuilds.labels(reason=r.rebuilt).inc()
        if enc.keyframe:
            self._last_key_at = now
            stats.keyframes += 1
            metrics.keyframes.inc()
        if not enc.packets:
            return
        hit = pose.hit
        stamp = sp.FrameStamp(
            seq=self._frame_seq,
            pts=enc.pts,
            key=enc.keyframe,
            rs=r.render_started,
            rt=r.render_finished,
            ren=round(r.render_s * 1000.0, 3),
            enc=round(enc.encode_s * 1000.0, 3),
            input=pose.input_seq,
            pos=[round(pose.x, 4), round(pose.y, 4), round(pose.z, 4)],
            yaw=pose.yaw,
            pitch=pose.pitch,
            hit=[hit.x, hit.y, hit.z, *hit.normal, hit.block] if hit is not None else None,
            tick=round(tick_wall, 6),
        )
        # The stamp goes first so it is there when the frame is decoded.
        self._send_channel(stamp)
        self.track.push(enc.packets)
        self._frame_seq += 1
        stats.frames += 1
        stats.bytes_sent += enc.size
        stats.sent_times.append(now)
        stats.sent_sizes.append((now, enc.size))
        stats.render_ms.append(r.render_s * 1000.0)
        stats.prep_ms.append(r.prep_s * 1000.0)
        stats.encode_ms.append(enc.encode_s * 1000.0)
        metrics.frames.inc()
        metrics.sent_bytes.inc(enc.size)
        metrics.frame_time.observe(r.render_s)
        metrics.encode_time.observe(enc.encode_s)
        metrics.pipeline_time.observe(max(0.0, now - tick))

    # -- reporting ---------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        now = time.monotonic()
        s = self.stats
        ec = self.encoder_config
        feet = self.camera.feet
        return {
            "session": self.sid,
            "player": self.player,
            "state": self.state.value,
            "codec": ec.codec,
            "width": ec.width,
            "height": ec.height,
            "fps_target": self.fps,
            "fps": round(s.fps(now), 2),
            "bitrate_target": ec.bitrate,
            "bitrate_estimate": self.rate.estimate,
            "sent_bps": round(s.sent_bps(now, 2.0)),
            "frames": s.frames,
            "dropped": s.dropped,
            "frames_reused": self.pipeline.reused,
            "keyframes": s.keyframes,
            "keyframe_requests": s.keyframe_requests,
            "encoder_rebuilds": s.rebuilds,
            "bytes_sent": s.bytes_sent,
            "inputs": s.inputs,
            "channel_messages_in": s.messages_in,
            "render_ms_p50": _median(s.render_ms),
            "encode_ms_p50": _median(s.encode_ms),
            "render_ms_max": _max(s.render_ms),
            "prep_ms_max": _max(s.prep_ms),  # world changes + recentring, before a render
            "camera": [round(v, 3) for v in feet],
            "yaw": round(self.camera.yaw, 4),
            "pitch": round(self.camera.pitch, 4),
            "input_seq": self.camera.newest_seq,
            # where in the frame interval this session renders (`staggered_start`)
            "tick_phase_ms": None
            if self.next_tick is None
            else round(1000.0 * (self.next_tick % (1.0 / self.fps)), 3),
            "age_s": round(now - s.started_at, 3),
        }


def _log_upkeep_failure(fut: asyncio.Future) -> None:
    """An upkeep that failed is logged; the next render does the work itself."""
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("view upkeep failed: %r", fut.exception())


class _Stop(Exception):
    """Raised inside the task group to stop the session's tasks (not an error)."""


def _even(v: int) -> int:
    return max(16, int(v) & ~1)


def _max(values) -> float | None:
    return round(max(values), 3) if values else None


def _median(values) -> float | None:
    v = sorted(values)
    if not v:
        return None
    return round(v[len(v) // 2], 3)
