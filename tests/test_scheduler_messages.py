"""The control-plane messages: round trips and validation (scheduler/messages.py)."""

from __future__ import annotations

import msgpack
import pytest

from scheduler.messages import (
    MAX_FRAME_BYTES,
    MESSAGES,
    SCHED_PROTOCOL_VERSION,
    Error,
    Migrate,
    MigrationReport,
    NodeStatus,
    Register,
    Telemetry,
    Welcome,
    decode,
    encode,
)
from shiftcraft.protocol import ProtocolError

FULL_TELEMETRY = Telemetry(
    seq=7,
    t=1_700_000_000.5,
    mode="remote",
    node="edge-1",
    fps=29.5,
    frame_ms=(33.0, 41.0, 55.5),
    rtt_sim_ms=21.0,
    rtt_node_ms=14.5,
    rss_bytes=1_070_000_000,
    rx_bytes_per_s=290_000.0,
    tx_bytes_per_s=9_000.0,
    cpu=0.25,
    battery_level=0.42,
    battery_charging=False,
    battery_power_w=2.2,
    stream_bitrate_bps=2_000_000.0,
    downlink_bps=7.21e6,
    probes=[("cloud-1", 88.0)],
)

EXAMPLES = [
    Register(version=1, role="client", name="alice", token="t0k"),
    Register(
        version=1,
        role="render-node",
        name="edge-1",
        location="edge",
        capacity=8,
        url="ws://10.0.0.2:8770/session",
        cost=0.5,
    ),
    FULL_TELEMETRY,
    Telemetry(seq=1, t=0.0, mode="local", node="device", fps=60.0, frame_ms=(16.0, 18.0, 20.0)),
    NodeStatus(t=5.0, sessions=2, capacity=8, encode_ms=4.3, fps=30.0, players=["alice", "bob"]),
    MigrationReport(
        decision=3, outcome="ok", from_node="device", to_node="edge-1", gap_ms=12.0, duration_ms=800
    ),
    Welcome(version=1, name="alice", role="client", interval_s=1.0, policy="threshold"),
    Migrate(decision=3, mode="remote", node="edge-1", url="ws://e/session", location="edge"),
    Error(code="bad_field", message="nope", fatal=True),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: m.TYPE)
def test_round_trip(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    back = decode(data)
    assert back == msg


def test_every_type_is_registered_once() -> None:
    assert set(MESSAGES) == {
        "register",
        "telemetry",
        "node_status",
        "migration_report",
        "welcome",
        "migrate",
        "error",
    }


def test_unknown_values_are_left_out_on_the_wire() -> None:
    minimal = EXAMPLES[3]
    wire = msgpack.unpackb(encode(minimal))
    assert set(wire) == {"type", "seq", "t", "mode", "node", "fps", "frame_ms"}
    # nil is accepted as "unknown" too.
    back = decode(msgpack.packb({**wire, "battery_level": None, "cpu": None}))
    assert isinstance(back, Telemetry) and back.battery_level is None and back.cpu is None


def raw(**fields: object) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


TELEMETRY = {
    "type": "telemetry",
    "seq": 1,
    "t": 1.0,
    "mode": "local",
    "node": "device",
    "fps": 30.0,
    "frame_ms": [33.0, 40.0, 50.0],
}


@pytest.mark.parametrize(
    ("frame", "code", "text"),
    [
        (raw(**{**TELEMETRY, "cpu": 1.5}), "bad_field", "'cpu': 1.5 outside [0.0, 1.0]"),
        (raw(**{**TELEMETRY, "battery_level": "full"}), "bad_field", "expected number"),
        (raw(**{**TELEMETRY, "battery_charging": 1}), "bad_field", "expected bool"),
        (raw(**{**TELEMETRY, "fps": -1}), "bad_field", "'fps'"),
        (raw(**{**TELEMETRY, "fps": float("nan")}), "bad_field", "'fps'"),
        (raw(**{**TELEMETRY, "frame_ms": [1, 2]}), "bad_field", "expected array of 3"),
        (raw(**{**TELEMETRY, "mode": "hybrid"}), "bad_field", "not one of local, remote"),
        (raw(**{**TELEMETRY, "node": "../etc"}), "bad_field", "does not match"),
        (raw(**{**TELEMETRY, "probes": [["edge-1"]]}), "bad_field", "probes"),
        (raw(**{**TELEMETRY, "probes": [["e", 1.0]] * 33}), "bad_field", "more than 32"),
        (raw(**{**TELEMETRY, "extra": 1}), "bad_field", "unknown field(s) extra"),
        (raw(**{k: v for k, v in TELEMETRY.items() if k != "fps"}), "bad_field", "missing"),
        (raw(type="register", version=1, role="admin", name="x"), "bad_field", "role"),
        (raw(type="migrate", decision=0, mode="local", node="device"), "bad_field", "decision"),
        (raw(type="hello"), "unknown_type", "unknown message type 'hello'"),
        (msgpack.packb([1, 2, 3]), "malformed", "msgpack map"),
        (b"\xc1\xc1\xc1", "malformed", "not a msgpack frame"),
        (b"\x00" * (MAX_FRAME_BYTES + 1), "too_large", "exceeds"),
    ],
)
def test_bad_frames_raise_clear_errors(frame: bytes, code: str, text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert info.value.code == code
    assert text in info.value.message


def test_text_frames_are_refused() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        decode('{"type": "telemetry"}')


def test_version_constant() -> None:
    assert SCHED_PROTOCOL_VERSION == 1
    assert encode(FULL_TELEMETRY).__len__() < 512  # a sample a second costs nothing
