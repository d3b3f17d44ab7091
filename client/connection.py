"""`SimConnection`: the one asyncio client of the sim protocol.

Every program that talks to the sim server — the game client, render nodes,
bots, tests, benchmarks — goes through this class, so the handshake, the
error mapping, validation of what the server sends, traffic counters and
clean shutdown are written once.

Shape of a session::

    conn = await SimConnection.connect("ws://127.0.0.1:8765", "alice", token=...)
    seqs = InputSequencer()
    await conn.send_inputs([seqs.frame(0.05, forward=1.0, yaw=0.3)])
    async for msg in conn:          # or pass on_message= to get a callback
        ...
    await conn.close()

One reader task per connection receives frames, validates them
(`shiftcraft.protocol`) and resolves pings itself, so `ping()` works whether
the caller iterates messages or uses a callback. Messages are delivered in
order either to ``on_message`` (synchronously, inside the reader: cheapest,
what bots use) or to a bounded inbox read by `recv()` / ``async for``. A full
inbox stops the reader, which stops reading the socket: a consumer that
falls behind slows its own connection (TCP backpressure) instead of growing
memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from shiftcraft import protocol
from shiftcraft.protocol import (
    FLAG_FLY,
    FLAG_JUMP,
    FLAG_SNEAK,
    FLAG_SPRINT,
    MAX_DT,
    MAX_INPUT_FRAMES,
    MAX_SERVER_FRAME_BYTES,
    PROTOCOL_VERSION,
    Edit,
    Error,
    Hello,
    Input,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Update,
    View,
    Welcome,
)
from world.physics import MoveInput

__all__ = [
    "ConnectError",
    "ConnectionClosed",
    "InputSequencer",
    "LazyUpdate",
    "SimConnection",
    "SimError",
    "SkippedFieldError",
    "Traffic",
    "decode_server_frame",
]

MessageHandler = Callable[[Message], None]


# -- errors --------------------------------------------------------------------
class SimError(Exception):
    """Base of the errors this module raises."""


class ConnectError(SimError):
    """The handshake failed. ``code`` says why, machine-readably:

    ``bad_url``, ``refused``, ``network``, ``timeout``, ``handshake`` (HTTP
    level), ``closed`` (closed before welcome), ``protocol`` (an invalid
    reply), ``version_mismatch`` (welcome of another version), or the code of
    the server's own ``error`` message (e.g. a wrong token).
    """

    def __init__(self, code: str, message: str, url: str = "") -> None:
        super().__init__(f"{code}: {message}" + (f" ({url})" if url else ""))
        self.code = code
        self.message = message
        self.url = url


class ConnectionClosed(SimError):
    """The connection is closed; ``error`` is the server's last fatal error."""

    def __init__(self, code: int | None, reason: str, error: Error | None = None) -> None:
        why = f"{error.code}: {error.message}" if error is not None else reason or "no reason"
        super().__init__(f"connection closed (code {code}): {why}")
        self.code = code
        self.reason = reason
        self.error = error


# -- decoding --------------------------------------------------------------------
# Update fields that may hold many items. Validating 100 entity moves costs
# ~0.3 ms in Python, which a bot process with 100 connections at 20 Hz cannot
# afford; lazy decoding validates each of these lists on first access instead,
# and fields a consumer declares it never reads can be skipped at unpacking.
_LAZY_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    f.name: f.metadata["check"]
    for f in dataclasses.fields(Update)
    if f.name in ("sections", "unload", "blocks", "edits", "spawn", "entities", "gone")
}
_UNSET = object()
_SKIPPED = object()
_UPDATE_SLOTS = [Update.__dict__[f.name] for f in dataclasses.fields(Update)]


class SkippedFieldError(LookupError):
    """A field the connection was told to skip (``skip=``) was read."""


