"""Units of the streaming path: messages, encoder, SDP, bitrate steps, jitter buffer,
stamp matching and the node's camera. No processes, no network."""

from __future__ import annotations

import math
import random
import threading

import av
import numpy as np
import pytest
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from client.input_pacing import TickPacer
from client.remote import InlineDecoder, MarkerJitterBuffer, StampMatcher, signalling_url
from renderer.encoder import VIDEO_TIME_BASE, EncoderConfig, StreamClock, VideoEncoder, to_yuv
from renderer.node.camera import CameraDriver
from renderer.node.rate import BitrateController
from renderer.node.sdp import prefer_codec, video_codecs
from renderer.node.service import staggered_start, threads_per_frame
from shiftcraft import stream_protocol as sp
from shiftcraft.protocol import ProtocolError
from world.physics import EYE_HEIGHT, MoveInput, PlayerBody, step


# -- messages --------------------------------------------------------------------------
def test_messages_round_trip() -> None:
    offer = sp.Offer(sdp="v=0", player="alice", pos=[1.0, 2.0, 3.0], codec="VP8")
    back = sp.decode_signal(offer.encode())
    assert back.pos == (1.0, 2.0, 3.0)
    assert back.player == "alice" and back.codec == "VP8" and back.width == 640
    stamp = sp.FrameStamp(
        seq=3, pts=9000, key=True, rs=1.0, rt=1.01, ren=5.0, enc=1.0, input=7,
        pos=[0.5, 65.6, 0.5], yaw=0.1, pitch=-0.2, hit=[1, 63, 2, 0, 1, 0, 3],
    )  # fmt: skip
    back = sp.decode_channel(stamp.encode())
    assert back.hit == (1, 63, 2, 0, 1, 0, 3) and back.input == 7
    inp = sp.decode_channel('{"type":"input","frames":[[1,0.016,1,0,0.5,0.1,1]],"t":5}')
    assert inp.frames == [(1, 0.016, 1.0, 0.0, 0.5, 0.1, 1)]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("nope", "malformed"),
        ("[]", "malformed"),
        ('{"type":"warp"}', "unknown_type"),
        ('{"type":"ping","id":1}', "bad_field"),  # missing t
        ('{"type":"ping","id":1,"t":1,"x":2}', "bad_field"),  # unknown field
        ('{"type":"input","frames":[[1,0.016,NaN,0,0,0,0]]}', "bad_field"),
        ('{"type":"input","frames":[[1,9.0,0,0,0,0,0]]}', "bad_field"),  # dt > 0.25
        ('{"type":"ping","id":1,"t":1,"pad":"' + "x" * 5000 + '"}', "too_large"),
    ],
)
def test_bad_channel_messages(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        sp.decode_channel(text)
    assert info.value.code == code


def test_offer_limits() -> None:
    with pytest.raises(ProtocolError):
        sp.decode_signal(sp.Offer(sdp="", player="bad name!").encode())
    with pytest.raises(ProtocolError):
        sp.decode_signal('{"type":"offer","sdp":"","player":"a","width":100000}')


def test_signalling_url() -> None:
    assert signalling_url("ws://h:1") == "ws://h:1/session"
    assert signalling_url("http://h:1/") == "ws://h:1/session"
    assert signalling_url("https://h/session") == "wss://h/session"


# -- encoder ---------------------------------------------------------------------------
def _scene(i: int, w: int = 320, h: int = 180) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x + 2 * i) % 256
    img[..., 1] = (y * 2) % 256
    img[..., 2] = ((x // 16 + y // 16) % 2) * 180 + 40
    return img


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / max(mse, 1e-9))


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_encoder_round_trip(codec: str) -> None:
    cfg = EncoderConfig(codec=codec, width=320, height=180, fps=30, bitrate=3_000_000)
    enc = VideoEncoder(cfg)
    dec = av.CodecContext.create("h264" if codec == "H264" else "libvpx", "r")
    clock = StreamClock(now=0.0)
    keys, quality = [], []
    for i in range(40):
        pts = clock.pts(i / 30)
        frame = enc.encode(_scene(i), pts, keyframe=(i == 20))
        assert len(frame.packets) == 1, "zero latency: one packet per frame, at once"
        pkt = frame.packets[0]
        assert pkt.pts == pts and pkt.time_base == VIDEO_TIME_BASE
        if frame.keyframe:
            keys.append(i)
        out = dec.decode(pkt)
        assert len(out) == 1, "the decoder needs no look-ahead either"
        quality.append(_psnr(out[0].to_ndarray(format="rgb24"), _scene(i)))
    assert keys == [0, 20]  # the first frame, then the one asked for (GOP is 60)
    assert min(quality[5:]) > 30.0, quality


def test_h264_is_constrained_baseline() -> None:
    enc = VideoEncoder(EncoderConfig(width=320, height=180))
    data = bytes(enc.encode(_scene(0), 0).packets[0])
    sps = data[data.index(b"\x00\x00\x01\x67") + 4 :]
    assert sps[0] == 66  # profile_idc baseline
    assert sps[1] & 0x40  # constraint_set1: constrained baseline (42e0xx)


def test_stream_clock_never_repeats() -> None:
    clock = StreamClock(now=100.0)
    pts = [clock.pts(100.0), clock.pts(100.0), clock.pts(99.0), clock.pts(100.5)]
    assert pts == [0, 1, 2, 45000]
    # A new encoder (a bitrate step) keeps using the same clock: pts continue.
    enc2 = VideoEncoder(EncoderConfig(width=320, height=180, bitrate=500_000))
    assert enc2.encode(_scene(0), clock.pts(101.0)).pts == 90000


def test_rgb_to_i420_is_swscales_and_round_trips() -> None:
    """`to_yuv` (numba) against swscale: the same luma; 2x2 blocks of one
    colour come back as that colour through the decoder's YUV -> RGB."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
    ref = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    frame = to_yuv(rgb)
    assert (frame.width, frame.height, frame.format.name) == (320, 180, "yuv420p")
    got, want = frame.to_ndarray(), ref.to_ndarray()
    assert np.abs(got[:180].astype(int) - want[:180].astype(int)).max() <= 1
    blocks = np.repeat(np.repeat(rgb[::2, ::2], 2, axis=0), 2, axis=1)
    planes = np.empty((270, 320), dtype=np.uint8)
    back = to_yuv(blocks, planes).to_ndarray(format="rgb24")
    sws = av.VideoFrame.from_ndarray(blocks, format="rgb24").reformat(format="yuv420p")
    sws_back = sws.to_ndarray(format="rgb24")
    err = np.abs(back.astype(int) - blocks.astype(int))
    sws_err = np.abs(sws_back.astype(int) - blocks.astype(int))
    # (limited-range 8-bit YUV: a few levels off on saturated colours, as swscale's)
    assert err.max() <= 6 and err.mean() <= sws_err.mean() + 0.1, (err.mean(), sws_err.mean())
    # The frame is a copy: the scratch is free for the next one at once.
    kept = to_yuv(rgb, planes)
    planes[:] = 0
    assert np.array_equal(kept.to_ndarray(), got)
    with pytest.raises(ValueError):
        to_yuv(rgb[:179])


def test_frames_share_the_cores_once_several_sessions_stream() -> None:
    assert threads_per_frame(cores=2, workers=2, streaming=1) is None  # all: lowest latency
    assert threads_per_frame(cores=2, workers=2, streaming=0) is None
    assert threads_per_frame(cores=2, workers=2, streaming=4) == 1
    assert threads_per_frame(cores=16, workers=16, streaming=3) == 5
    assert threads_per_frame(cores=8, workers=2, streaming=5) == 4  # two frames at once
    assert threads_per_frame(cores=8, workers=1, streaming=5) is None  # one frame at a time


def test_encoder_config_checks() -> None:
    with pytest.raises(ValueError):
        EncoderConfig(width=641)
    with pytest.raises(ValueError):
        EncoderConfig(codec="AV1")


# -- SDP --------------------------------------------------------------------------------------
OFFER = "\r\n".join(
    [
        "v=0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=rtpmap:111 opus/48000/2",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rtpmap:102 H264/90000",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=rtpmap:103 rtx/90000",
        "a=fmtp:103 apt=102",
        "a=rtpmap:104 H264/90000",
        "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:105 rtx/90000",
        "a=fmtp:105 apt=104",
        "",
    ]
)


def test_prefer_codec() -> None:
    assert video_codecs(OFFER) == ["VP8", "H264"]
    h264 = prefer_codec(OFFER, "H264")
    assert "m=video 9 UDP/TLS/RTP/SAVPF 104 102 105 103 96 97" in h264
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 111" in h264  # audio untouched
    assert video_codecs(h264) == ["H264", "VP8"]
    assert prefer_codec(h264, "VP8").count("SAVPF 96 97 104 102 105 103") == 1
    assert prefer_codec(OFFER, "AV1") == OFFER


# -- bitrate ---------------------------------------------------------------------------
def test_bitrate_steps_only_when_held() -> None:
    c = BitrateController(ceiling=2_000_000)
    assert c.target == 2_000_000
    # Small wobble: never a step.
    for t in range(20):
        assert c.on_estimate(1_900_000 + (t % 2) * 300_000, 2_000_000, t * 0.1) is None
    # A drop by half, while we send more than the estimate: a step after 1 s.
    assert c.on_estimate(1_000_000, 1_900_000, 10.0) is None
    assert c.on_estimate(1_000_000, 1_900_000, 10.5) is None
    assert c.on_estimate(1_000_000, 1_900_000, 11.05) == 900_000
    # Interrupted: the hold starts over.
    assert c.on_estimate(2_000_000, 800_000, 12.0) is None
    assert c.on_estimate(950_000, 800_000, 12.5) is None
    assert c.on_estimate(2_000_000, 800_000, 12.6) is None
    assert c.on_estimate(2_000_000, 800_000, 13.7) == 1_800_000
    # A low estimate while the scene itself sends little is not a network limit.
    c3 = BitrateController(ceiling=2_000_000)
    assert all(c3.on_estimate(450_000, 300_000, t * 0.1) is None for t in range(30))
    assert c3.target == 2_000_000


# -- receiving -------------------------------------------------------------------------
def _packet(seq: int, ts: int, marker: bool, data: bytes) -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=int(marker))
    p.payload = data
    p._data = data  # what depayloading leaves for the jitter buffer
    return p


def test_marker_jitter_buffer_releases_complete_frames_at_once() -> None:
    jb = MarkerJitterBuffer()
    assert jb.add(_packet(100, 3000, False, b"a"))[1] is None
    assert jb.add(_packet(101, 3000, False, b"b"))[1] is None
    frame = jb.add(_packet(102, 3000, True, b"c"))[1]
    assert frame is not None and frame.data == b"abc" and frame.timestamp == 3000
    # A frame with a hole is held (the stock path: wait for retransmission or give up).
    assert jb.add(_packet(103, 6000, False, b"d"))[1] is None
    assert jb.add(_packet(105, 6000, True, b"f"))[1] is None
    frame = jb.add(_packet(104, 6000, False, b"e"))[1]
    assert frame is None or frame.data == b"def"
    if frame is None:  # completed when the next frame starts (stock behaviour)
        frame = jb.add(_packet(106, 9000, True, b"g"))[1]
        assert frame is not None and frame.data == b"def"
    assert jb.bytes_received == 7 + 7 * 12


def test_stamp_matcher_locks_on_the_true_offset() -> None:
    rng = random.Random(4)
    m = StampMatcher()
    t, stamps = 0.0, []
    for i in range(60):
        t += 1 / 30 + rng.uniform(-0.004, 0.004)  # paced frames with render-time jitter
        stamps.append(sp.FrameStamp(
            seq=i, pts=round(t * 90000), key=i == 0, rs=t, rt=t, ren=1.0, enc=1.0, input=-1,
            pos=[0.0, 0.0, 0.0], yaw=0.0, pitch=0.0,
        ))  # fmt: skip
    first = stamps[3].pts  # the receiver's mapping starts at the first frame it got
    matched = []
    for i, s in enumerate(stamps):
        m.add(s)
        if i >= 3 and i % 7 != 5:  # some frames lost
            got = m.match(s.pts - first)
            matched.append(got is s if got is not None else None)
    assert m.offset == first
    assert False not in matched  # never a wrong pairing
    assert matched[-20:].count(True) >= 15


# -- the node's camera -----------------------------------------------------------------
class Flat:
    def get_block(self, x: int, y: int, z: int) -> int:
        return 1 if y < 64 else 0


def test_camera_turns_at_once_and_predicts_movement() -> None:
    world = Flat()
    cam = CameraDriver(world, (0.5, 64.0, 0.5), yaw=0.0)
    pose = cam.pose()
    assert pose.y == pytest.approx(64.0 + EYE_HEIGHT) and pose.input_seq == -1
    frames = [[i, 1 / 60, 1.0, 0.0, 0.7, -0.1, 0] for i in range(30)]
    assert len(cam.on_input(frames[:10])) == 10
    assert cam.on_input(frames[5:10]) == []  # repeats are ignored
    assert cam.yaw == 0.7 and cam.pitch == -0.1
    cam.on_input(frames[10:])
    body = PlayerBody(0.5, 64.0, 0.5)
    for f in frames:
        body = step(body, MoveInput.from_frame(f), f[1], world)
    assert cam.feet == pytest.approx((body.x, body.y, body.z))
    # The sim acked the first 20 frames at a slightly different place: replay the rest.
    ref = PlayerBody(0.5, 64.0, 0.9)
    for f in frames[:20]:
        ref = step(ref, MoveInput.from_frame(f), f[1], world)
    cam.on_state(19, (ref.x, ref.y, ref.z), (ref.vx, ref.vy, ref.vz), ref.on_ground, False)
    for f in frames[20:]:
        ref = step(ref, MoveInput.from_frame(f), f[1], world)
    assert cam.feet == pytest.approx((ref.x, ref.y, ref.z))
    assert cam.pose().input_seq == 29
    # Entity moves are ignored once the client forwards exact state.
    cam.on_entity(50.0, 64.0, 50.0, 0.0, 0.0)
    assert cam.feet == pytest.approx((ref.x, ref.y, ref.z))


def test_camera_follows_entity_moves_without_state() -> None:
    now = [0.0]
    cam = CameraDriver(Flat(), (0.5, 64.0, 0.5), clock=lambda: now[0])
    cam.on_entity(10.5, 64.0, 3.5, 1.0, 0.2)
    assert cam.feet == (10.5, 64.0, 3.5) and cam.yaw == 1.0
    cam.on_input([[0, 1 / 60, 0.0, 0.0, 2.0, 0.0, 0]])
    cam.on_entity(10.5, 64.0, 3.5, 1.0, 0.2)
    assert cam.yaw == 2.0  # input wins over the (older) entity look


# -- the node's per-session pipeline -------------------------------------------------------
def test_pipeline_renders_encodes_and_reuses_unchanged_frames() -> None:
    from renderer.node.camera import CameraPose
    from renderer.node.pipeline import SessionPipeline
    from renderer.node.world import ViewFeed

    feed = ViewFeed()
    section = np.zeros((16, 16, 16), np.uint8)
    section[:4] = 1  # stone floor up to y = 68 in section y = 4
    for sx in range(-2, 2):
        for sz in range(-2, 2):
            feed.set_section((sx, 4, sz), section)
    cfg = EncoderConfig(width=160, height=90, bitrate=500_000)
    pipe = SessionPipeline(feed, key=1, view_distance=32, encoder_config=cfg)
    pose = CameraPose(0.5, 70.0, 0.5, 0.3, -0.4, 70.0, -1, None)
    first = pipe.frame(pose, [], cfg, keyframe=False)
    assert first.rebuilt == "open" and first.encoded.keyframe and first.render_s > 0
    again = pipe.frame(pose, [], cfg, keyframe=False)
    assert pipe.reused == 1 and not again.encoded.keyframe
    assert again.encoded.pts > first.encoded.pts
    # A world change invalidates the picture; so does a turn.
    feed.set_block(0, 68, 3, 1)
    pipe.frame(pose, [], cfg, keyframe=False)
    pose.yaw += 0.1
    pipe.frame(pose, [], cfg, keyframe=False)
    assert pipe.reused == 1
    # A bitrate step rebuilds the encoder (keyframe) and pts keep running.
    stepped = pipe.frame(pose, [], cfg.with_(bitrate=300_000), keyframe=False)
    assert stepped.rebuilt == "bitrate" and stepped.encoded.keyframe
    assert stepped.encoded.pts > again.encoded.pts
    pipe.close()
    assert pipe.view is None and pipe.encoder is None
    with pytest.raises(RuntimeError):
        pipe.frame(pose, [], cfg, keyframe=False)


def test_render_leaves_section_loads_and_recentres_to_the_upkeep_for_one_frame_only() -> None:
    from renderer.node.camera import CameraPose
    from renderer.node.pipeline import SessionPipeline
    from renderer.node.world import ViewFeed

    feed = ViewFeed()
    floor = np.zeros((16, 16, 16), np.uint8)
    floor[:4] = 1
    feed.set_section((0, 4, 0), floor)
    cfg = EncoderConfig(width=64, height=36, bitrate=300_000)
    pipe = SessionPipeline(feed, key=1, view_distance=32, encoder_config=cfg)
    pose = CameraPose(0.5, 70.0, 0.5, 0.3, -0.4, 70.0, -1, None)
    pipe.render(pose, [], cfg)
    view = pipe.view
    assert view is not None and (0, 4, 0) in view.loaded
    # A load, then an edit in it: the render applies neither (order kept)...
    feed.set_section((1, 4, 0), floor)
    feed.set_block(17, 68, 1, 1)
    pipe.render(pose, [], cfg)
    assert (1, 4, 0) not in view.loaded and view.get_block(17, 68, 1) == 0
    # ...the upkeep after it applies both.
    assert pipe.upkeep(pose.x, pose.z) >= 0.0
    assert (1, 4, 0) in view.loaded and view.get_block(17, 68, 1) == 1
    # Where no upkeep ran in between, the next render applies everything.
    feed.set_section((2, 4, 0), floor)
    pipe.render(pose, [], cfg)
    feed.set_section((3, 4, 0), floor)
    pipe.render(pose, [], cfg)
    assert {(2, 4, 0), (3, 4, 0)} <= view.loaded
    # A step off centre that the window still reaches around: no recentre in
    # the render; the upkeep centres it; far off, the render must.
    origin = view.origin
    assert view.reaches(16.5, 0.5, 32) and not view.reaches(200.5, 0.5, 32)
    moved = CameraPose(16.5, 70.0, 0.5, 0.3, -0.4, 70.0, -1, None)
    pipe.render(moved, [], cfg)
    assert view.origin == origin
    pipe.upkeep(moved.x, moved.z)
    assert view.origin == (origin[0] + 16, origin[1])
    far = CameraPose(200.5, 70.0, 0.5, 0.3, -0.4, 70.0, -1, None)
    pipe.render(far, [], cfg)
    assert view.reaches(far.x, far.z, 32)
    pipe.close()


def test_sessions_frame_ticks_are_spread_over_the_interval() -> None:
    iv = 1 / 30
    now = 100.0
    assert staggered_start(now, iv, []) == now  # alone: at once
    # each new session lands in the middle of the widest gap, at or after now
    ticks: list[float] = []
    for _ in range(4):
        ticks.append(staggered_start(now, iv, ticks))
    phases = sorted((t - now) / iv for t in ticks)
    assert phases == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert all(now <= t < now + iv for t in ticks)
    # others' ticks may lie anywhere in time: only their phase matters
    assert staggered_start(now, iv, [now + 5 * iv + 0.2 * iv]) == pytest.approx(now + 0.7 * iv)
    assert staggered_start(now, iv, [now - 3 * iv]) == pytest.approx(now + 0.5 * iv)


# -- input pacing ------------------------------------------------------------------------
def test_tick_pacer_sends_at_once_until_it_has_heard_a_tick() -> None:
    pacer = TickPacer()
    assert pacer.send_at(100.0, 0.005) == 100.0
    pacer.observe(100.0, 1 / 30, now=100.0)
    assert pacer.send_at(102.0, 0.005) == 102.0  # the stamps stopped: unpaced again
    pacer.observe(0.0, 1 / 30, now=102.0)  # a node that sends no tick: ignored
    assert pacer.send_at(102.0, 0.005) == 102.0


def test_tick_pacer_sends_lead_before_the_next_tick_that_can_still_be_met() -> None:
    pacer = TickPacer()
    interval = 1 / 30
    pacer.observe(10.0, interval, now=10.0)
    lead = 0.005
    for now in np.linspace(10.0, 10.5, 97):
        at = pacer.send_at(float(now), lead)
        assert at >= now
        arrives = at + lead
        # it arrives by a tick, and that tick is the first it could have made
        k = round((arrives - 10.0) / interval)
        assert abs(10.0 + k * interval - arrives) < 1e-9 or at == now
        if at > now:
            assert 10.0 + (k - 1) * interval < now + lead  # the tick before was out of reach
    # Close to the slot, or past it: at once.
    assert pacer.send_at(10.0 + interval - lead - 0.001, lead) == 10.0 + interval - lead - 0.001


def test_tick_pacer_lead_is_half_the_round_trip_plus_margin() -> None:
    assert TickPacer.lead(None) == pytest.approx(0.004)
    assert TickPacer.lead(0.090) == pytest.approx(0.049)


def test_inline_decoder_decodes_at_once_and_flags_a_bad_frame() -> None:
    enc = VideoEncoder(EncoderConfig(width=64, height=36, fps=30, bitrate=200_000))
    rng = np.random.default_rng(3)
    packets = [
        enc.encode(rng.integers(0, 255, (36, 64, 3), dtype=np.uint8), i * 3000, keyframe=i == 0)
        for i in range(3)
    ]
    shown: list[av.VideoFrame] = []
    error = threading.Event()
    dec = InlineDecoder(shown.append, error)
    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
    # Garbage first: flagged (the receiver then asks for a keyframe), nothing shown, no raise.
    dec.put((h264, JitterFrame(data=b"\x00\x00\x00\x01\x65" + bytes(40), timestamp=1)))
    assert error.is_set() and not shown
    for i, frame in enumerate(packets):
        data = b"".join(bytes(p) for p in frame.packets)
        dec.put((h264, JitterFrame(data=data, timestamp=i * 3000)))
    assert [(f.width, f.height) for f in shown] == [(64, 36)] * 3
    assert [f.pts for f in shown] == [0, 3000, 6000]
    # The receiver's idle thread waits in get() until the receiver stops.
    waiter = threading.Thread(target=dec.get)
    waiter.start()
    dec.put(None)
    waiter.join(timeout=5)
    assert not waiter.is_alive()
