"""`SchedulerService`: the control plane as an asyncio service.

Lifecycle (the same as the sim's `SimServer`)::

    service = SchedulerService(config)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(service.run())
        await service.wait_ready(task)
        ...                       # service.url, service.port
        service.stop()            # or cancel the task

One port serves both the websocket protocol (`scheduler.messages`) and
plain HTTP (`scheduler.http`: /metrics, /state, /health, /migrate).

Each connection: a handler reads `register` (within ``hello_timeout_s``),
checks version and token, answers `welcome`, then reads telemetry / node
status / migration reports into the engine. A writer task per connection
drains a bounded outbox, so a client that stops reading only fills its own
queue and is cut off, and the evaluation loop — which pushes `migrate`
commands into those outboxes — never blocks on a socket.

`run` returns after stop() or cancellation with every connection closed
(1001), every handler and writer finished, the port released and the
decision log closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from scheduler.aio import wait_event
from scheduler.config import SchedulerConfig
from scheduler.decisions import DecisionLog
from scheduler.engine import Engine
from scheduler.http import make_process_request
from scheduler.messages import (
    DEVICE,
    FROM_CLIENT,
    FROM_NODE,
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
)
from scheduler.metrics import SchedulerMetrics
from server.auth import parse_auth
from shiftcraft.protocol import ProtocolError

log = logging.getLogger("shiftcraft.scheduler")

OUTBOX = 64  # control messages are rare; a peer this far behind is not reading
FATAL_CODES = frozenset({"malformed", "too_large"})  # the stream itself is bad
CLOSE_CODES = {
    "malformed": 1007,
    "too_large": 1009,
    "bad_version": 1002,
    "expected_register": 1002,
    "bad_field": 1002,
    "unknown_type": 1002,
    "bad_token": 1008,
    "register_timeout": 1008,
    "rate_limited": 1008,
    "slow_consumer": 1008,
    "replaced": 1000,
    "internal": 1011,
}


@dataclass(slots=True)
class _Close:
    code: int
    reason: str


@dataclass(slots=True)
class Bucket:
    """Token bucket: ``rate`` tokens a second, at most ``burst`` saved."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float = 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(eq=False, slots=True)
class Peer:
    """One registered connection: its identity, limits and outbox."""

    ws: ServerConnection
    conn: int
    role: str = ""
    name: str = ""
    remote: str = ""
    open: bool = True
    bucket: Bucket | None = None
    outbox: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(OUTBOX + 2))
    _last_rate_error: float = -1e9

    def send(self, msg: ControlMessage) -> bool:
        """Queue a message; a full outbox cuts the peer off (never blocks)."""
        if not self.open:
            return False
        if self.outbox.qsize() >= OUTBOX:
            while not self.outbox.empty():
                self.outbox.get_nowait()
            self.close("slow_consumer", "peer does not read its messages")
            return False
        self.outbox.put_nowait(encode(msg))
        return True

    def error(self, code: str, message: str, *, fatal: bool = False) -> None:
        if not self.open:
            return
        if fatal:
            # Fits even in a full outbox: `send` stops at OUTBOX, the queue holds 2 more.
            self.outbox.put_nowait(encode(Error(code=code, message=message[:1024], fatal=True)))
            self.close(code, message)
        else:
            self.send(Error(code=code, message=message[:1024]))

    def close(self, code: str, reason: str) -> None:
        if not self.open:
            return
        self.open = False
        text = f"{code}: {reason}"
        raw = text.encode()
        if len(raw) > 123:  # RFC 6455: a close reason fits in 123 bytes
            text = raw[:120].decode(errors="ignore") + "..."
        self.outbox.put_nowait(_Close(CLOSE_CODES.get(code, 1008), text))

    def rate_error_due(self, now: float) -> bool:
        if now - self._last_rate_error >= 1.0:
            self._last_rate_error = now
            return True
        return False

    async def write_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                item = await self.outbox.get()
                if isinstance(item, _Close):
                    await ws.close(item.code, item.reason)
                    return
                await ws.send(item)
        except ConnectionClosed:
            pass
        except Exception:  # one peer's socket trouble must not escape
            log.exception("writer of %s failed", self.name or self.remote)
            with contextlib.suppress(Exception):
                ws.transport.abort()


