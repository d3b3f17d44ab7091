"""Handing aiortc encoded frames, and hearing what the receiver says about them.

`EncodedVideoTrack.recv` returns `av.Packet` objects, not frames: aiortc's
`RTCRtpSender` then only packetizes them (its codec's ``pack()``) instead
of running its own encoder, which is x264 at its default preset — 23-50 ms
a 720p frame here, far too slow for interactive streaming.

That also means aiortc's sender no longer acts on the receiver's feedback
(it forwards REMB to its own encoder and sets a keyframe flag for its own
encoder on PLI/FIR). `watch_rtcp` taps the sender's RTCP handler so the
session gets the receiver's bitrate estimate (REMB), keyframe requests
(PLI/FIR) and receiver reports (loss, jitter) itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

log = logging.getLogger("shiftcraft.render.track")

MAX_BACKLOG = 8  # packets waiting for the sender; more means it stalled


class EncodedVideoTrack(MediaStreamTrack):
    """A video track whose `recv` yields encoded `av.Packet`s, in order.

    Encoded frames depend on each other, so none may be dropped here: the
    render loop drops frames *before* rendering when it is behind. If the
    sender ever stalls (the backlog passes `MAX_BACKLOG`), the backlog is
    discarded and ``on_overflow`` asks the encoder for a keyframe.
    """

    kind = "video"

    def __init__(self, on_overflow: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._packets: deque[av.Packet] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.on_overflow = on_overflow
        self.overflows = 0

    def push(self, packets: list[av.Packet]) -> None:
        if self.readyState != "live":
            return
        if len(self._packets) + len(packets) > MAX_BACKLOG:
            self._packets.clear()
            self.overflows += 1
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self._packets.extend(packets)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def backlog(self) -> int:
        return len(self._packets)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._packets:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._packets.popleft()

    def stop(self) -> None:
        super().stop()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def watch_rtcp(
    sender: RTCRtpSender,
    *,
    on_remb: Callable[[int], None],
    on_keyframe_request: Callable[[], None],
    on_report: Callable[[int, int], None] | None = None,
) -> None:
    """Call back on REMB (bits/s), PLI/FIR, and receiver reports (fraction lost /256, jitter).

    The DTLS transport hands each RTCP packet to ``sender._handle_rtcp_packet``;
    wrapping that one bound method (this sender only) is the narrowest tap
    aiortc offers. The original handler still runs (RTT estimate, NACK
    retransmissions, stats).
    """
    original = sender._handle_rtcp_packet

    async def handle(packet) -> None:
        try:
            if (
                isinstance(packet, RtcpPsfbPacket)
                and packet.media_ssrc == sender._ssrc
                and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR)
            ):
                on_keyframe_request()
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    pass
                else:
                    if sender._ssrc in ssrcs:
                        on_remb(bitrate)
            if on_report is not None and isinstance(packet, RtcpRrPacket | RtcpSrPacket):
                for report in packet.reports:
                    if report.ssrc == sender._ssrc:
                        on_report(report.fraction_lost, report.jitter)
        except Exception:  # a callback bug must not break the media path
            log.exception("RTCP callback failed")
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]
