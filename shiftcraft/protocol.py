"""Every message of the sim protocol, defined once and validated on receipt.

Frames are binary websocket messages holding one msgpack map. The key ``type``
names the message type; the other keys are the dataclass fields below.
Optional fields (those with defaults) may be left out on the wire — the
encoder leaves out empty lists to keep per-tick updates small. Unknown keys,
missing required keys, wrong types, out-of-range values and oversized
containers raise :class:`ProtocolError` with a stable ``code`` that the
server sends back in an ``error`` message. ``docs/protocol.md`` documents
the same messages for people.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import msgpack

PROTOCOL_VERSION = 1
MAX_CLIENT_FRAME_BYTES = 16 * 1024  # client -> server; larger frames are refused
MAX_SERVER_FRAME_BYTES = 8 * 1024 * 1024  # server -> client (many sections at once)
MAX_INPUT_FRAMES = 32
MAX_VIEW_CENTERS = 64
MAX_DT = 0.25  # seconds one input frame may cover
ROLES = ("player", "bot", "render-node")
EDIT_ACTIONS = ("place", "break", "ignite")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")

# Input frame flag bits.
FLAG_JUMP = 1
FLAG_SNEAK = 2
FLAG_FLY = 4
FLAG_SPRINT = 8


class ProtocolError(ValueError):
    """A frame that breaks the protocol. ``code`` is sent back to the peer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- field checks --------------------------------------------------------------
Check = Callable[[str, Any], Any]


def _bad(name: str, what: str) -> ProtocolError:
    return ProtocolError("bad_field", f"field {name!r}: {what}")


def int_in(lo: int, hi: int) -> Check:
    def check(name: str, v: Any) -> int:
        if type(v) is not int:
            raise _bad(name, f"expected int, got {type(v).__name__}")
        if not lo <= v <= hi:
            raise _bad(name, f"{v} outside [{lo}, {hi}]")
        return v

    return check


def float_in(lo: float, hi: float) -> Check:
    def check(name: str, v: Any) -> float:
        if type(v) not in (float, int):
            raise _bad(name, f"expected number, got {type(v).__name__}")
        v = float(v)
        if not (math.isfinite(v) and lo <= v <= hi):
            raise _bad(name, f"{v} outside [{lo}, {hi}]")
        return v

    return check


def boolean(name: str, v: Any) -> bool:
    if type(v) is not bool:
        raise _bad(name, f"expected bool, got {type(v).__name__}")
    return v


def text(max_len: int, pattern: re.Pattern[str] | None = None) -> Check:
    def check(name: str, v: Any) -> str:
        if type(v) is not str:
            raise _bad(name, f"expected str, got {type(v).__name__}")
        if len(v) > max_len:
            raise _bad(name, f"longer than {max_len}")
        if pattern is not None and not pattern.match(v):
            raise _bad(name, f"{v!r} does not match {pattern.pattern}")
        return v

    return check


def one_of(*choices: str) -> Check:
    def check(name: str, v: Any) -> str:
        if v not in choices:
            raise _bad(name, f"{v!r} not one of {', '.join(choices)}")
        return v

    return check


def blob(max_len: int) -> Check:
    def check(name: str, v: Any) -> bytes:
        if type(v) is not bytes:
            raise _bad(name, f"expected bytes, got {type(v).__name__}")
        if len(v) > max_len:
            raise _bad(name, f"longer than {max_len} bytes")
        return v

    return check


def _locate(name: str, values: Any, checks: Any) -> None:
    """Re-run failing element checks with indexed names, for a precise error.

    The happy path passes the bare field name down, so validating a frame
    never formats a string per element; only a frame that fails pays for it.
    """
    for i, (c, x) in enumerate(zip(checks, values, strict=True)):
        c(f"{name}[{i}]", x)


def tuple_of(*items: Check) -> Check:
    """A fixed-length array whose elements have their own checks."""

    def check(name: str, v: Any) -> tuple:
        if type(v) not in (list, tuple) or len(v) != len(items):
            raise _bad(name, f"expected array of {len(items)}")
        try:
            return tuple([c(name, x) for c, x in zip(items, v, strict=True)])
        except ProtocolError:
            _locate(name, v, items)
            raise

    return check


def list_of(item: Check, max_len: int) -> Check:
    def check(name: str, v: Any) -> list:
        if type(v) not in (list, tuple):
            raise _bad(name, f"expected array, got {type(v).__name__}")
        if len(v) > max_len:
            raise _bad(name, f"more than {max_len} items")
        try:
            return [item(name, x) for x in v]
        except ProtocolError:
            _locate(name, v, [item] * len(v))
            raise

    return check