class SchedulerService:
    def __init__(self, config: SchedulerConfig) -> None:
        config.validate()
        self.config = config
        self.auth = parse_auth(config.auth)
        self.metrics = SchedulerMetrics()
        self.log = DecisionLog(config.log_path)
        self.engine = Engine(
            config.engine,
            config.policy_spec(),
            self.log,
            send=self._push,
            observe=self.metrics.observe,
        )
        self.peers: dict[tuple[str, str], Peer] = {}
        self.ready = asyncio.Event()
        self.port = 0
        self.started_at = time.monotonic()
        self._stop = asyncio.Event()
        self._conn_ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    def now(self) -> float:
        return time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    async def wait_ready(self, task: asyncio.Task | None = None) -> None:
        """Wait until the port is bound; if ``task`` (running `run`) ends first, raise its error."""
        if task is None:
            await self.ready.wait()
            return
        waiter = asyncio.ensure_future(self.ready.wait())
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not self.ready.is_set():
            task.result()
            raise RuntimeError("scheduler stopped before it was ready")

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        cfg = self.config
        try:
            async with serve(
                self._handle,
                cfg.host,
                cfg.port,
                process_request=make_process_request(self),
                compression=None,
                max_size=MAX_FRAME_BYTES,
                max_queue=16,
                ping_interval=cfg.ping_interval_s,
                close_timeout=2.0,
                logger=logging.getLogger("shiftcraft.scheduler.ws"),
            ) as server:
                self.port = server.sockets[0].getsockname()[1]
                self.ready.set()
                log.info("listening on %s (policy %s)", self.url, self.engine.spec.label)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._eval_loop(), name="scheduler evaluation")
                # Leaving `serve` closes every connection (1001) and waits for handlers.
        finally:
            self.log.close()
            self.ready.clear()

    async def _eval_loop(self) -> None:
        period = self.config.engine.eval_interval_s
        while not self._stop.is_set():
            if await wait_event(self._stop, period):
                break
            try:
                self.engine.tick(self.now())
            except Exception:
                # A policy bug must not stop the control plane; it is loud in the log.
                log.exception("evaluation failed")

    def _push(self, client: str, msg: Migrate) -> bool:
        peer = self.peers.get(("client", client))
        return peer is not None and peer.send(msg)

    # -- connections -------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        peer = Peer(ws=ws, conn=next(self._conn_ids), remote=_peer(ws))
        writer = asyncio.create_task(peer.write_loop(), name=f"scheduler writer {peer.remote}")
        registered = False
        try:
            registered = await self._register(peer)
            if registered:
                async for data in ws:
                    if not peer.open:
                        continue  # closing: drain what the peer sent before our close
                    try:
                        self._on_frame(peer, data)
                    except Exception:
                        log.exception("frame from %s", peer.name)
                        self._reject(peer, "internal", "the scheduler failed on this message")
                        peer.close("internal", "the scheduler failed on a message")
            else:
                await writer  # the fatal error and the close go out
        except ConnectionClosed:
            pass
        finally:
            peer.open = False
            if registered:
                if self.peers.get((peer.role, peer.name)) is peer:
                    del self.peers[(peer.role, peer.name)]
                self.engine.disconnect(peer.role, peer.name, self.now(), peer.conn)
                log.info("%s %s left", peer.role, peer.name)
            if not writer.done():
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _register(self, peer: Peer) -> bool:
        """Read and check `register`; on failure queue a fatal error and return False."""
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.hello_timeout_s):
                data = await peer.ws.recv()
        except TimeoutError:
            self._fatal(peer, "register_timeout", f"no register within {cfg.hello_timeout_s:g} s")
            return False
        try:
            msg = decode(data)
        except ProtocolError as exc:
            self._fatal(peer, exc.code, f"bad register: {exc.message}")
            return False
        if not isinstance(msg, Register):
            self._fatal(
                peer, "expected_register", f"the first message must be register, not {msg.TYPE}"
            )
            return False
        if msg.version != SCHED_PROTOCOL_VERSION:
            self._fatal(
                peer,
                "bad_version",
                f"control protocol version {msg.version} is not supported; "
                f"this scheduler speaks {SCHED_PROTOCOL_VERSION}",
            )
            return False
        if not self.auth.check(msg.name, msg.token):
            self._fatal(peer, "bad_token", f"token not accepted for {msg.name!r}")
            return False
        if msg.role == "render-node":
            if msg.name == DEVICE:
                self._fatal(peer, "bad_field", f"{DEVICE!r} is reserved: it names local rendering")
                return False
            if not msg.location:
                self._fatal(peer, "bad_field", "render nodes must give their location")
                return False
            if not msg.url.startswith(("ws://", "wss://")):
                self._fatal(peer, "bad_field", "render nodes must give a ws:// signalling url")
                return False
        now = self.now()
        old = self.peers.get((msg.role, msg.name))
        if old is not None:
            # The newer connection wins (a client that reconnected before the old
            # socket timed out); the old one is told why.
            old.error("replaced", "another connection registered with this name", fatal=True)
        peer.role, peer.name = msg.role, msg.name
        peer.bucket = Bucket(cfg.msg_rate, cfg.msg_burst, cfg.msg_burst, now)
        self.peers[(msg.role, msg.name)] = peer
        self.engine.register(msg, now, peer.conn)
        peer.send(
            Welcome(
                version=SCHED_PROTOCOL_VERSION,
                name=msg.name,
                role=msg.role,
                interval_s=cfg.engine.telemetry_interval_s,
                policy=self.engine.spec.label,
            )
        )
        log.info("%s %s registered from %s", msg.role, msg.name, peer.remote)
        return True

    def _on_frame(self, peer: Peer, data: bytes | str) -> None:
        now = self.now()
        assert peer.bucket is not None
        if not peer.bucket.take(now):
            self.metrics.rejected_tally["rate_limited"] += 1
            if peer.rate_error_due(now):
                peer.error("rate_limited", f"over {self.config.msg_rate:g} messages/s: dropped")
            return
        try:
            msg = decode(data)
        except ProtocolError as exc:
            self._reject(peer, exc.code, exc.message, fatal=exc.code in FATAL_CODES)
            return
        allowed = FROM_CLIENT if peer.role == "client" else FROM_NODE
        if msg.TYPE not in allowed:
            what = "already registered" if isinstance(msg, Register) else "not expected"
            self._reject(peer, "not_allowed", f"{msg.TYPE} from a {peer.role}: {what}")
            return
        if isinstance(msg, Telemetry):
            if (msg.mode == "local") != (msg.node == DEVICE):
                self._reject(
                    peer, "bad_field", f"telemetry: mode {msg.mode!r} with node {msg.node!r}"
                )
                return
            self.engine.telemetry(peer.name, msg, now)
        elif isinstance(msg, MigrationReport):
            self.engine.report(peer.name, msg, now)
        elif isinstance(msg, NodeStatus):
            self.engine.node_status(peer.name, msg, now)

    def _reject(self, peer: Peer, code: str, message: str, *, fatal: bool = False) -> None:
        self.metrics.rejected_tally[code] += 1
        peer.error(code, message, fatal=fatal)

    def _fatal(self, peer: Peer, code: str, message: str) -> None:
        self.metrics.rejected_tally[code] += 1
        peer.error(code, message, fatal=True)

    # -- observability -------------------------------------------------------------------
    def exposition(self) -> bytes:
        return self.metrics.exposition(self.engine, self.now())

    def state(self) -> dict:
        now = self.now()
        return {
            "url": self.url,
            "uptime_s": round(now - self.started_at, 3),
            "connections": len(self.peers),
            **self.engine.snapshot(now),
        }


def _peer(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"


@contextlib.asynccontextmanager
async def running(config: SchedulerConfig) -> AsyncIterator[SchedulerService]:
    """A started scheduler for the duration of the block (tests, tools, the demo).

    The block's own exceptions propagate as they are; the service is stopped
    and awaited either way, so nothing outlives the block.
    """
    service = SchedulerService(config)
    task = asyncio.create_task(service.run(), name="scheduler")
    try:
        await service.wait_ready(task)
        yield service
    finally:
        service.stop()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
