"""`SimServer`: the sim as an asyncio service (websockets + tick loop).

Lifecycle::

    server = SimServer(config)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(server.run())
        await server.wait_ready()
        ...                       # server.url, server.port
        server.stop()             # or cancel the task

`run` opens the store, binds the port, runs the tick loop, and on the way
out — stop(), cancellation, SIGINT/SIGTERM via the CLI — closes every
connection (1001), waits for their handlers, makes a final group commit and
closes the store. It leaves no task, thread or socket behind.

Each connection gets a handler (reads, validates, queues intents) and a
writer task (drains the session's bounded outbox). The tick loop runs the
`Simulation` at a fixed rate: a late tick is caught up at once, at most
``max_catchup_ticks`` in a row, then the clock resynchronises and the
skipped ticks are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from server.auth import Authenticator, parse_auth
from server.config import ServerConfig
from server.http import make_process_request
from server.metrics import ServerMetrics, ServerStats, TickClock
from server.ratelimit import TokenBucket
from server.session import Session
from server.simulation import Simulation
from shiftcraft.protocol import (
    PROTOCOL_VERSION,
    Edit,
    Hello,
    Input,
    Ping,
    Pong,
    ProtocolError,
    View,
    decode,
    encode,
)
from world.codec import encode_section
from world.coords import SectionKey
from world.generator import FlatGenerator, SectionGenerator
from world.map import World
from world.store import SectionStore, StoreError
from world.updates import BlockUpdater

log = logging.getLogger("shiftcraft.server")

DEFAULT_SEED = 1
FATAL_DECODE_ERRORS = frozenset({"malformed", "too_large"})  # the stream itself is bad


def make_generator(name: str, seed: int) -> SectionGenerator:
    if name == "flat":
        return FlatGenerator(height=64, seed=seed)
    from world.terrain import TerrainGenerator  # heavy import: only when used

    return TerrainGenerator(seed)


class SimServer:
    def __init__(self, config: ServerConfig) -> None:
        config.validate()
        self.config = config
        self.auth: Authenticator = parse_auth(config.auth)
        self.stats = ServerStats()
        self.metrics = ServerMetrics()
        self.clock = TickClock(config.tick_ring)
        self.ready = asyncio.Event()
        self.port: int = 0
        self.last_tick_at: float = 0.0
        self.sim: Simulation | None = None
        self._stopping = False
        self._store: SectionStore | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    def stop(self) -> None:
        """Ask `run` to finish: the current tick completes, then everything shuts down."""
        self._stopping = True

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
            task.result()  # raises the start-up error
            raise RuntimeError("server stopped before it was ready")

    # -- observability -----------------------------------------------------------
    def player_count(self) -> int:
        return len(self.sim.sessions) if self.sim is not None else 0

    def players_by_role(self) -> Tally[str]:
        return self.sim.players_by_role() if self.sim is not None else Tally()

    def exposition(self) -> bytes:
        """/metrics text; counters are brought up to date first."""
        m = self.metrics
        m.publish(self.stats)
        roles = self.players_by_role()
        for role in ("player", "bot", "render-node"):
            m.players.labels(role).set(roles.get(role, 0))
        if self.sim is not None:
            m.sections_loaded.set(len(self.sim.world.sections))
            m.section_cache_bytes.set(self.sim.cache_bytes)
        return m.exposition()

    # -- lifecycle -------------------------------------------------------------
    async def run(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._store = store = SectionStore(cfg.db, durable=cfg.durable)
        frozen = False
        try:
            seed = self._bind(store)
            world = World(make_generator(cfg.generator, seed), store)
            updater = BlockUpdater(world, seed)
            self._executor = executor = ThreadPoolExecutor(1, thread_name_prefix="sim-commit")

            async def commit(
                sections: Mapping[SectionKey, bytes], records: Mapping[str, dict[str, Any]]
            ) -> None:
                # In a thread: SQLite releases the GIL while it writes, so the
                # handlers keep reading sockets meanwhile. The tick still waits.
                await loop.run_in_executor(executor, store.commit, sections, records)

            self.sim = Simulation(cfg, world, store, updater, self.stats, commit)
            async with serve(
                self._handle,
                cfg.host,
                cfg.port,
                process_request=make_process_request(self),
                compression=None,  # sections are zlib already; deflate would cost CPU
                max_size=cfg.ws_max_size,
                max_queue=64,
                ping_interval=cfg.ping_interval_s,
                close_timeout=2.0,
                logger=logging.getLogger("shiftcraft.server.ws"),
            ) as ws_server:
                self.port = ws_server.sockets[0].getsockname()[1]
                if cfg.gc_freeze:
                    # Start-up objects (tables, caches, modules) never die: keep
                    # them out of every later collection's scan.
                    gc.collect()
                    gc.freeze()
                    frozen = True
                self.ready.set()
                log.info("listening on %s (seed %d, %s generator)", self.url, seed, cfg.generator)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._tick_loop())
                # Leaving `serve` closes every connection (1001) and waits for
                # the handlers, which queue their players' last records.
        finally:
            self._shutdown_store()
            if frozen:
                gc.unfreeze()
            self.ready.clear()

    def _bind(self, store: SectionStore) -> int:
        """The world's seed and generator: from the flags, checked against the store."""
        cfg = self.config
        stored = store.get_meta("seed")
        seed = cfg.seed if cfg.seed is not None else int(stored or DEFAULT_SEED)
        store.bind_seed(seed)
        gen = store.get_meta("generator")
        if gen is None:
            store.set_meta("generator", cfg.generator)
        elif gen != cfg.generator:
            raise StoreError(f"{store.path}: store belongs to the {gen!r} generator")
        return seed

    def _shutdown_store(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # an interrupted commit finishes first
            self._executor = None
        store, self._store = self._store, None
        if store is None:
            return
        try:
            if self.sim is not None:
                world = self.sim.world
                dirty = world.take_dirty()
                sections = {k: encode_section(world.section(k)) for k in dirty}
                store.commit(sections=sections, players=self.sim.final_records())
                log.info("final commit: %d sections, players saved", len(sections))
        except Exception:
            log.exception("final commit failed")
        finally:
            store.close()

    # -- tick loop ---------------------------------------------------------------
    async def _tick_loop(self) -> None:
        cfg = self.config
        sim = self.sim
        assert sim is not None
        loop = asyncio.get_running_loop()
        period = cfg.tick_s
        max_behind = period * cfg.max_catchup_ticks
        stats = self.stats
        observe_tick = self.metrics.tick_duration.observe
        observe_commit = self.metrics.commit_duration.observe
        next_at = loop.time()
        while not self._stopping:
            delay = next_at - loop.time()
            # Even a late tick yields once, so handlers read their sockets in between.
            await asyncio.sleep(delay if delay > 0 else 0)
            if self._stopping:
                break
            started = time.monotonic()
            t0 = time.perf_counter()
            try:
                await sim.tick()
            except Exception:
                # A bug must not take the world down with it; it is loud in the log.
                log.exception("tick %d failed", sim.tick_no)
            duration = time.perf_counter() - t0
            self.clock.record(started, duration)
            # Only now: /stats promises its `tick_ms` ring ends with tick `tick`,
            # and handlers (hence /stats) also run while a tick awaits its commit.
            stats.tick = sim.tick_no
            self.last_tick_at = time.monotonic()
            observe_tick(duration)
            if sim.commit_seconds:
                for c in sim.commit_seconds:
                    observe_commit(c)
                sim.commit_seconds.clear()
            next_at += period
            behind = loop.time() - next_at
            if behind > max_behind:
                skipped = int(behind / period)
                stats.ticks_skipped += skipped
                next_at += skipped * period
                log.warning("tick loop %.0f ms behind: skipped %d ticks", behind * 1e3, skipped)

    # -- connections -------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        cfg = self.config
        sim = self.sim
        assert sim is not None
        s = Session(
            ws=ws,
            stats=self.stats,
            out_limit=cfg.out_queue,
            msg_bucket=TokenBucket(cfg.msg_rate, cfg.msg_burst),
            flood_bucket=TokenBucket(cfg.msg_rate / 4, cfg.flood_drops),
            remote=_peer(ws),
        )
        self.stats.connections += 1
        writer = asyncio.create_task(s.write_loop(), name=f"writer {s.remote}")
        joined = False
        try:
            if await self._handshake(s):
                joined = True
                sim.request_join(s)
                async for data in ws:
                    if not s.open:
                        continue  # closing: drain what the peer sent before our close
                    try:
                        self._on_frame(s, data)
                    except Exception:  # a bug here must cost this connection only
                        log.exception("frame from %s", s.name)
                        s.error("internal", "the server failed on this message", fatal=True)
            if not joined:
                await writer  # the error and the close go out
        except ConnectionClosed:
            pass
        finally:
            self.stats.disconnects[s.close_error or "peer"] += 1
            if joined:
                sim.request_leave(s)
            s.finished()
            if not writer.done():
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _handshake(self, s: Session) -> bool:
        """Read and check `hello`; on failure queue a fatal error and return False."""
        cfg = self.config
        try:
            data = await asyncio.wait_for(s.ws.recv(), cfg.hello_timeout_s)
        except TimeoutError:
            s.error("hello_timeout", f"no hello within {cfg.hello_timeout_s:g} s", fatal=True)
            return False
        self.stats.bytes_in += len(data)
        try:
            msg = decode(data, cfg.max_frame_bytes)
        except ProtocolError as exc:
            self.stats.rejected[exc.code] += 1
            s.error(exc.code, f"bad hello: {exc.message}", fatal=True)
            return False
        self.stats.messages_in[msg.TYPE] += 1
        if not isinstance(msg, Hello):
            self.stats.rejected["expected_hello"] += 1
            s.error(
                "expected_hello", f"the first message must be hello, not {msg.TYPE}", fatal=True
            )
            return False
        if msg.version != PROTOCOL_VERSION:
            self.stats.rejected["bad_version"] += 1
            s.error(
                "bad_version",
                f"protocol version {msg.version} is not supported; "
                f"this server speaks {PROTOCOL_VERSION}",
                fatal=True,
            )
            return False
        if not self.auth.check(msg.name, msg.token):
            self.stats.rejected["bad_token"] += 1
            s.error("bad_token", f"token not accepted for {msg.name!r}", fatal=True)
            return False
        s.name = msg.name
        s.role = msg.role
        return True

    def _on_frame(self, s: Session, data: bytes | str) -> None:
        """One frame from a joined client: rate-limit, validate, queue for the tick."""
        cfg = self.config
        stats = self.stats
        stats.bytes_in += len(data)
        now = time.monotonic()
        if not s.msg_bucket.take(now):
            stats.rejected["rate_limited"] += 1
            if not s.flood_bucket.take(now):
                s.error("rate_limited", "message flood: connection closed", fatal=True)
            elif s.rate_error_due(now):
                s.error("rate_limited", f"over {cfg.msg_rate:g} messages/s: messages dropped")
            return
        try:
            msg = decode(data, cfg.max_frame_bytes)  # type: ignore[arg-type]
        except ProtocolError as exc:
            stats.rejected[exc.code] += 1
            s.error(exc.code, exc.message, fatal=exc.code in FATAL_DECODE_ERRORS)
            return
        stats.messages_in[msg.TYPE] += 1
        sim = self.sim
        assert sim is not None
        if isinstance(msg, Input):
            if s.role == "render-node":
                self._refuse(s, "not_allowed", "render nodes send no input")
            elif sim.queue_inputs(s, msg.frames):
                self._refuse(s, "input_overflow", "too many input frames queued; some dropped")
        elif isinstance(msg, Edit):
            sim.queue_edit(s, msg)
        elif isinstance(msg, Ping):
            s.send(encode(Pong(id=msg.id, t=msg.t, server_time=time.time())))
        elif isinstance(msg, View):
            if s.role != "render-node":
                self._refuse(s, "not_allowed", "only render nodes set their view")
            else:
                sim.set_view(s, msg)
        else:
            self._refuse(s, "unexpected", f"{msg.TYPE} is not expected from a client now")

    def _refuse(self, s: Session, code: str, message: str) -> None:
        self.stats.rejected[code] += 1
        s.error(code, message)


def _peer(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"


@contextlib.asynccontextmanager
async def running(config: ServerConfig) -> AsyncIterator[SimServer]:
    """A started server for the duration of the block (tests, tools).

    The block's own exceptions propagate as they are (a TaskGroup around the
    block would wrap them in an ExceptionGroup); the server is stopped and
    awaited either way, so nothing outlives the block.
    """
    server = SimServer(config)
    task = asyncio.create_task(server.run(), name="sim server")
    try:
        await server.wait_ready(task)
        yield server
    finally:
        server.stop()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # we were cancelled ourselves