def anything(name: str, v: Any) -> Any:
    return v


# Common shapes.
I32 = int_in(-(2**31), 2**31 - 1)
U32 = int_in(0, 2**32 - 1)
U8 = int_in(0, 255)
COORD = float_in(-1e8, 1e8)
VEC3 = tuple_of(COORD, COORD, COORD)
ANGLE = float_in(-1e4, 1e4)
BLOCK_XYZ = tuple_of(I32, I32, I32)


def spec(check: Check, default: Any = MISSING) -> Any:
    """A dataclass field with its wire check (and a default if optional)."""
    if default is MISSING:
        return field(metadata={"check": check})
    if isinstance(default, list):
        return field(default_factory=list, metadata={"check": check})
    return field(default=default, metadata={"check": check})


# -- messages ------------------------------------------------------------------
@dataclass(slots=True)
class Message:
    TYPE: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.TYPE}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.default_factory is not MISSING and not v:
                continue  # empty optional list: leave it out
            d[f.name] = v
        return d


# Client -> server ---------------------------------------------------------------
@dataclass(slots=True)
class Hello(Message):
    """First message on every connection."""

    TYPE: ClassVar[str] = "hello"
    version: int = spec(U32)
    role: str = spec(one_of(*ROLES))
    name: str = spec(text(32, NAME_RE))
    token: str = spec(text(512), "")


# One input frame: [seq, dt, forward, strafe, yaw, pitch, flags].
INPUT_FRAME = tuple_of(
    U32,
    float_in(0.0, MAX_DT),
    float_in(-1.0, 1.0),
    float_in(-1.0, 1.0),
    ANGLE,
    float_in(-math.pi / 2, math.pi / 2),
    int_in(0, 15),
)


@dataclass(slots=True)
class Input(Message):
    """Movement intents, each frame with its own sequence number (increasing)."""

    TYPE: ClassVar[str] = "input"
    frames: list = spec(list_of(INPUT_FRAME, MAX_INPUT_FRAMES))


@dataclass(slots=True)
class Edit(Message):
    """An edit request. ``block`` is the id to place (ignored for break/ignite)."""

    TYPE: ClassVar[str] = "edit"
    seq: int = spec(U32)
    action: str = spec(one_of(*EDIT_ACTIONS))
    x: int = spec(I32)
    y: int = spec(I32)
    z: int = spec(I32)
    block: int = spec(U8, 0)


@dataclass(slots=True)
class View(Message):
    """Render nodes (and spectators) set the centres of their interest."""

    TYPE: ClassVar[str] = "view"
    centers: list = spec(list_of(VEC3, MAX_VIEW_CENTERS))
    distance: int = spec(int_in(16, 512), 96)


@dataclass(slots=True)
class Ping(Message):
    TYPE: ClassVar[str] = "ping"
    id: int = spec(U32)
    t: float = spec(float_in(-1e12, 1e12), 0.0)


# Server -> client ---------------------------------------------------------------
@dataclass(slots=True)
class Welcome(Message):
    TYPE: ClassVar[str] = "welcome"
    version: int = spec(U32)
    player_id: int = spec(U32)
    name: str = spec(text(32))
    tick_rate: int = spec(int_in(1, 1000))
    seed: int = spec(int_in(-(2**63), 2**63 - 1))
    view_distance: int = spec(int_in(0, 4096))
    pos: tuple = spec(VEC3)
    yaw: float = spec(ANGLE, 0.0)
    pitch: float = spec(ANGLE, 0.0)
    flying: bool = spec(boolean, False)


@dataclass(slots=True)
class Error(Message):
    TYPE: ClassVar[str] = "error"
    code: str = spec(text(64))
    message: str = spec(text(1024))
    fatal: bool = spec(boolean, False)


@dataclass(slots=True)
class Pong(Message):
    TYPE: ClassVar[str] = "pong"
    id: int = spec(U32)
    t: float = spec(float_in(-1e12, 1e12), 0.0)
    server_time: float = spec(float_in(0, 1e12), 0.0)


