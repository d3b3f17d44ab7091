"""One bot: a `SimConnection`, the authoritative state it reports, a behaviour.

The bot holds no prediction: its position is whatever the server last said
(``Update.pos``), which is what load generation needs and keeps it cheap.
Messages arrive through the connection's callback (no inbox, no task per
message) and are decoded lazily, so a bot that ignores other players never
walks the entity lists of its updates.

Optional parts, each off unless given: a `TraceRecorder` writes what the bot
sends (``--record``), and a `BotView` renders what it sees (``--render``).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

from client.connection import (
    ConnectError,
    ConnectionClosed,
    InputSequencer,
    SimConnection,
    Traffic,
)
from experiments.bots.behaviours import Behaviour, EditRequest, EditResult, Intent
from experiments.bots.replica import LazyReplica
from experiments.bots.trace import TraceRecorder
from experiments.bots.view import BotView
from shiftcraft.protocol import MAX_DT, MAX_INPUT_FRAMES, Error, Message, Update

INPUT_HZ = 20.0
# A bot is "warm" once its sections have stopped streaming in: it got at least
# one section and then none for this long (seen at a later update).
WARM_QUIET_S = 0.5


@dataclass(slots=True)
class BotStats:
    joined: bool = False
    join_error: str | None = None  # ConnectError code
    join_s: float | None = None  # connect + hello/welcome time
    warm: bool = False
    frames_sent: int = 0
    edits_sent: int = 0
    edits_ok: int = 0
    edits_rejected: int = 0
    rejected_reasons: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # error messages from the server, by code
    edit_latencies: list[float] = field(default_factory=list)
    rtts: list[float] = field(default_factory=list)
    ping_timeouts: int = 0
    updates: int = 0
    sections: int = 0
    disconnected: str | None = None  # why the server side ended the session early
    traffic: Traffic = field(default_factory=Traffic)
    # What the behaviour did, by kind ("turn", "trip", "place", "ignite", ...).
    actions: Counter = field(default_factory=Counter)


class Bot:
    """A headless player driven by a `Behaviour`. The behaviour reads the attributes."""

    def __init__(
        self,
        name: str,
        url: str,
        behaviour: Behaviour,
        rng: random.Random,
        *,
        token: str = "",
        role: str = "bot",
        connect_timeout: float = 10.0,
        ping_interval: float = 5.0,
        recorder: TraceRecorder | None = None,
        view: BotView | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.behaviour = behaviour
        self.rng = rng
        self.token = token
        self.role = role
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.recorder = recorder
        self.view = view
        self.stats = BotStats()
        self.conn: SimConnection | None = None
        # Authoritative state, from welcome then each update.
        self.player_id = 0
        self.spawn: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.vel: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.on_ground = False
        self.tick = 0
        self.ack = -1  # the newest input frame the server applied
        self.yaw = 0.0  # the look direction last sent (a rendering view draws it)
        self.pitch = 0.0
        # A rendering view brings the game client's replica (it mirrors into
        # the renderer); behaviours read its sections like any LazyReplica.
        self.replica = None
        self.world = LazyReplica() if behaviour.needs_world else None
        # Other players (id -> [name, x, y, z, yaw, pitch]), when the behaviour wants them.
        self.others: dict[int, list] | None = {} if behaviour.needs_entities else None
        self._inputs = InputSequencer()
        self._pending: dict[int, tuple[EditRequest, float]] = {}
        self._last_section_at = 0.0
        self._loop = asyncio.get_running_loop()

    def count(self, action: str, n: int = 1) -> None:
        """Count one of the behaviour's actions (for the run summary)."""
        self.stats.actions[action] += n

    @property
    def now(self) -> float:
        return self._loop.time()

    @property
    def edits_pending(self) -> int:
        return len(self._pending)

    @property
    def pending_requests(self) -> list[EditRequest]:
        """Edits sent and not yet answered, oldest first."""
        return [req for req, _ in self._pending.values()]

    # -- lifecycle ----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Join, act until ``stop`` is set or the server ends the session, leave."""
        t0 = self._loop.time()
        try:
            conn = await SimConnection.connect(
                self.url,
                self.name,
                role=self.role,
                token=self.token,
                timeout=self.connect_timeout,
                lazy=True,
                # Other players' lists are the bulk of every update near spawn;
                # a bot that ignores them never builds them.
                skip=() if self.others is not None else ("spawn", "entities", "gone"),
                on_message=self._on_message,
            )
        except ConnectError as exc:
            self.stats.join_error = exc.code
            return
        self.conn = conn
        self.stats.join_s = self._loop.time() - t0
        self.stats.joined = True
        self.stats.traffic = conn.traffic  # live counters
        welcome = conn.welcome
        self.player_id = welcome.player_id
        self.spawn = self.pos = tuple(welcome.pos)  # type: ignore[assignment]
        self.yaw, self.pitch = welcome.yaw, welcome.pitch
        try:
            if self.view is not None:
                self.replica = self.view.attach(self)
                if self.replica is not None:
                    self.world = self.replica.sections
            if self.recorder is not None:
                self.recorder.start(self._loop.time(), self.spawn)
            self.behaviour.start(self)
            async with asyncio.TaskGroup() as tg:
                pinger = tg.create_task(self._ping_loop(conn), name=f"{self.name}-ping")
                try:
                    await self._input_loop(conn, stop)
                finally:
                    pinger.cancel()
        except* ConnectionClosed as group:
            exc = group.exceptions[0]
            self.stats.disconnected = str(exc)
        finally:
            await conn.close()
            if self.recorder is not None:
                self.recorder.close(self._loop.time(), "left" if stop.is_set() else "closed")
            if self.view is not None:
                self.view.close()
            if conn.handler_error is not None:  # a bug in our own handler: surface it
                raise conn.handler_error
        if self.stats.disconnected is None and conn.close_exception and not stop.is_set():
            self.stats.disconnected = str(conn.close_exception)

    async def _input_loop(self, conn: SimConnection, stop: asyncio.Event) -> None:
        period = 1.0 / INPUT_HZ
        loop = self._loop
        behaviour = self.behaviour
        stats = self.stats
        last = next_at = loop.time()
        while not stop.is_set() and not conn.closed:
            now = loop.time()
            dt = min(now - last, MAX_DT)
            last = now
            intent = behaviour.step(self, now, dt)
            frames = self._frames(intent, dt)
            if frames:
                await conn.send_inputs(frames)
                stats.frames_sent += len(frames)
                last_frame = frames[-1]
                self.yaw, self.pitch = last_frame[4], last_frame[5]
                if self.recorder is not None:
                    for frame in frames:
                        self.recorder.frame(now, frame)
            for req in intent.edits:
                seq = await conn.send_edit(req.action, req.x, req.y, req.z, req.block)
                self._pending[seq] = (req, now)
                stats.edits_sent += 1
                stats.actions[req.action] += 1
                if self.recorder is not None:
                    self.recorder.edit(now, req.action, req.x, req.y, req.z, req.block)
            view = self.view
            if view is not None and view.due(now):
                view.render(self, now)
            next_at += period
            delay = next_at - loop.time()
            if delay < -MAX_DT:  # starved (GC, CPU): skip frames rather than burst them
                next_at = loop.time()
                delay = 0.0
            await asyncio.sleep(max(delay, 0.0))

    def _frames(self, intent: Intent, dt: float) -> list[list]:
        """The wire frames for this step: the intent's one, or its exact ``frames``."""
        seqs = self._inputs
        if intent.frames is not None:
            # Exact frames (a replay); an empty list sends nothing this step.
            return [
                seqs.frame(f_dt, forward, strafe, yaw, pitch, flags=int(flags))
                for f_dt, forward, strafe, yaw, pitch, flags in intent.frames[:MAX_INPUT_FRAMES]
            ]
        return [
            seqs.frame(
                dt,
                intent.forward,
                intent.strafe,
                intent.yaw,
                intent.pitch,
                jump=intent.jump,
                sneak=intent.sneak,
                fly=intent.fly,
                sprint=intent.sprint,
            )
        ]

    async def _ping_loop(self, conn: SimConnection) -> None:
        await asyncio.sleep(self.rng.uniform(0.5, 1.0) * self.ping_interval)
        while not conn.closed:
            try:
                self.stats.rtts.append(await conn.ping(timeout=self.ping_interval))
            except TimeoutError:
                self.stats.ping_timeouts += 1
            except ConnectionClosed:
                return  # the input loop reports the disconnect
            await asyncio.sleep(self.ping_interval * self.rng.uniform(0.8, 1.2))

    # -- incoming -------------------------------------------------------------------
    def _on_message(self, msg: Message) -> None:
        if isinstance(msg, Update):
            self._on_update(msg)
        elif type(msg) is Error:
            self.stats.errors[msg.code] += 1

    def _on_update(self, msg: Update) -> None:
        stats = self.stats
        stats.updates += 1
        self.tick = msg.tick
        self.pos = msg.pos
        self.vel = msg.vel
        self.on_ground = msg.on_ground
        if msg.ack >= 0:
            self._inputs.ack(msg.ack)
            self.ack = msg.ack
            if self.recorder is not None:
                self.recorder.state(self._loop.time(), msg.ack, msg.pos)
        n_sections = msg.section_count if hasattr(msg, "section_count") else len(msg.sections)
        if n_sections:
            stats.sections += n_sections
            self._last_section_at = self._loop.time()
        elif stats.sections and not stats.warm:
            stats.warm = self._loop.time() - self._last_section_at >= WARM_QUIET_S
        world = self.world
        if self.replica is not None:
            self.replica.apply_update(msg)  # mirrors into the rendering view too
        elif world is not None:
            for sx, sy, sz, data in msg.sections:
                world.add_section((sx, sy, sz), data)
            for key in msg.unload:
                world.unload(key)
            for x, y, z, block in msg.blocks:
                world.set_block(x, y, z, block)
        if self._pending and msg.edits:
            self._on_edit_results(msg.edits)
        others = self.others
        if others is not None:
            for eid, name, x, y, z, yaw, pitch in msg.spawn:
                others[eid] = [name, x, y, z, yaw, pitch]
            for eid, x, y, z, yaw, pitch in msg.entities:
                entry = others.get(eid)
                if entry is not None:
                    entry[1:] = (x, y, z, yaw, pitch)
            for eid in msg.gone:
                others.pop(eid, None)

    def _on_edit_results(self, results: list) -> None:
        stats = self.stats
        now = self._loop.time()
        for seq, ok, _x, _y, _z, block_now, reason in results:
            pending = self._pending.pop(seq, None)
            if pending is None:
                continue
            req, sent_at = pending
            latency = now - sent_at
            stats.edit_latencies.append(latency)
            if ok:
                stats.edits_ok += 1
            else:
                stats.edits_rejected += 1
                stats.rejected_reasons[reason or "unknown"] += 1
            if self.world is not None:
                # The result carries the true block: keep the replica right even
                # if the delta broadcast for this block is still on its way.
                self.world.set_block(req.x, req.y, req.z, block_now)
            self.behaviour.on_edit_result(self, EditResult(req, ok, block_now, reason, latency))