# Fast paths for the hot lists. They accept only items that are plainly valid
# under the protocol's own bounds and return None otherwise, so the protocol's
# check then runs and gives the exact verdict and message (the result is the
# same either way; tests/test_connection.py cross-checks the two).
_I32 = (-(2**31), 2**31 - 1)
_U32_MAX = 2**32 - 1
_COORD = 1e8
_ANGLE = 1e4


def _fast_block_deltas(raw: Any) -> list | None:
    if type(raw) is not list or len(raw) > protocol.BIG:
        return None
    lo, hi = _I32
    out = []
    for d in raw:
        if type(d) is not list or len(d) != 4:
            return None
        x, y, z, b = d
        if not (
            type(x) is int
            and type(y) is int
            and type(z) is int
            and type(b) is int
            and lo <= x <= hi
            and lo <= y <= hi
            and lo <= z <= hi
            and 0 <= b <= 255
        ):
            return None
        out.append((x, y, z, b))
    return out


def _fast_entity_moves(raw: Any) -> list | None:
    if type(raw) is not list or len(raw) > protocol.BIG:
        return None
    out = []
    for e in raw:
        if type(e) is not list or len(e) != 6:
            return None
        eid, x, y, z, yaw, pitch = e
        # NaN fails every comparison and inf exceeds the bounds: both fall through.
        if not (
            type(eid) is int
            and 0 <= eid <= _U32_MAX
            and type(x) is float
            and type(y) is float
            and type(z) is float
            and type(yaw) is float
            and type(pitch) is float
            and -_COORD <= x <= _COORD
            and -_COORD <= y <= _COORD
            and -_COORD <= z <= _COORD
            and -_ANGLE <= yaw <= _ANGLE
            and -_ANGLE <= pitch <= _ANGLE
        ):
            return None
        out.append((eid, x, y, z, yaw, pitch))
    return out


_FAST_CHECKS: dict[str, Callable[[Any], list | None]] = {
    "blocks": _fast_block_deltas,
    "entities": _fast_entity_moves,
}


def _lazy_property(name: str, check: Callable[[str, Any], Any]) -> property:
    slot = Update.__dict__[name]  # the parent's slot descriptor holds the validated value
    fast = _FAST_CHECKS.get(name)

    def get(self: LazyUpdate) -> Any:
        raw = self._raw.pop(name, _UNSET)
        if raw is not _UNSET:
            if raw is _SKIPPED:
                self._raw[name] = raw
                raise SkippedFieldError(f"update field {name!r} was skipped when decoding")
            value = fast(raw) if fast is not None else None
            slot.__set__(self, value if value is not None else check(name, raw))
        return slot.__get__(self)

    def set_(self: LazyUpdate, value: Any) -> None:
        self._raw.pop(name, None)
        slot.__set__(self, value)

    return property(get, set_, doc=f"``{name}``, validated on first access")


class LazyUpdate(Update):
    """An `Update` whose list fields are validated on first access.

    Scalars, required fields, the message type and unknown keys are checked
    on receipt as usual; a list the consumer never reads (entities, for a bot
    that ignores other players) is never walked. Reading a malformed list
    raises `ProtocolError` at that point; reading a skipped one raises
    `SkippedFieldError`. Being a subclass, it passes ``isinstance(msg, Update)``.
    """

    __slots__ = ("_raw",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._raw: dict[str, Any] = {}
        Update.__init__(self, *args, **kwargs)

    @classmethod
    def _adopt(cls, eager: Update, raw: dict[str, Any]) -> LazyUpdate:
        obj = cls.__new__(cls)
        obj._raw = raw
        for slot in _UPDATE_SLOTS:
            slot.__set__(obj, slot.__get__(eager))
        return obj

    @property
    def section_count(self) -> int:
        """How many sections came, without validating them (cheap progress checks)."""
        raw = self._raw.get("sections")
        return len(raw) if isinstance(raw, list | tuple) else len(self.sections)


for _name, _check in _LAZY_FIELDS.items():
    setattr(LazyUpdate, _name, _lazy_property(_name, _check))
del _name, _check


def _unpack(data: bytes, skip: frozenset[str]) -> Any:
    if not skip:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    # Walk the top-level map by hand so skipped values are parsed (the frame
    # must still be well-formed msgpack) but never built as Python objects.
    up = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max(len(data), 1))
    up.feed(data)
    try:
        n = up.read_map_header()
    except (ValueError, msgpack.UnpackException):
        return msgpack.unpackb(data, raw=False, strict_map_key=True)  # not a map: its error
    obj: dict[Any, Any] = {}
    for _ in range(n):
        key = up.unpack()
        if type(key) is str and key in skip:
            up.skip()
            obj[key] = _SKIPPED
        else:
            obj[key] = up.unpack()
    if up.tell() != len(data):
        raise msgpack.ExtraData(obj, b"")
    return obj