# An edit result: [seq, ok, x, y, z, block_now, reason] — block_now is the true block.
EDIT_RESULT = tuple_of(U32, boolean, I32, I32, I32, U8, text(32))
# A spawned entity: [id, name, x, y, z, yaw, pitch]; a moved one: [id, x, y, z, yaw, pitch].
ENTITY_SPAWN = tuple_of(U32, text(32), COORD, COORD, COORD, ANGLE, ANGLE)
ENTITY_MOVE = tuple_of(U32, COORD, COORD, COORD, ANGLE, ANGLE)
SECTION = tuple_of(I32, I32, I32, blob(64 * 1024))
BLOCK_DELTA = tuple_of(I32, I32, I32, U8)
BIG = 1 << 20


@dataclass(slots=True)
class Update(Message):
    """Everything one subscriber gets in one tick, batched."""

    TYPE: ClassVar[str] = "update"
    tick: int = spec(int_in(0, 2**63 - 1))
    ack: int = spec(int_in(-1, 2**32 - 1), -1)  # last input seq applied
    pos: tuple = spec(VEC3, (0.0, 0.0, 0.0))
    vel: tuple = spec(VEC3, (0.0, 0.0, 0.0))
    on_ground: bool = spec(boolean, False)
    flying: bool = spec(boolean, False)
    sections: list = spec(list_of(SECTION, BIG), [])
    unload: list = spec(list_of(BLOCK_XYZ, BIG), [])
    blocks: list = spec(list_of(BLOCK_DELTA, BIG), [])
    edits: list = spec(list_of(EDIT_RESULT, BIG), [])
    spawn: list = spec(list_of(ENTITY_SPAWN, BIG), [])
    entities: list = spec(list_of(ENTITY_MOVE, BIG), [])
    gone: list = spec(list_of(U32, BIG), [])


MESSAGES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (Hello, Input, Edit, View, Ping, Welcome, Error, Pong, Update)
}

# -- encoding ------------------------------------------------------------------
M = TypeVar("M")
# Shared by every protocol of the project (the sim's here, the scheduler's
# `scheduler.messages`, the render node's `shiftcraft.stream_protocol`): a
# message is a dataclass whose fields carry their `Check` in ``spec``.
_FIELDS: dict[type, list[tuple[str, Check, bool]]] = {}


def _field_table(cls: type) -> list[tuple[str, Check, bool]]:
    table = _FIELDS.get(cls)
    if table is None:
        table = [
            (
                f.name,
                f.metadata["check"],
                f.default is MISSING and f.default_factory is MISSING,
            )
            for f in fields(cls)
        ]
        _FIELDS[cls] = table
    return table


def encode(msg: Message) -> bytes:
    return msgpack.packb(msg.to_wire(), use_bin_type=True)


def from_wire(obj: Any) -> Message:
    """Validate an unpacked msgpack object and build its message."""
    return build_message(obj, MESSAGES, "a frame must be a msgpack map")


def build_message(obj: Any, table: dict[str, type[M]], not_a_map: str) -> M:
    """Validate a decoded map against the message type its ``type`` names in
    ``table`` and build it; `ProtocolError` (``not_a_map`` if it is no map)."""
    if not isinstance(obj, dict):
        raise ProtocolError("malformed", not_a_map)
    t = obj.get("type")
    cls = table.get(t) if isinstance(t, str) else None
    if cls is None:
        raise ProtocolError("unknown_type", f"unknown message type {t!r}")
    kwargs: dict[str, Any] = {}
    seen = 1
    for name, check, required in _field_table(cls):
        if name in obj:
            kwargs[name] = check(name, obj[name])
            seen += 1
        elif required:
            raise ProtocolError("bad_field", f"{t}: missing field {name!r}")
    if seen != len(obj):
        known = {name for name, _, _ in _field_table(cls)} | {"type"}
        extra = sorted(str(k) for k in obj if k not in known)
        raise ProtocolError("bad_field", f"{t}: unknown field(s) {', '.join(extra)}")
    return cls(**kwargs)


def unpack_frame(data: Any, max_bytes: int) -> Any:
    """One binary msgpack frame -> the object in it, or `ProtocolError`."""
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError("malformed", "frames must be binary (msgpack), not text")
    if len(data) > max_bytes:
        raise ProtocolError("too_large", f"frame of {len(data)} bytes exceeds {max_bytes}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ProtocolError(
            "malformed", f"not a msgpack frame: {exc or type(exc).__name__}"
        ) from None


def decode(data: bytes, max_bytes: int = MAX_CLIENT_FRAME_BYTES) -> Message:
    """Bytes of one frame -> a validated message, or `ProtocolError`."""
    return from_wire(unpack_frame(data, max_bytes))
