"""The render node end to end: real sim and node processes, real WebRTC on loopback.

Nothing is mocked: the node is ``shiftcraft render-node`` in its own
process, the client is `client.remote.RemoteStream` (aiortc) in the test's
event loop or in a child process, and the reference pictures come from the
same `renderer.Renderer` a local-mode client uses, over sections fetched
from the same sim.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect as ws_connect

from client.connection import SimConnection
from client.remote import RemoteOptions, RemoteStream, ShownFrame
from client.replica import WorldReplica
from renderer import Camera, Renderer, WorldView
from renderer.node.launch import NodeProcess, start_node
from shiftcraft import stream_protocol as sp
from shiftcraft.protocol import Update

REPO = Path(__file__).resolve().parent.parent
VIEW = 48  # blocks: a small world keeps loading quick
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def node(module_server, tmp_path_factory) -> Iterator[NodeProcess]:
    log = tmp_path_factory.mktemp("node") / "node.log"
    proc = start_node(module_server.url, "--view-distance", str(VIEW), log=log)
    yield proc
    rc = proc.stop()
    assert rc == 0, proc.log_text()[-3000:]


# -- helpers ---------------------------------------------------------------------------
async def stats(node: NodeProcess) -> dict:
    return await asyncio.to_thread(node.stats)


def sessions_of(doc: dict, player: str) -> list[dict]:
    return [s for s in doc["session_list"] if s["player"] == player]


async def wait_for(predicate, timeout: float, what: str, period: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(period)


async def node_settled(node: NodeProcess, quiet: float = 1.5, timeout: float = 30.0) -> None:
    """Until the node's replica stops growing (its interest is loaded)."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = (await stats(node))["sections"]
        if n != last:
            last, since = n, time.monotonic()
        elif n > 0 and time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the node's replica never settled")


async def reference_view(sim_url: str, centre: tuple[float, float, float], name: str) -> WorldView:
    """A WorldView of the sections around ``centre``, straight from the sim (as local mode)."""
    view = WorldView(radius=VIEW, center=(centre[0], centre[2]))
    replica = WorldReplica(sink=view)

    def on_message(msg) -> None:
        if isinstance(msg, Update):
            replica.apply_update(msg)

    conn = await SimConnection.connect(sim_url, name, role="render-node", on_message=on_message)
    try:
        await conn.send_view([centre], distance=VIEW)
        last, since = -1, time.monotonic()
        while time.monotonic() - since < 1.5:
            if len(replica) != last:
                last, since = len(replica), time.monotonic()
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return view


def render_reference(view: WorldView, stamp: sp.FrameStamp, width: int, height: int) -> np.ndarray:
    r = Renderer(width, height, view_distance=VIEW)
    cam = Camera(*stamp.pos, stamp.yaw, stamp.pitch, 70.0)
    target = tuple(stamp.hit[:3]) if stamp.hit is not None else None
    return r.render(view, cam, [], target).copy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


async def newest_stamped(stream: RemoteStream, seconds: float) -> tuple[ShownFrame, np.ndarray]:
    """Show frames for ``seconds``; return the last one that has its stamp, as RGB."""
    best = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or best is None:
        shown = await stream.next_frame(timeout=1.0)
        if shown is not None and shown.stamp is not None:
            best = shown
        if time.monotonic() > deadline + 10:
            raise AssertionError("no stamped frame")
    return best, stream.to_rgb(best)


async def open_stream(node: NodeProcess, player: str, **opts) -> RemoteStream:
    options = RemoteOptions(view_distance=VIEW, **opts)
    stream = RemoteStream(node.url, player, options)
    await stream.open()
    await stream.wait_first_frame(timeout=30)
    return stream


