"""The client's link to the sim: connection state machine, send, ping, reconnect.

States (`ConnState`)::

    connecting ──welcome──▶ playing ──socket lost──▶ reconnecting ──welcome──▶ playing
        │                      │                         │  (exponential back-off)
        └─ refused, bad token,  └─ replaced, bad token ───┴──▶ failed ──retry()──▶ connecting
           version mismatch...

A first connection that fails goes to *failed* at once with a clear reason
(a person should not wait through back-off to learn their URL is wrong); a
session that was playing and lost its server retries with back-off,
forever, except for reasons that cannot heal by waiting (another client
took the name, the token is refused).

Three coroutines, run in the game's TaskGroup:

* `run_connection` — the receive task: connects, then reads messages into
  the game's inbox until the socket closes, then decides what's next;
* `run_sender` — sends the queued input frames at a fixed rate (batched:
  one message per ~33 ms instead of one per physics step), edits at once;
* `run_pinger` — one ping a second for the RTT, and detects a silent peer.

Everything the game sees comes through `drain` in the frame loop, so the
world, the prediction and the HUD are only ever touched between frames.
`latency_s` delays both directions (emulating a slow link in tests and
demos without root); every queued item is stamped with the *generation*
(connection number) it belongs to, so nothing of an old session — frames
numbered by the old sequencer, edits — ever reaches a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client.connection import (
    ConnectError,
    ConnectionClosed,
    SimConnection,
    Traffic,
)
from shiftcraft.protocol import PROTOCOL_VERSION, Error, Message, Welcome

log = logging.getLogger("shiftcraft.client")


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    PLAYING = "playing"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSED = "closed"


# Reasons waiting cannot fix: do not retry them automatically.
PERMANENT = frozenset(
    {
        "bad_url",
        "bad_token",
        "bad_version",
        "version_mismatch",
        "bad_field",
        "expected_hello",
        "protocol",
        "replaced",
        "handshake",
    }
)


def explain(code: str, message: str, url: str, name: str = "") -> str:
    """A sentence a person can act on, for a `ConnectError` code (or close reason)."""
    if code == "bad_url":
        return f"bad server URL {url!r}: {message} (expected ws://HOST:PORT)"
    if code == "refused":
        return f"connection refused by {url}: is `shiftcraft server` running there?"
    if code == "network":
        return f"cannot reach {url}: {message}"
    if code == "timeout":
        return f"no answer from {url} ({message})"
    if code == "handshake":
        return f"{url} did not accept a websocket ({message}): is it a Shiftcraft server?"
    if code == "bad_token":
        return f"the server refused the token for {name!r}: {message} (pass --token)"
    if code in ("bad_version", "version_mismatch"):
        return (
            f"protocol version mismatch: {message} "
            f"(this client speaks version {PROTOCOL_VERSION}; update client or server)"
        )
    if code == "replaced":
        return f"another client joined as {name!r}; this one was disconnected"
    if code == "bad_field":
        return f"the server refused our hello: {message}"
    if code == "closed":
        return f"the server closed the connection: {message}"
    return f"{code}: {message}"


@dataclass(slots=True)
class ConnStatus:
    state: ConnState = ConnState.CONNECTING
    code: str = ""  # why we are not playing (ConnectError code or close reason)
    message: str = ""  # for people (see `explain`)
    attempt: int = 0  # reconnect attempts since the last success
    retry_at: float | None = None  # monotonic time of the next attempt
    since: float = 0.0  # when this state began


@dataclass(slots=True)
class _Outbound:
    due: float
    generation: int
    kind: str  # "input" | "edit"
    payload: Any


@dataclass
class SessionStats:
    connects: int = 0
    disconnects: int = 0
    pings_lost: int = 0
    input_messages: int = 0
    frames_sent: int = 0
    edits_sent: int = 0
    transitions: list[tuple[float, str]] = field(default_factory=list)


class SimSession:
    def __init__(
        self,
        url: str,
        name: str,
        token: str = "",
        *,
        role: str = "player",
        latency_s: float = 0.0,
        input_hz: float = 30.0,
        ping_interval: float = 1.0,
        connect_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.5, 8.0),
        reconnect: bool = True,
        version: int = PROTOCOL_VERSION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.name = name
        self.token = token
        self.role = role
        self.latency_s = max(0.0, latency_s)
        self.input_interval = 1.0 / input_hz
        self.ping_interval = ping_interval
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.reconnect = reconnect
        self.version = version
        self.clock = clock
        self.status = ConnStatus(since=clock())
        self.stats = SessionStats()
        self.conn: SimConnection | None = None
        self.generation = 0  # number of the current (or last) connection
        self.welcome: Welcome | None = None
        self.rtt: float | None = None  # seconds, smoothed (includes emulated latency)
        self.rtt_last: float | None = None
        self._traffic_done = Traffic()  # traffic of connections already closed
        self._inbox: deque[tuple[float, int, str, Any]] = deque()
        self._out: deque[_Outbound] = deque()
        self._wake_sender = asyncio.Event()
        self._retry = asyncio.Event()
        self._stopping = False
        self._ever_connected = False

    # -- state ----------------------------------------------------------------------
    @property
    def state(self) -> ConnState:
        return self.status.state

    @property
    def playing(self) -> bool:
        return self.status.state is ConnState.PLAYING

    def _set(self, state: ConnState, code: str = "", message: str = "", **kw: Any) -> None:
        s = self.status
        if state is not s.state or code != s.code:
            self.stats.transitions.append((self.clock(), state.value))
            if state is ConnState.FAILED:
                log.warning("connection failed: %s", message or code)
            elif state is ConnState.RECONNECTING:
                log.info("reconnecting: %s", message or code)
        self.status = ConnStatus(
            state=state,
            code=code,
            message=message,
            attempt=kw.get("attempt", 0),
            retry_at=kw.get("retry_at"),
            since=self.clock(),
        )

    @property
    def traffic(self) -> Traffic:
        """Payload bytes in and out over every connection of this session."""
        t = Traffic()
        t.add(self._traffic_done)
        if self.conn is not None:
            t.add(self.conn.traffic)
        return t

    def retry(self) -> None:
        """Try again now (after a failure, or during back-off)."""
        self._retry.set()

    # -- what the game calls ------------------------------------------------------------
    def drain(self) -> list[tuple[int, str, Any]]:
        """Items due now, in order: ``(generation, "welcome"|"message", payload)``."""
        now = self.clock()
        inbox = self._inbox
        out = []
        while inbox and inbox[0][0] <= now:
            _, gen, kind, payload = inbox.popleft()
            out.append((gen, kind, payload))
        return out

    def queue_inputs(self, frames: list[list], generation: int) -> None:
        if frames and generation == self.generation and self.playing:
            self._out.append(_Outbound(self.clock() + self.latency_s, generation, "input", frames))

    def queue_edit(self, action: str, x: int, y: int, z: int, block: int, generation: int) -> bool:
        if generation != self.generation or not self.playing:
            return False
        item = (action, x, y, z, block)
        self._out.append(_Outbound(self.clock() + self.latency_s, generation, "edit", item))
        self._wake_sender.set()
        return True

    async def close(self) -> None:
        """Stop: close the connection (which ends `run_connection`)."""
        self._stopping = True
        self._retry.set()
        self._wake_sender.set()
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        if self.state is not ConnState.FAILED:
            self._set(ConnState.CLOSED)

    # -- the receive task ---------------------------------------------------------------
    async def run_connection(self, stop: asyncio.Event) -> None:
        while not (stop.is_set() or self._stopping):
            conn = await self._connect()
            if conn is None:
                if not await self._wait_retry(stop):
                    return
                continue
            try:
                await self._receive(conn)
            finally:
                self._traffic_done.add(conn.traffic)
                self.conn = None
                with contextlib.suppress(Exception):
                    await conn.close()
            if stop.is_set() or self._stopping:
                return
            self._lost(conn)

    async def _connect(self) -> SimConnection | None:
        s = self.status
        if s.state not in (ConnState.RECONNECTING,):
            self._set(ConnState.CONNECTING)
        try:
            conn = await SimConnection.connect(
                self.url,
                self.name,
                role=self.role,
                token=self.token,
                timeout=self.connect_timeout,
                version=self.version,
                lazy=True,
                inbox_size=4096,
            )
        except ConnectError as exc:
            self._failed_attempt(exc.code, exc.message)
            return None
        except (OSError, ValueError) as exc:  # e.g. a URL websockets cannot parse at all
            self._failed_attempt("bad_url", str(exc))
            return None
        if self._stopping:
            await conn.close()
            return None
        self.conn = conn
        self.generation += 1
        self.welcome = conn.welcome
        self._ever_connected = True
        self.stats.connects += 1
        self._out.clear()  # anything queued for the old session is void
        self._push("welcome", conn.welcome)
        self._set(ConnState.PLAYING)
        return conn

    def _failed_attempt(self, code: str, message: str) -> None:
        text = explain(code, message, self.url, self.name)
        if code in PERMANENT or not self._ever_connected or not self.reconnect:
            self._set(ConnState.FAILED, code, text)
            return
        attempt = self.status.attempt + 1
        lo, hi = self.backoff
        delay = min(hi, lo * 2 ** (attempt - 1))
        self._set(
            ConnState.RECONNECTING, code, text, attempt=attempt, retry_at=self.clock() + delay
        )

    def _lost(self, conn: SimConnection) -> None:
        """The socket closed while playing: decide between reconnecting and failing."""
        self.stats.disconnects += 1
        exc = conn.close_exception
        err = exc.error if exc is not None else None
        if err is not None:
            code, message = err.code, err.message
        else:
            code = "closed"
            message = (exc.reason if exc is not None and exc.reason else "") or (
                f"code {exc.code}" if exc is not None and exc.code else "connection lost"
            )
        text = explain(code, message, self.url, self.name)
        if code in PERMANENT or not self.reconnect:
            self._set(ConnState.FAILED, code, text)
            return
        # Try once at once (a restarting server is often back already), then back off.
        self._set(ConnState.RECONNECTING, code, text, attempt=0, retry_at=self.clock())

    async def _wait_retry(self, stop: asyncio.Event) -> bool:
        """Sleep until the next attempt (back-off) or a retry request; False: stop."""
        s = self.status
        timeout = (
            None if s.state is ConnState.FAILED else max(0.0, (s.retry_at or 0) - self.clock())
        )
        self._retry.clear()
        waiter = asyncio.ensure_future(self._retry.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
        if stop.is_set() or self._stopping:
            return False
        if self.status.state is ConnState.FAILED:
            # An explicit retry after a failure starts over as a fresh connect.
            self._set(ConnState.CONNECTING)
        return True

    async def _receive(self, conn: SimConnection) -> None:
        while True:
            try:
                msg = await conn.recv()
            except ConnectionClosed:
                return
            self._push("message", msg)

    def _push(self, kind: str, payload: Message) -> None:
        self._inbox.append((self.clock() + self.latency_s, self.generation, kind, payload))

    # -- the send task ----------------------------------------------------------------------
    async def run_sender(self, stop: asyncio.Event) -> None:
        """Flush queued inputs every ``input_interval``; edits as soon as they are due."""
        next_flush = self.clock()
        while not (stop.is_set() or self._stopping):
            now = self.clock()
            flush_inputs = now >= next_flush
            if flush_inputs:
                next_flush = max(next_flush + self.input_interval, now)
            await self._flush(inputs=flush_inputs)
            wait = next_flush - self.clock()
            edits = [i.due for i in self._out if i.kind == "edit"]
            if edits:
                wait = min(wait, min(edits) - self.clock())
            self._wake_sender.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait)):
                    await self._wake_sender.wait()

    async def _flush(self, inputs: bool) -> None:
        conn, out, now = self.conn, self._out, self.clock()
        if not inputs and any(i.kind == "edit" and i.due <= now for i in out):
            inputs = True  # an edit goes now, and the frames before it go first
        frames: list[list] = []
        while out and out[0].due <= now:
            item = out[0]
            if item.generation != self.generation or conn is None:
                out.popleft()
                continue
            if item.kind == "edit":
                # Frames queued before this edit go first: the server must see
                # the body where the player was when they clicked.
                if frames:
                    await self._send_frames(conn, frames)
                    frames = []
                out.popleft()
                try:
                    await conn.send_edit(*item.payload)
                except ConnectionClosed:
                    return
                self.stats.edits_sent += 1
                continue
            if not inputs:
                break  # inputs wait for the next flush tick (batching)
            out.popleft()
            frames.extend(item.payload)
        if frames and conn is not None:
            await self._send_frames(conn, frames)

    async def _send_frames(self, conn: SimConnection, frames: list[list]) -> None:
        try:
            await conn.send_inputs(frames)
        except ConnectionClosed:
            return
        self.stats.input_messages += 1
        self.stats.frames_sent += len(frames)

    # -- the ping task ------------------------------------------------------------------------
    async def run_pinger(self, stop: asyncio.Event, lost_after: int = 3) -> None:
        """Ping every ``ping_interval``; ``lost_after`` unanswered in a row close the socket
        (a peer that vanished without a TCP reset would otherwise hang us forever)."""
        misses = 0
        while not (stop.is_set() or self._stopping):
            conn = self.conn
            if conn is not None and not conn.closed:
                try:
                    rtt = await conn.ping(timeout=max(2.0, 2 * self.ping_interval))
                except (TimeoutError, ConnectionClosed):
                    if conn is self.conn and not conn.closed:
                        misses += 1
                        self.stats.pings_lost += 1
                        if misses >= lost_after:
                            misses = 0
                            with contextlib.suppress(Exception):
                                await conn.close()
                else:
                    misses = 0
                    rtt += 2 * self.latency_s  # what the game feels, emulation included
                    self.rtt_last = rtt
                    self.rtt = rtt if self.rtt is None else 0.8 * self.rtt + 0.2 * rtt
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ping_interval):
                    await stop.wait()

    @property
    def error(self) -> Error | None:
        return self.conn.last_error if self.conn is not None else None
