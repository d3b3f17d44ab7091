"""`SchedulerLink`: the peer side of the control-plane protocol.

A game client (or a bot, or a render node) runs one link to the scheduler::

    link = SchedulerLink.client("ws://127.0.0.1:8780", "alice",
                                sample=telemetry_now, on_migrate=controller.migrate)
    task = asyncio.create_task(link.run())
    ...
    link.report(MigrationReport(decision=7, outcome="ok", from_node="device", to_node="edge-1",
                                gap_ms=12.0, duration_ms=840.0))
    task.cancel()   # or link.close(); either way the socket is closed

States (`LinkState`)::

    connecting ──welcome──▶ registered ──socket lost──▶ backoff ──▶ connecting ...
        │  unreachable, refused, timeout ──────────────▶ backoff
        └─ bad token, bad version, replaced ──▶ failed (waiting cannot fix these)
    close() or cancel ──▶ closed

Unlike the link to the sim, a first failure is retried too: the control plane
is optional for playing (a client without a scheduler renders locally), and
the scheduler may start after its clients. Back-off doubles from
``backoff_s[0]`` to ``backoff_s[1]`` with ±20 % jitter, so a restarted
scheduler is not hit by every client in the same millisecond.

While registered, the link sends one sample per interval (``sample()``
returns a `Telemetry`, a `NodeStatus`, a dict of their fields without
``seq``/``t``, or None to skip; it may be a coroutine function) and hands
every `migrate` to ``on_migrate`` — awaited in the receive task, so keep it
short or start your own task. Migration reports queued with `report` are
sent before the next sample and kept across a reconnect (up to 32).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from scheduler.aio import wait_event
from scheduler.messages import (
    MAX_FRAME_BYTES,
    SCHED_PROTOCOL_VERSION,
    ControlMessage,
    Error,
    Migrate,
    MigrationReport,
    NodeStatus,
    Register,
    Telemetry,
    Welcome,
    decode,
    encode,
    from_wire,
)
from shiftcraft.protocol import ProtocolError

log = logging.getLogger("shiftcraft.scheduler.link")

# Error codes that waiting cannot heal: the link gives up (state FAILED).
PERMANENT = frozenset(
    {"bad_token", "bad_version", "bad_field", "expected_register", "replaced", "bad_url"}
)
MAX_QUEUED_REPORTS = 32

Sample = ControlMessage | dict[str, Any] | None
SampleFn = Callable[[], Sample | Awaitable[Sample]]


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    REGISTERED = "registered"
    BACKOFF = "backoff"
    FAILED = "failed"
    CLOSED = "closed"


class LinkFailed(Exception):
    """The scheduler refused us for a reason that retrying cannot fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SchedulerLink:
    def __init__(
        self,
        url: str,
        register: Register,
        *,
        sample: SampleFn | None = None,
        on_migrate: Callable[[Migrate], Any] | None = None,
        on_error: Callable[[Error], Any] | None = None,
        interval_s: float | None = None,
        backoff_s: tuple[float, float] = (0.5, 10.0),
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.register = register
        self.sample = sample
        self.on_migrate = on_migrate
        self.on_error = on_error
        self.interval_s = interval_s  # None: what the scheduler's welcome says
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.state = LinkState.CONNECTING
        self.welcome: Welcome | None = None
        self.registered = asyncio.Event()
        self.last_error = ""  # why the last connection ended (for a status line)
        self.attempt = 0  # failed attempts since the last registration
        self.connects = 0
        self.samples_sent = 0
        self.migrates: deque[Migrate] = deque(maxlen=100)  # the commands received, newest last
        self.errors: deque[Error] = deque(maxlen=100)
        self._reports: deque[MigrationReport] = deque(maxlen=MAX_QUEUED_REPORTS)
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._seq = 0

    # -- construction helpers -----------------------------------------------------------
    @classmethod
    def client(
        cls,
        url: str,
        name: str,
        *,
        token: str = "",
        can_local: bool = True,
        can_remote: bool = True,
        bitrate_bps: int = 0,
        **kw: Any,
    ) -> SchedulerLink:
        reg = Register(
            version=SCHED_PROTOCOL_VERSION,
            role="client",
            name=name,
            token=token,
            can_local=can_local,
            can_remote=can_remote,
            bitrate_bps=bitrate_bps,
        )
        return cls(url, reg, **kw)

    @classmethod
    def node(
        cls,
        url: str,
        name: str,
        *,
        location: str,
        capacity: int,
        signalling_url: str,
        token: str = "",
        cost: float | None = None,
        **kw: Any,
    ) -> SchedulerLink:
        reg = Register(
            version=SCHED_PROTOCOL_VERSION,
            role="render-node",
            name=name,
            token=token,
            location=location,
            capacity=capacity,
            url=signalling_url,
            cost=cost,
        )
        return cls(url, reg, **kw)

    # -- API -------------------------------------------------------------------------
    def report(self, report: MigrationReport) -> None:
        """Queue a migration report; it is sent at once if registered, else after reconnecting."""
        self._reports.append(report)
        self._wake.set()

    def close(self) -> None:
        """Ask `run` to return (closing the socket)."""
        self._closing.set()
        self._wake.set()

    async def run(self) -> None:
        """Connect, register, stream samples, reconnect with back-off; until closed.

        Raises `LinkFailed` when the scheduler refuses us for good.
        """
        try:
            while not self._closing.is_set():
                self._set(LinkState.CONNECTING)
                try:
                    await self._session()
                except LinkFailed as exc:
                    self.last_error = str(exc)
                    self._set(LinkState.FAILED)
                    raise
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                except ProtocolError as exc:
                    self.last_error = f"{exc.code}: {exc.message}"
                except InvalidURI as exc:
                    self._set(LinkState.FAILED)
                    raise LinkFailed("bad_url", str(exc)) from None
                finally:
                    self.registered.clear()
                if self._closing.is_set():
                    break
                self._set(LinkState.BACKOFF)
                lo, hi = self.backoff_s
                delay = min(hi, lo * 2**self.attempt) * random.uniform(0.8, 1.2)
                self.attempt += 1
                log.info("scheduler link %s: %s; retry in %.1f s", self.url, self.last_error, delay)
                await wait_event(self._closing, delay)
        finally:
            if self.state is not LinkState.FAILED:
                self._set(LinkState.CLOSED)

    # -- internals -------------------------------------------------------------------
    def _set(self, state: LinkState) -> None:
        self.state = state

    async def _session(self) -> None:
        async with ws_connect(
            self.url,
            open_timeout=self.timeout_s,
            close_timeout=2.0,
            max_size=MAX_FRAME_BYTES,
            compression=None,
        ) as ws:
            await ws.send(encode(self.register))
            async with asyncio.timeout(self.timeout_s):
                first = decode(await ws.recv())
            if isinstance(first, Error):
                if first.code in PERMANENT:
                    raise LinkFailed(first.code, first.message)
                raise ConnectionError(f"refused: {first.code}: {first.message}")
            if not isinstance(first, Welcome):
                raise ProtocolError("expected_welcome", f"got {first.TYPE} before welcome")
            self.welcome = first
            self._seq = 0
            self.attempt = 0
            self.connects += 1
            self._set(LinkState.REGISTERED)
            self.registered.set()
            # Race the reader, the writer and close(): the first to end ends the session.
            reader = asyncio.create_task(self._read(ws), name="scheduler link reader")
            writer = asyncio.create_task(self._write(ws), name="scheduler link writer")
            closing = asyncio.create_task(self._closing.wait())
            tasks = (reader, writer, closing)
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for t in (reader, writer):
                if t in done and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]

    async def _read(self, ws: ClientConnection) -> None:
        async for data in ws:
            msg = decode(data)
            if isinstance(msg, Migrate):
                self.migrates.append(msg)
                await self._call(self.on_migrate, msg)
            elif isinstance(msg, Error):
                self.errors.append(msg)
                log.warning("scheduler says %s: %s", msg.code, msg.message)
                await self._call(self.on_error, msg)
                if msg.fatal and msg.code in PERMANENT:
                    raise LinkFailed(msg.code, msg.message)
        self.last_error = f"closed by the scheduler ({ws.close_code} {ws.close_reason})"

    async def _call(self, callback: Callable[[Any], Any] | None, msg: ControlMessage) -> None:
        """Run a user callback; its bugs are logged, they do not drop the link."""
        if callback is None:
            return
        try:
            result = callback(msg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("scheduler link: %s callback failed", msg.TYPE)

    async def _write(self, ws: ClientConnection) -> None:
        assert self.welcome is not None
        interval = self.interval_s or self.welcome.interval_s
        next_at = time.monotonic()
        while True:
            while self._reports:
                await ws.send(encode(self._reports[0]))
                self._reports.popleft()  # only once it is handed to the socket
            now = time.monotonic()
            if now >= next_at:
                next_at = max(next_at + interval, now)
                msg = await self._make_sample()
                if msg is not None:
                    await ws.send(encode(msg))
                    self.samples_sent += 1
            self._wake.clear()
            await wait_event(self._wake, next_at - time.monotonic())

    async def _make_sample(self) -> ControlMessage | None:
        if self.sample is None:
            return None
        try:
            s = self.sample()
            if inspect.isawaitable(s):
                s = await s
        except Exception:
            log.exception("telemetry sample failed")
            return None
        if s is None:
            return None
        now = time.time()
        try:
            if isinstance(s, dict):
                kind = "node_status" if self.register.role == "render-node" else "telemetry"
                fields = {"t": now, **s, "type": kind}
                if kind == "telemetry":
                    fields["seq"] = self._seq + 1
                s = from_wire(fields)  # validated here: a bad sample is our bug, not theirs
        except ProtocolError as exc:
            log.error("bad telemetry sample: %s", exc.message)
            return None
        if isinstance(s, Telemetry):
            self._seq += 1
            s = dataclasses.replace(s, seq=self._seq, t=s.t or now)
        elif isinstance(s, NodeStatus) and not s.t:
            s = dataclasses.replace(s, t=now)
        return s