# -- tests -----------------------------------------------------------------------------
async def test_stream_matches_local_renderer(module_server, node) -> None:
    stream = await open_stream(node, "pixel", width=640, height=360, bitrate=6_000_000)
    try:
        assert stream.codec == "H264"
        await node_settled(node)
        # A still camera: a second of P-frames refines the picture to full quality.
        shown, rgb = await newest_stamped(stream, 1.5)
        stamp = shown.stamp
        assert stamp is not None and rgb.shape == (360, 640, 3)
        view = await reference_view(module_server.url, tuple(stamp.pos), "ref-pixel")
        expected = render_reference(view, stamp, 640, 360)
        quality = psnr(rgb, expected)
        mad = float(np.mean(np.abs(rgb.astype(np.int16) - expected.astype(np.int16))))
        print(f"psnr {quality:.1f} dB, mean abs diff {mad:.2f}")
        assert quality > 30.0 and mad < 4.0, (quality, mad)
        # And the comparison can tell pictures apart: another camera does not match.
        other = dataclasses.replace(stamp, yaw=stamp.yaw + 0.5)
        wrong = psnr(rgb, render_reference(view, other, 640, 360))
        assert wrong < quality - 6.0, (wrong, quality)
    finally:
        await stream.close()


async def test_input_over_data_channel_turns_and_moves_camera(module_server, node) -> None:
    stream = await open_stream(node, "mover", width=320, height=180, bitrate=2_000_000)
    try:
        await node_settled(node)
        before, rgb0 = await newest_stamped(stream, 0.5)
        s0 = before.stamp
        assert s0 is not None and s0.input == -1
        yaw = s0.yaw + 1.3
        # Turn: one frame, no movement.
        stream.send_inputs([[0, 1 / 60, 0.0, 0.0, yaw, 0.0, 0]])
        shown = await wait_for(
            lambda: _stamped_with_input(stream, 0), 3.0, "a frame reflecting the turn"
        )
        assert abs(shown.stamp.yaw - yaw) < 1e-9
        rgb1 = stream.to_rgb(shown)
        assert float(np.mean(np.abs(rgb1.astype(np.int16) - rgb0.astype(np.int16)))) > 3.0
        # The turned picture is what the local renderer draws for the turned camera.
        after, rgb2 = await newest_stamped(stream, 0.8)
        view = await reference_view(module_server.url, tuple(after.stamp.pos), "ref-mover")
        assert psnr(rgb2, render_reference(view, after.stamp, 320, 180)) > 28.0
        # Walk forward for half a second of input frames (the node predicts with physics).
        x0, _, z0 = after.stamp.pos
        frames = [[1 + i, 1 / 60, 1.0, 0.0, yaw, 0.0, 0] for i in range(30)]
        for i in range(0, 30, 3):
            stream.send_inputs(frames[i : i + 3])
            await asyncio.sleep(0.05)
        moved = await wait_for(
            lambda: _stamped_with_input(stream, 30), 3.0, "a frame reflecting the walk"
        )
        x1, _, z1 = moved.stamp.pos
        dx, dz = x1 - x0, z1 - z0
        along = dx * math.sin(yaw) + dz * math.cos(yaw)
        assert along > 1.5, (dx, dz)  # 30 frames at 4.3 blocks/s: ~2 blocks
    finally:
        await stream.close()


async def test_input_goes_out_once_a_node_frame_and_loses_no_frame(node) -> None:
    """60 Hz input reaches a 30 fps session as about one message per node
    frame (timed to the node's ticks from the stamps), with every frame in."""
    stream = await open_stream(node, "pacer", width=320, height=180)
    try:
        await newest_stamped(stream, 0.5)  # stamps have come: the tick clock is known
        doc0 = sessions_of(await stats(node), "pacer")[0]
        frames = [[i, 1 / 60, 0.0, 0.0, 0.01 * i, 0.0, 0] for i in range(120)]
        t0 = time.monotonic()
        for i, frame in enumerate(frames):
            stream.send_inputs([frame])
            await asyncio.sleep(max(0.0, t0 + (i + 1) / 60 - time.monotonic()))
        await wait_for(
            lambda: _stamped_with_input(stream, 119), 3.0, "a frame reflecting the last input"
        )
        doc1 = sessions_of(await stats(node), "pacer")[0]
        assert doc1["inputs"] - doc0["inputs"] == 120  # every frame arrived, once
        messages = doc1["channel_messages_in"] - doc0["channel_messages_in"]
        # ~2 s of 30 ticks plus a few pings, where one message a frame would be 120+.
        assert messages <= 75, messages
    finally:
        await stream.close()