def decode_server_frame(
    data: bytes, *, lazy: bool = False, skip: frozenset[str] = frozenset()
) -> Message:
    """Decode one server frame.

    ``lazy`` defers validating the big lists of updates to first access;
    ``skip`` (lazy only) names update lists never to build at all.
    """
    if not lazy:
        return protocol.decode(data, max_bytes=MAX_SERVER_FRAME_BYTES)
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError("malformed", "frames must be binary")
    if len(data) > MAX_SERVER_FRAME_BYTES:
        raise ProtocolError(
            "too_large", f"frame of {len(data)} bytes exceeds {MAX_SERVER_FRAME_BYTES}"
        )
    try:
        obj = _unpack(data, skip)
    except (ValueError, msgpack.UnpackException) as exc:  # incl. OutOfData, ExtraData
        raise ProtocolError(
            "malformed", f"not a msgpack frame: {str(exc) or type(exc).__name__}"
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError("malformed", "a frame must be a msgpack map")
    raw = {name: obj.pop(name) for name in _LAZY_FIELDS if name in obj}
    # The protocol module validates everything else (type key, scalars,
    # unknown keys), so this stays in step with it.
    msg = protocol.from_wire(obj)
    if type(msg) is Update:
        return LazyUpdate._adopt(msg, raw)
    if raw:  # not an update: let the strict path judge the whole frame
        return protocol.decode(data, max_bytes=MAX_SERVER_FRAME_BYTES)
    return msg


# -- helpers ----------------------------------------------------------------------
@dataclass(slots=True)
class Traffic:
    """Application payload counters (websocket framing not included)."""

    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0

    def add(self, other: Traffic) -> None:
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.messages_in += other.messages_in
        self.messages_out += other.messages_out


class InputSequencer:
    """Numbers input frames and keeps the unacknowledged ones for reconciliation.

    A predicting client replays ``pending`` on top of each authoritative
    position; ``ack`` (from ``Update.ack``) drops what the server has applied.
    """

    def __init__(self, start: int = 0, keep: int = 256) -> None:
        self.next_seq = start
        self.keep = keep
        self.pending: deque[list] = deque()

    def frame(
        self,
        dt: float,
        forward: float = 0.0,
        strafe: float = 0.0,
        yaw: float = 0.0,
        pitch: float = 0.0,
        *,
        jump: bool = False,
        sneak: bool = False,
        fly: bool = False,
        sprint: bool = False,
        flags: int | None = None,
    ) -> list:
        """The next frame ``[seq, dt, forward, strafe, yaw, pitch, flags]``, clamped to range."""
        if flags is None:
            flags = (
                (FLAG_JUMP if jump else 0)
                | (FLAG_SNEAK if sneak else 0)
                | (FLAG_FLY if fly else 0)
                | (FLAG_SPRINT if sprint else 0)
            )
        half_pi = math.pi / 2
        frame = [
            self.next_seq,
            min(max(float(dt), 0.0), MAX_DT),
            min(max(float(forward), -1.0), 1.0),
            min(max(float(strafe), -1.0), 1.0),
            float(yaw),
            min(max(float(pitch), -half_pi), half_pi),
            flags,
        ]
        self.next_seq = (self.next_seq + 1) & 0xFFFFFFFF
        self.pending.append(frame)
        if len(self.pending) > self.keep:  # a server that never acks must not grow us
            self.pending.popleft()
        return frame

    def frame_of(self, inp: MoveInput, dt: float) -> list:
        """The next frame for a `world.physics.MoveInput` (what a predicting client steps)."""
        return self.frame(dt, inp.forward, inp.strafe, inp.yaw, inp.pitch, flags=inp.flags)

    def ack(self, seq: int) -> None:
        while self.pending and self.pending[0][0] <= seq:
            self.pending.popleft()


# -- the connection ------------------------------------------------------------------
class SimConnection:
    """A connected, welcomed session. Create it with `SimConnection.connect`."""

    def __init__(
        self,
        ws: ClientConnection,
        welcome: Welcome,
        url: str,
        *,
        lazy: bool,
        skip: frozenset[str],
        on_message: MessageHandler | None,
        inbox_size: int,
        traffic: Traffic,
    ) -> None:
        self.ws = ws
        self.welcome = welcome
        self.url = url
        self.traffic = traffic
        self.last_error: Error | None = None  # the latest error message the server sent
        self.handler_error: BaseException | None = None  # on_message raised this
        self._lazy = lazy or bool(skip)
        self._skip = skip
        self._on_message = on_message
        self._inbox: deque[Message] = deque()
        self._inbox_size = inbox_size
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._space_waiter: asyncio.Future[None] | None = None
        self._edit_seq = itertools.count()
        self._ping_ids = itertools.count(1)
        self._pings: dict[int, tuple[asyncio.Future[float], float]] = {}
        self._closed = asyncio.Event()
        self._close_exc: ConnectionClosed | None = None
        self._reader = asyncio.create_task(self._read_loop(), name=f"sim-reader-{welcome.name}")

    # -- handshake ---------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        role: str = "player",
        token: str = "",
        timeout: float = 10.0,
        *,
        version: int = PROTOCOL_VERSION,
        lazy: bool = False,
        skip: Iterable[str] = (),
        on_message: MessageHandler | None = None,
        inbox_size: int = 1024,
    ) -> SimConnection:
        """Open the websocket, say hello, wait for welcome. Raises `ConnectError`.

        ``lazy`` validates update lists on first access; ``skip`` names update
        lists this consumer never reads (e.g. ``("spawn", "entities", "gone")``
        for a bot that ignores other players): they are not even built, and
        reading one raises `SkippedFieldError`. Both cut client CPU a lot.
        """
        skip = frozenset(skip)
        if not skip <= _LAZY_FIELDS.keys():
            raise ValueError(f"only update lists can be skipped: {sorted(_LAZY_FIELDS)}")
        traffic = Traffic()
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(timeout):
                ws = await ws_connect(
                    url,
                    max_size=MAX_SERVER_FRAME_BYTES,
                    # Sections are zlib'd already; per-message deflate would
                    # only burn server CPU on every tick's update.
                    compression=None,
                    # Never route a sim connection through an HTTP proxy
                    # from the environment (loopback benches, LAN servers).
                    proxy=None,
                    open_timeout=None,  # the outer timeout covers everything
                    close_timeout=2.0,
                    # The sim protocol has its own ping; websocket keepalive
                    # would add a timer per connection for nothing.
                    ping_interval=None,
                )
                hello = protocol.encode(Hello(version=version, role=role, name=name, token=token))
                await ws.send(hello)
                traffic.bytes_out += len(hello)
                traffic.messages_out += 1
                welcome = await cls._await_welcome(ws, traffic, url, version)
        except ConnectError:
            await _abort(ws)
            raise
        except TimeoutError:
            await _abort(ws)
            raise ConnectError("timeout", f"no welcome within {timeout:g} s", url) from None
        except websockets.InvalidURI as exc:
            raise ConnectError("bad_url", str(exc), url) from None
        except websockets.InvalidStatus as exc:
            raise ConnectError(
                "handshake", f"HTTP {exc.response.status_code} instead of a websocket", url
            ) from None
        except websockets.InvalidHandshake as exc:
            raise ConnectError("handshake", str(exc) or type(exc).__name__, url) from None
        except ConnectionRefusedError as exc:
            raise ConnectError("refused", exc.strerror or str(exc), url) from None
        except OSError as exc:
            raise ConnectError("network", exc.strerror or str(exc), url) from None
        except BaseException:
            # Cancelled (or a bug): never leave a half-open socket behind.
            if ws is not None and ws.transport is not None:
                ws.transport.abort()
            raise
        return cls(
            ws,
            welcome,
            url,
            lazy=lazy,
            skip=skip,
            on_message=on_message,
            inbox_size=inbox_size,
            traffic=traffic,
        )

    @staticmethod
    async def _await_welcome(
        ws: ClientConnection, traffic: Traffic, url: str, version: int
    ) -> Welcome:
        try:
            data = await ws.recv()
        except websockets.ConnectionClosed as exc:
            raise ConnectError(
                "closed", f"server closed the connection before welcome ({_close_text(exc)})", url
            ) from None
        traffic.bytes_in += len(data)
        traffic.messages_in += 1
        try:
            msg = protocol.decode(data, max_bytes=MAX_SERVER_FRAME_BYTES)
        except ProtocolError as exc:
            raise ConnectError("protocol", f"invalid reply to hello: {exc.message}", url) from None
        if isinstance(msg, Error):
            raise ConnectError(msg.code, msg.message, url)
        if not isinstance(msg, Welcome):
            raise ConnectError("protocol", f"expected welcome, got {msg.TYPE!r}", url)
        if msg.version != version:
            raise ConnectError(
                "version_mismatch", f"server speaks version {msg.version}, we speak {version}", url
            )
        return msg

    # -- state -----------------------------------------------------------------------
    @property
    def player_id(self) -> int:
        return self.welcome.player_id

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def close_exception(self) -> ConnectionClosed | None:
        """Why the connection ended (None while open)."""
        return self._close_exc

    async def wait_closed(self) -> ConnectionClosed:
        await self._closed.wait()
        assert self._close_exc is not None
        return self._close_exc

    # -- sending ------------------------------------------------------------------------
    async def send(self, msg: Message) -> None:
        await self.send_raw(protocol.encode(msg))

    async def send_raw(self, data: bytes) -> None:
        """Send pre-encoded bytes (tests use it for malformed frames)."""
        if self._closed.is_set():
            raise self._close_exc  # type: ignore[misc]
        try:
            await self.ws.send(data)
        except websockets.ConnectionClosed as exc:
            self._mark_closed(exc)
            raise self._close_exc from None  # type: ignore[misc]
        self.traffic.bytes_out += len(data)
        self.traffic.messages_out += 1

    async def send_inputs(self, frames: Sequence[Sequence[Any]]) -> None:
        """Send frames ``[seq, dt, forward, strafe, yaw, pitch, flags]`` (see `InputSequencer`)."""
        frames = list(frames)
        for i in range(0, len(frames), MAX_INPUT_FRAMES):
            await self.send(Input(frames=frames[i : i + MAX_INPUT_FRAMES]))

    async def send_edit(self, action: str, x: int, y: int, z: int, block: int = 0) -> int:
        """Request an edit; returns its seq, echoed in the update's ``edits`` results."""
        seq = next(self._edit_seq) & 0xFFFFFFFF
        await self.send(Edit(seq=seq, action=action, x=x, y=y, z=z, block=block))
        return seq

    async def send_view(self, centers: Iterable[Sequence[float]], distance: int = 96) -> None:
        await self.send(View(centers=[tuple(map(float, c)) for c in centers], distance=distance))

    async def ping(self, timeout: float = 5.0) -> float:
        """Round-trip time of a protocol ping, in seconds (through the server's queue)."""
        ping_id = next(self._ping_ids) & 0xFFFFFFFF
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        sent = time.perf_counter()
        self._pings[ping_id] = (fut, sent)
        try:
            await self.send(Ping(id=ping_id, t=time.time()))
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._pings.pop(ping_id, None)

    # -- receiving --------------------------------------------------------------------
    async def recv(self) -> Message:
        """The next message, in order. Raises `ConnectionClosed` once closed and drained."""
        if self._on_message is not None:
            raise RuntimeError("messages go to on_message; recv() is not available")
        while not self._inbox:
            if self._closed.is_set():
                raise self._close_exc  # type: ignore[misc]
            self._inbox_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._inbox_waiter
            finally:
                self._inbox_waiter = None
        msg = self._inbox.popleft()
        if self._space_waiter is not None and not self._space_waiter.done():
            self._space_waiter.set_result(None)
        return msg

    def __aiter__(self) -> SimConnection:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def _read_loop(self) -> None:
        ws = self.ws
        traffic = self.traffic
        lazy = self._lazy
        skip = self._skip
        try:
            while True:
                data = await ws.recv()
                traffic.bytes_in += len(data)
                traffic.messages_in += 1
                try:
                    msg = decode_server_frame(data, lazy=lazy, skip=skip)  # type: ignore[arg-type]
                except ProtocolError as exc:
                    # A server that breaks the protocol is not to be trusted further.
                    self.last_error = Error(code=exc.code, message=exc.message, fatal=True)
                    await ws.close(1002, f"{exc.code}: {exc.message}"[:120])
                    break
                if type(msg) is Pong:
                    waiter = self._pings.get(msg.id)
                    if waiter is not None and not waiter[0].done():
                        waiter[0].set_result(time.perf_counter() - waiter[1])
                    continue
                if type(msg) is Error:
                    self.last_error = msg
                if self._on_message is not None:
                    try:
                        self._on_message(msg)
                    except Exception as exc:  # a consumer bug ends this session, visibly
                        self.handler_error = exc
                        await ws.close(1011, "client handler failed")
                        break
                    continue
                self._inbox.append(msg)
                if self._inbox_waiter is not None and not self._inbox_waiter.done():
                    self._inbox_waiter.set_result(None)
                if len(self._inbox) >= self._inbox_size:
                    self._space_waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._space_waiter
                    finally:
                        self._space_waiter = None
        except websockets.ConnectionClosed as exc:
            self._mark_closed(exc)
        finally:
            self._mark_closed(None)

    def _mark_closed(self, exc: websockets.ConnectionClosed | None) -> None:
        if self._close_exc is None:
            rcvd = exc.rcvd if exc is not None else self.ws.protocol.close_rcvd
            code = rcvd.code if rcvd is not None else self.ws.close_code
            reason = rcvd.reason if rcvd is not None else (self.ws.close_reason or "")
            fatal = self.last_error if self.last_error and self.last_error.fatal else None
            self._close_exc = ConnectionClosed(code, reason, fatal)
        if not self._closed.is_set():
            self._closed.set()
            for fut, _ in self._pings.values():
                if not fut.done():
                    fut.set_exception(self._close_exc)
                    fut.exception()  # retrieved: no "never retrieved" warning if unawaited
            if self._inbox_waiter is not None and not self._inbox_waiter.done():
                self._inbox_waiter.set_result(None)

    # -- closing ------------------------------------------------------------------------
    async def close(self) -> None:
        """Close handshake (bounded by close_timeout), then stop the reader. Idempotent."""
        try:
            await self.ws.close()
        finally:
            if not self._reader.done():
                self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            if self._close_exc is None:
                self._mark_closed(None)

    async def __aenter__(self) -> SimConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _abort(ws: ClientConnection | None) -> None:
    if ws is None:
        return
    try:
        async with asyncio.timeout(2.0):
            await ws.close()
    except (TimeoutError, OSError):
        if ws.transport is not None:
            ws.transport.abort()


def _close_text(exc: websockets.ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "no close frame"
    return f"code {rcvd.code}" + (f": {rcvd.reason}" if rcvd.reason else "")
