"""Real Shiftcraft traffic across the emulated link: the sim's websockets and WebRTC.

The sim server runs in one namespace, clients in another; the link delays
every packet, so a round trip that takes at least the configured RTT proves
the traffic crossed the emulator (there is no other path between them).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
import websockets

from experiments.testbed import LinkConditions, Testbed

pytestmark = pytest.mark.requires("root")

REPO = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


async def test_sim_server_websocket_and_http_cross_the_link(tmp_path: Path) -> None:
    async with Testbed(emulated=True) as tb:
        sim = await tb.add_host("sim", "cloud")
        phone = await tb.add_host("phone", "home")
        await tb.set_link("home", "cloud", LinkConditions(delay_ms=10))
        server = await sim.spawn(
            [sys.executable, "-m", "shiftcraft", "server", "--host", "0.0.0.0", "--port",
             "8765", "--db", str(tmp_path / "w.sqlite3"), "--generator", "flat"],
            env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 60)
        assert b"listening on ws://" in line, line

        # websockets from inside the phone's namespace: handshake = TCP + HTTP round trips.
        sock = phone.socket()
        sock.setblocking(False)
        t0 = time.perf_counter()
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, (sim.address, 8765)), 10
        )
        async with websockets.connect(f"ws://{sim.address}:8765", sock=sock) as ws:
            elapsed_ms = (time.perf_counter() - t0) * 1000
            pong = await ws.ping()
            t1 = time.perf_counter()
            await asyncio.wait_for(pong, 10)
            ping_ms = (time.perf_counter() - t1) * 1000
        assert elapsed_ms >= 2 * 20 * 0.95  # connect RTT + upgrade RTT
        assert 20 * 0.95 <= ping_ms <= 20 * 1.5

        # The runner's view: /metrics through the relay, which skips the emulator.
        host, port = await sim.forward(8765)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: sim\r\n\r\n")
        body = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert body.startswith(b"HTTP/1.") and b"shiftcraft_" in body


PEER = r"""
import asyncio, json, sys, time
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

async def main(role):
    loop = asyncio.get_running_loop()
    readline = lambda: loop.run_in_executor(None, sys.stdin.readline)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    done = asyncio.Event()
    rtts = []
    if role == "offer":
        ch = pc.createDataChannel("echo")
        ch.on("open", lambda: ch.send(str(time.perf_counter())))
        @ch.on("message")
        def on_message(msg):
            rtts.append((time.perf_counter() - float(msg)) * 1000)
            if len(rtts) < 10:
                ch.send(str(time.perf_counter()))
            else:
                done.set()
    else:
        @pc.on("datachannel")
        def on_channel(ch):
            ch.on("message", lambda msg: ch.send(msg))
    if role == "offer":
        await pc.setLocalDescription(await pc.createOffer())
        print(json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}), flush=True)
        await pc.setRemoteDescription(RTCSessionDescription(**json.loads(await readline())))
        await asyncio.wait_for(done.wait(), 30)
    else:
        await pc.setRemoteDescription(RTCSessionDescription(**json.loads(await readline())))
        await pc.setLocalDescription(await pc.createAnswer())
        print(json.dumps({"sdp": pc.localDescription.sdp, "type": "answer"}), flush=True)
        await asyncio.wait_for(readline(), 30)  # until the test closes our stdin
    print(json.dumps({"rtts": rtts}), flush=True)
    await pc.close()

asyncio.run(main(sys.argv[1]))
"""


async def test_webrtc_data_channel_crosses_the_link() -> None:
    async with Testbed(emulated=True) as tb:
        node = await tb.add_host("render-edge", "edge")
        phone = await tb.add_host("phone", "home")
        await tb.set_link("home", "edge", LinkConditions(delay_ms=15))
        pipes = {"stdin": asyncio.subprocess.PIPE, "stdout": asyncio.subprocess.PIPE}
        offerer = await phone.spawn([sys.executable, "-c", PEER, "offer"], env=ENV, **pipes)
        answerer = await node.spawn([sys.executable, "-c", PEER, "answer"], env=ENV, **pipes)
        assert offerer.stdout and offerer.stdin and answerer.stdout and answerer.stdin
        offer = await asyncio.wait_for(offerer.stdout.readline(), 60)
        assert f"IN IP4 {phone.address}".encode() in offer or phone.address.encode() in offer
        answerer.stdin.write(offer)
        answer = await asyncio.wait_for(answerer.stdout.readline(), 60)
        offerer.stdin.write(answer)
        result = json.loads(await asyncio.wait_for(offerer.stdout.readline(), 60))
        answerer.stdin.close()
        rtts = sorted(result["rtts"])
        assert len(rtts) == 10
        # SCTP over DTLS over UDP: the median echo takes the link's 30 ms RTT.
        assert 30 * 0.95 <= rtts[5] <= 30 * 1.5, rtts