async def _stamped_with_input(stream: RemoteStream, seq: int) -> ShownFrame | None:
    shown = await stream.next_frame(timeout=0.5)
    if shown is not None and shown.stamp is not None and shown.stamp.input >= seq:
        return shown
    return None


async def test_vp8_when_the_client_asks(node) -> None:
    stream = await open_stream(node, "vp8fan", width=320, height=180, codec="VP8")
    try:
        assert stream.codec == "VP8"
        _, rgb = await newest_stamped(stream, 0.5)
        assert rgb.shape == (180, 320, 3) and rgb.std() > 5.0
    finally:
        await stream.close()


CLIENT_PROCESS = """
import asyncio, sys
from client.remote import RemoteOptions, RemoteStream
async def main():
    s = RemoteStream(sys.argv[1], sys.argv[2], RemoteOptions(width=320, height=180))
    await s.open()
    await s.wait_first_frame(30)
    print("streaming", flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"""


async def test_killed_client_frees_its_session(node) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT_PROCESS, node.url, "victim"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert line.strip() == b"streaming"
        assert sessions_of(await stats(node), "victim")
        proc.kill()  # no bye, no close: the kernel drops its sockets
        t0 = time.monotonic()

        async def gone() -> bool:
            return not sessions_of(await stats(node), "victim")

        await wait_for(gone, 5.0, "the node to free the session")
        assert time.monotonic() - t0 < 5.0
    finally:
        proc.kill()
        proc.wait()


async def test_silent_client_is_dropped_by_heartbeat(node) -> None:
    stream = await open_stream(node, "ghost", width=320, height=180)
    try:
        before = (await stats(node))["ended"].get("heartbeat_timeout", 0)
        # Stop pinging; the peer connection and the websocket stay up.
        for task in stream._tasks:
            if "ping" in task.get_name():
                task.cancel()
        t0 = time.monotonic()

        async def gone() -> bool:
            doc = await stats(node)
            return (
                not sessions_of(doc, "ghost") and doc["ended"].get("heartbeat_timeout", 0) > before
            )

        await wait_for(gone, 6.0, "the heartbeat to drop the session")
        assert time.monotonic() - t0 < 5.0
        await wait_for(_ended(stream), 3.0, "the client to hear it")
        assert stream.error is not None and "heartbeat_timeout" in stream.error.message
    finally:
        await stream.close()


def _ended(stream: RemoteStream):
    async def check() -> bool:
        return stream.ended

    return check


async def test_killed_node_is_reported_to_the_client(module_server, tmp_path) -> None:
    doomed = start_node(module_server.url, "--view-distance", str(VIEW), log=tmp_path / "n.log")
    events = []
    stream = RemoteStream(
        doomed.url, "orphan", RemoteOptions(width=320, height=180), on_event=events.append
    )
    try:
        await stream.open()
        await stream.wait_first_frame(30)
        doomed.kill()
        t0 = time.monotonic()
        await wait_for(_ended(stream), 3.0, "the client to notice the dead node")
        assert time.monotonic() - t0 < 3.0
        err = stream.error
        assert err is not None and err.code in ("node_lost", "connection_closed", "channel_closed")
        assert "render node" in err.message
        assert any(e.fatal for e in events)
    finally:
        await stream.close()
        doomed.kill()


async def test_sessions_are_isolated(node) -> None:
    good = await open_stream(node, "steady", width=320, height=180)
    bad = await open_stream(node, "rowdy", width=320, height=180)
    try:
        # Two sessions at one rate render half a frame interval apart.
        await good.wait_first_frame(timeout=30)
        await bad.wait_first_frame(timeout=30)
        doc = await stats(node)
        a, b = (sessions_of(doc, p)[0] for p in ("steady", "rowdy"))
        interval = 1000.0 / a["fps_target"]
        gap = (a["tick_phase_ms"] - b["tick_phase_ms"]) % interval
        assert abs(gap - interval / 2) < 1.0, (a["tick_phase_ms"], b["tick_phase_ms"])
        # The rowdy client sends garbage on both channels, then vanishes without a word.
        ch = bad._channel
        for junk in ("{", "[]", '{"type":"input","frames":[[1,0.016,NaN,0,0,0,0]]}',
                     '{"type":"warp","x":1}', "x" * 5000):  # fmt: skip
            ch.send(junk)
        await bad.ws.send('{"type":"configure","width":"huge"}')
        await bad.ws.send("not json")
        await asyncio.sleep(0.5)
        assert sessions_of(await stats(node), "rowdy"), "garbage must not end a session"
        await bad.pc.close()
        await bad.ws.close()
        t0 = time.monotonic()
        shown_before = good.stats.frames_shown
        while time.monotonic() - t0 < 2.5:
            await good.next_frame(timeout=0.5)
        fps = (good.stats.frames_shown - shown_before) / (time.monotonic() - t0)
        assert fps > 20.0, fps
        doc = await stats(node)
        assert not sessions_of(doc, "rowdy")
        assert sessions_of(doc, "steady")[0]["state"] == "streaming"
        assert good.error is None
    finally:
        await good.close()
        await bad.close()


async def test_bad_signalling_gets_clear_errors(node) -> None:
    async def first_reply(*messages: str, path: str = "/session") -> dict:
        async with ws_connect(node.url + path, proxy=None) as ws:
            for m in messages:
                await ws.send(m)
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert (await first_reply("hello"))["code"] == "malformed"
    assert (await first_reply('{"type":"bye"}'))["code"] == "expected_offer"
    no_video = sp.Offer(sdp="v=0\r\n", player="nobody").encode()
    reply = await first_reply(no_video)
    assert reply["type"] == "error" and reply["code"] == "no_codec"
    # (nothing sent: the node answers a wrong path and closes at once)
    assert (await first_reply(path="/elsewhere"))["code"] == "not_found"


async def test_metrics_and_health(node) -> None:
    stream = await open_stream(node, "metered", width=320, height=180)
    try:
        await newest_stamped(stream, 0.5)
        text = (await asyncio.to_thread(node.get, "/metrics")).decode()
        for name in (
            "shiftcraft_render_sessions ",
            "shiftcraft_render_frames_total",
            "shiftcraft_render_frames_dropped_total",
            "shiftcraft_render_encode_duration_seconds_bucket",
            "shiftcraft_render_frame_duration_seconds_bucket",
            "shiftcraft_render_sent_bytes_total",
            "shiftcraft_render_target_bitrate_bytes_per_second",
        ):
            assert name in text, name
        sessions = [
            line for line in text.splitlines() if line.startswith("shiftcraft_render_sessions ")
        ]
        assert float(sessions[0].split()[1]) >= 1
        health = json.loads(await asyncio.to_thread(node.get, "/health"))
        assert health["status"] == "ok"
    finally:
        await stream.close()


async def test_configure_changes_size_and_pts_keep_running(node) -> None:
    stream = await open_stream(node, "resizer", width=320, height=180, fps=30)
    try:
        first, _ = await newest_stamped(stream, 0.5)
        offset = stream.matcher.offset
        await stream.configure(width=240, height=136, fps=20, bitrate=600_000)

        async def resized() -> ShownFrame | None:
            shown = await stream.next_frame(timeout=0.5)
            if shown is not None and shown.frame.width == 240 and shown.stamp is not None:
                return shown
            return None

        shown = await wait_for(resized, 5.0, "frames of the new size")
        assert shown.frame.height == 136
        assert (stream.width, stream.height, stream.fps) == (240, 136, 20)
        # One clock per session: the new encoder's frames pair with their stamps
        # under the same offset, and pts only grew.
        assert stream.matcher.offset == offset
        assert shown.stamp.pts > first.stamp.pts and shown.stamp.key
        mine = sessions_of(await stats(node), "resizer")[0]
        assert mine["encoder_rebuilds"] >= 2 and mine["bitrate_target"] == 600_000
    finally:
        await stream.close()
