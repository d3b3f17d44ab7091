"""The authoritative simulation: what happens in one tick, in what order.

One tick, in this order (the order is the durability promise)::

    admit joins / drop leavers
    apply queued input frames (shared physics `step`, speed-checked)
    apply queued edits (validated, in arrival order)
    updater.tick            falling blocks, water, TNT
    drain world changes  -> updater.notify(changes)
    GROUP COMMIT            dirty sections + dirty player records, one transaction
    only then: per subscriber ONE `update` (ack, pos, edit results, sections,
               unloads, block deltas, entities)

Nothing a tick changed reaches any client before it is in SQLite, so a
crash (kill -9) can lose only what nobody has seen. A failed commit keeps
everything (dirty sections, records, changes, edit results) for the next
tick and sends nothing.

Handlers never touch the world: they only queue intents on their session
(`queue_inputs`, `queue_edit`, `request_join`, `request_leave`); the tick
consumes them. The store is used only from the tick (and its commit), never
concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import numpy as np

from server.config import ServerConfig
from server.edits import check_target, reach_distance, true_block
from server.entities import EntityTracker
from server.interest import centre_key
from server.metrics import ServerStats
from server.ratelimit import TokenBucket
from server.session import PendingEdit, Session, SessionState
from server.wire import encode_update
from shiftcraft.protocol import (
    MAX_INPUT_FRAMES,
    PROTOCOL_VERSION,
    Edit,
    Update,
    View,
    Welcome,
    encode,
)
from world.blocks import BLOCKS, BlockId
from world.codec import encode_section
from world.coords import SECTIONS_Y, WORLD_HEIGHT, SectionKey, in_world
from world.map import BlockChange, EditError, World
from world.physics import (
    PLAYER_HEIGHT,
    MoveInput,
    PlayerBody,
    aabb_overlaps_block,
    body_aabb,
    eye_position,
    step,
)

log = logging.getLogger("shiftcraft.server")

MAX_PENDING_FRAMES = 4 * MAX_INPUT_FRAMES  # per session, between two ticks
MAX_PENDING_EDITS = 64  # per session, between two ticks
EVICT_EVERY_TICKS = 1200  # look for unwatched sections to forget once a minute
MAX_LOADED_SECTIONS = 20_000  # ... but only when more than this are in memory


class Updater(Protocol):
    """Block updates (world/updates.py `BlockUpdater`)."""

    def notify(self, changes: list[BlockChange]) -> None: ...
    def ignite(self, x: int, y: int, z: int) -> bool: ...
    def tick(self, tick: int) -> None: ...


CommitFn = Callable[[Mapping[SectionKey, bytes], Mapping[str, dict]], Awaitable[None]]


class Store(Protocol):
    def load_player(self, name: str) -> dict[str, Any] | None: ...
    def commit(
        self,
        sections: Mapping[SectionKey, bytes] | None = None,
        players: Mapping[str, dict[str, Any]] | None = None,
    ) -> None: ...


def find_spawn(world: World) -> tuple[float, float, float]:
    """The generator's spawn point, or the top of the column at (0, 0)."""
    spawn_point = getattr(world.generator, "spawn_point", None)
    if spawn_point is not None:
        x, y, z = spawn_point()
        return (float(x), float(y), float(z))
    for y in range(WORLD_HEIGHT - 1, -1, -1):
        if BLOCKS.solid[world.get_block(0, y, 0)]:
            return (0.5, float(y + 1), 0.5)
    return (0.5, float(WORLD_HEIGHT), 0.5)


def player_record(s: Session) -> dict[str, Any]:
    b = s.body
    assert b is not None
    return {"x": b.x, "y": b.y, "z": b.z, "yaw": s.yaw, "pitch": s.pitch, "flying": b.flying}


def _body_from_record(rec: Mapping[str, Any]) -> tuple[PlayerBody, float, float] | None:
    try:
        x, y, z = (float(rec[k]) for k in ("x", "y", "z"))
        if not all(math.isfinite(v) for v in (x, y, z)):
            return None
        body = PlayerBody(x, y, z, flying=bool(rec.get("flying", False)))
        return body, float(rec.get("yaw", 0.0)), float(rec.get("pitch", 0.0))
    except (KeyError, TypeError, ValueError):
        return None  # a damaged record: start at spawn rather than not at all


class Simulation:
    def __init__(
        self,
        config: ServerConfig,
        world: World,
        store: Store,
        updater: Updater,
        stats: ServerStats,
        commit: CommitFn,
    ) -> None:
        self.config = config
        self.world = world
        self.store = store
        self.updater = updater
        self.stats = stats
        self._commit_fn = commit
        self.spawn = find_spawn(world)
        self.tick_no = 0
        self.sessions: dict[int, Session] = {}  # welcomed, by player id, in join order
        self.by_name: dict[str, Session] = {}
        self.cache: dict[SectionKey, bytes] = {}  # encoded sections, current
        self.cache_bytes = 0
        self.commit_seconds: list[float] = []  # drained by the service into a histogram
        self._joining: list[Session] = []
        self._leaving: list[Session] = []
        self._edits: list[PendingEdit] = []
        self._overflow: list[PendingEdit] = []  # over MAX_PENDING_EDITS: refused
        self._pending_edits: Tally[int] = Tally()  # per session id(), between ticks
        self._unsent: list[BlockChange] = []  # changes to broadcast once they are committed
        self._records: dict[str, dict[str, Any]] = {}  # player records to commit
        self.entities = EntityTracker(
            config.entity_distance, config.entity_hysteresis, config.entity_near
        )
        self._next_id = 1
        self._rotate = 0
        # Bodies indexed for the into-player check of the edits of one tick.
        self._body_list: list[PlayerBody] = []
        self._body_pos = np.zeros((0, 3))

    # -- intents from connection handlers ----------------------------------------
    def request_join(self, session: Session) -> None:
        self._joining.append(session)

    def request_leave(self, session: Session) -> None:
        self._leaving.append(session)

    def queue_inputs(self, s: Session, frames: list) -> int:
        """Queue input frames for the next tick; returns how many were dropped."""
        room = MAX_PENDING_FRAMES - len(s.inputs)
        if len(frames) <= room:
            s.inputs.extend(frames)
            return 0
        s.inputs.extend(frames[: max(room, 0)])
        dropped = len(frames) - max(room, 0)
        self.stats.input_frames_dropped += dropped
        return dropped

    def queue_edit(self, s: Session, edit: Edit) -> None:
        key = id(s)
        if self._pending_edits[key] >= MAX_PENDING_EDITS:
            # Refused in the tick (which reads the true block: handlers never
            # touch the world, it may be loading from the store meanwhile).
            self._overflow.append((s, edit))
            return
        self._pending_edits[key] += 1
        self._edits.append((s, edit))

    def set_view(self, s: Session, view: View) -> None:
        s.view_centres = [tuple(c) for c in view.centers]
        s.view_distance = min(view.distance, self.config.max_view_distance)

    # -- the tick --------------------------------------------------------------
    async def tick(self) -> None:
        now = time.monotonic()
        self.tick_no += 1
        if self._leaving:
            self._drop_leavers()
        if self._joining:
            self._admit(now)
        for s in self.sessions.values():
            if s.inputs:
                self._apply_inputs(s, now)
        if self._overflow:
            overflow, self._overflow = self._overflow, []
            for s, e in overflow:
                if s.open:
                    self._reject(s, e, "rate_limited")
        if self._edits:
            self._apply_edits(now)
        self.updater.tick(self.tick_no)
        changes = self.world.drain_changes()
        if changes:
            self.updater.notify(changes)
            self._unsent.extend(changes)
            self.stats.block_changes += len(changes)
        self._save_moved_players(now)
        if await self._commit():
            self._broadcast()
        if self.tick_no % EVICT_EVERY_TICKS == 0:
            self._evict()

    # -- joins and leaves --------------------------------------------------------
    def _admit(self, now: float) -> None:
        joining, self._joining = self._joining, []
        cfg = self.config
        for s in joining:
            if not s.open:
                continue
            resumed = None
            old = self.by_name.get(s.name)
            if old is not None:
                # The same name again (a reconnect): the new connection wins and
                # continues from the old one's live state.
                if old.body is not None:
                    resumed = (old.body, old.yaw, old.pitch)
                old.error("replaced", "the same name connected again", fatal=True)
                self._remove(old, save=False)
            if s.role != "render-node":
                if resumed is None:
                    rec = self._records.get(s.name) or self.store.load_player(s.name)
                    resumed = _body_from_record(rec) if rec else None
                if resumed is None:
                    resumed = (PlayerBody(*self.spawn), 0.0, 0.0)
                s.body, s.yaw, s.pitch = resumed
                s.input_credit = TokenBucket(1.0, cfg.input_allowance_s)
                s.input_credit.stamp = now
                s.edit_bucket = TokenBucket(cfg.edit_rate, cfg.edit_burst)
                s.saved_at = now
                s.saved_state = (s.body.x, s.body.y, s.body.z, s.body.flying)
            s.player_id = self._next_id
            self._next_id += 1
            s.state = SessionState.WELCOMED
            s.last_sent_tick = self.tick_no
            s.interest.hysteresis = cfg.unload_hysteresis
            self.sessions[s.player_id] = s
            self.by_name[s.name] = s
            pos = (s.body.x, s.body.y, s.body.z) if s.body is not None else self.spawn
            s.send(
                encode(
                    Welcome(
                        version=PROTOCOL_VERSION,
                        player_id=s.player_id,
                        name=s.name,
                        tick_rate=cfg.tps,
                        seed=self.world.seed,
                        view_distance=cfg.view_distance,
                        pos=pos,
                        yaw=s.yaw,
                        pitch=s.pitch,
                        flying=s.body.flying if s.body is not None else False,
                    )
                )
            )
            log.info("%s joined as %s #%d", s.name, s.role, s.player_id)

    def _drop_leavers(self) -> None:
        leaving, self._leaving = self._leaving, []
        for s in leaving:
            if s in self._joining:
                self._joining.remove(s)
            self._remove(s, save=True)

    def _remove(self, s: Session, *, save: bool) -> None:
        if self.sessions.get(s.player_id) is not s:
            return
        del self.sessions[s.player_id]
        if self.by_name.get(s.name) is s:
            del self.by_name[s.name]
        if save and s.body is not None:
            self._records[s.name] = player_record(s)
        log.info("%s left (#%d)", s.name, s.player_id)

    def _save_moved_players(self, now: float) -> None:
        """Moved players are saved at most every `player_save_s` (and on leaving)."""
        every = self.config.player_save_s
        for s in self.sessions.values():
            b = s.body
            if b is None or now - s.saved_at < every:
                continue
            state = (b.x, b.y, b.z, b.flying)
            if state != s.saved_state:
                self._records[s.name] = player_record(s)
                s.saved_state = state
            s.saved_at = now

    def players_by_role(self) -> Tally[str]:
        return Tally(s.role for s in self.sessions.values())

    # -- inputs ------------------------------------------------------------------
    def _apply_inputs(self, s: Session, now: float) -> None:
        frames, s.inputs = s.inputs, []
        body = s.body
        credit = s.input_credit
        if body is None or credit is None:
            return
        credit.refill(now)
        world = self.world
        applied = dropped = duplicate = missing = 0
        for frame in frames:
            seq = frame[0]
            if seq <= s.last_seq:
                duplicate += 1  # a duplicate or reordered frame: already consumed
                continue
            if s.last_seq >= 0 and seq > s.last_seq + 1:
                missing += seq - s.last_seq - 1  # never arrived (the client lost them)
            s.last_seq = seq
            s.ack_dirty = True
            dt = frame[1]
            # Speed check: the client may not claim more movement time than has
            # passed (plus a small allowance for jitter). Dropped frames are
            # still acked; the authoritative position in the ack corrects them.
            if credit.tokens < dt:
                dropped += 1
                continue
            credit.tokens -= dt
            try:
                body = step(body, MoveInput.from_frame(frame), dt, world)
            except EditError:
                dropped += 1  # walked off the edge of the world: stay put
                continue
            s.yaw = frame[4]
            s.pitch = frame[5]
            applied += 1
        s.body = body
        self.stats.input_frames += applied
        self.stats.input_frames_dropped += dropped
        self.stats.input_frames_duplicate += duplicate
        self.stats.input_frames_missing += missing

    # -- edits -------------------------------------------------------------------
    def _index_bodies(self) -> None:
        self._body_list = [s.body for s in self.sessions.values() if s.body is not None]
        self._body_pos = np.array([(b.x, b.y, b.z) for b in self._body_list], dtype=np.float64)

    def _occupied_by_player(self, x: int, y: int, z: int) -> bool:
        pos = self._body_pos
        if not len(pos):
            return False
        near = np.flatnonzero(
            (np.abs(pos[:, 0] - (x + 0.5)) < 1.0)
            & (np.abs(pos[:, 2] - (z + 0.5)) < 1.0)
            & (pos[:, 1] < y + 1)
            & (pos[:, 1] + PLAYER_HEIGHT > y)
        )
        return any(aabb_overlaps_block(body_aabb(self._body_list[i]), x, y, z) for i in near)

    def _reject(self, s: Session, e: Edit, reason: str) -> None:
        block = true_block(self.world, e.x, e.y, e.z)
        s.edit_results.append([e.seq, False, e.x, e.y, e.z, block, reason])
        self.stats.edits_rejected[reason] += 1

    def _apply_edits(self, now: float) -> None:
        edits, self._edits = self._edits, []
        self._pending_edits.clear()
        self._index_bodies()
        world = self.world
        reach = self.config.reach
        for s, e in edits:
            if not s.open:
                continue
            x, y, z = e.x, e.y, e.z
            if s.body is None or s.edit_bucket is None:
                self._reject(s, e, "not_allowed")
                continue
            if not in_world(x, y, z):
                self._reject(s, e, "out_of_world")
                continue
            if reach_distance(eye_position(s.body), x, y, z) > reach:
                self._reject(s, e, "too_far")
                continue
            if not s.edit_bucket.take(now):
                self._reject(s, e, "rate_limited")
                continue
            reason = check_target(world, e.action, x, y, z, e.block, self._occupied_by_player)
            if not reason:
                if e.action == "place":
                    world.set_block(x, y, z, e.block)
                elif e.action == "break":
                    world.set_block(x, y, z, BlockId.AIR)
                elif not self.updater.ignite(x, y, z):
                    reason = "not_ignitable"
            if reason:
                self._reject(s, e, reason)
                continue
            s.edit_results.append([e.seq, True, x, y, z, world.get_block(x, y, z), ""])
            self.stats.edits_applied[e.action] += 1

    # -- group commit ------------------------------------------------------------
    async def _commit(self) -> bool:
        world = self.world
        dirty = world.take_dirty()
        records, self._records = self._records, {}
        if not dirty and not records:
            return True
        sections: dict[SectionKey, bytes] = {}
        for key in dirty:
            data = encode_section(world.section(key))
            sections[key] = data
            self._cache_put(key, data)  # the wire reuses the bytes just stored
        t0 = time.perf_counter()
        try:
            await self._commit_fn(sections, records)
        except asyncio.CancelledError:
            self._restore(dirty, records)
            raise
        except Exception:
            log.exception("group commit failed; retrying next tick, nothing sent")
            self.stats.commit_failures += 1
            self._restore(dirty, records)
            return False
        self.commit_seconds.append(time.perf_counter() - t0)
        return True

    def _restore(self, dirty: set[SectionKey], records: dict[str, dict[str, Any]]) -> None:
        self.world.mark_dirty(dirty)
        self._records = {**records, **self._records}

    def final_records(self) -> dict[str, dict[str, Any]]:
        """Everything still to persist at shutdown: pending records and every player."""
        records = dict(self._records)
        for s in self.sessions.values():
            if s.body is not None:
                records[s.name] = player_record(s)
        self._records = {}
        return records

    # -- section bytes ---------------------------------------------------------
    def _cache_put(self, key: SectionKey, data: bytes) -> None:
        old = self.cache.get(key)
        self.cache_bytes += len(data) - (len(old) if old is not None else 0)
        self.cache[key] = data

    def section_bytes(self, key: SectionKey) -> bytes:
        data = self.cache.get(key)
        if data is None:
            world = self.world
            if not world.is_loaded(key):
                # Load the whole column: generators make columns, and interest
                # asks for its sections scattered over several ticks.
                sx, _, sz = key
                for sy in range(SECTIONS_Y):
                    world.section((sx, sy, sz))
            data = encode_section(world.section(key))
            self._cache_put(key, data)
        return data

    def _evict(self) -> None:
        """Forget sections nobody holds or wants (regenerated or reloaded on demand)."""
        world = self.world
        if len(world.sections) <= MAX_LOADED_SECTIONS:
            return
        keep: set[SectionKey] = set()
        for s in self.sessions.values():
            keep |= s.interest.sent
            keep.update(s.interest.queue[s.interest.qpos :])
        drop = [k for k in world.sections if k not in keep]
        world.evict(drop)
        for key in drop:
            if key not in world.sections:
                data = self.cache.pop(key, None)
                if data is not None:
                    self.cache_bytes -= len(data)

    # -- broadcast -------------------------------------------------------------
    def _broadcast(self) -> None:
        cfg = self.config
        changes, self._unsent = self._unsent, []
        by_section: dict[SectionKey, list[list[int]]] = {}
        for c in changes:
            key = (c.x >> 4, c.y >> 4, c.z >> 4)
            deltas = by_section.get(key)
            if deltas is None:
                by_section[key] = deltas = []
            deltas.append([c.x, c.y, c.z, c.new])
        heavy = {k for k, v in by_section.items() if len(v) > cfg.many_changes}

        sessions = list(self.sessions.values())
        if not sessions:
            return
        ents = self.entities
        ents.begin([s for s in sessions if s.body is not None], self.tick_no)
        deadline = time.perf_counter() + cfg.load_budget_s
        flush_stale = self.tick_no % cfg.stale_flush_ticks == 0
        n = len(sessions)
        self._rotate = (self._rotate + 1) % n
        for i in range(n):
            s = sessions[(i + self._rotate) % n]
            if s.open:
                self._update_for(s, by_section, heavy, ents, deadline, flush_stale)

    def _update_for(
        self,
        s: Session,
        by_section: dict[SectionKey, list[list[int]]],
        heavy: set[SectionKey],
        ents: EntityTracker,
        deadline: float,
        flush_stale: bool,
    ) -> None:
        cfg = self.config
        stats = self.stats
        interest = s.interest
        body = s.body
        if body is not None:
            interest.retarget([centre_key(body.x, body.y, body.z)], cfg.view_distance / 16)
        elif s.view_centres:
            interest.retarget(
                sorted({centre_key(*c) for c in s.view_centres}), s.view_distance / 16
            )

        # Block changes: deltas to near holders; a heavily edited section is sent
        # whole; far holders get it again later, coalesced.
        blocks: list[list[int]] = []
        if by_section and interest.sent:
            sent = interest.sent
            for key, deltas in by_section.items():
                if key not in sent:
                    continue
                if key in heavy:
                    interest.resend.add(key)
                elif key in interest.stale or interest.is_far(key, cfg.far_fraction):
                    interest.stale.add(key)
                else:
                    blocks.extend(deltas)

        sections: list[list] = []
        if interest.resend:
            for key in interest.resend:
                sections.append([*key, self.section_bytes(key)])
                interest.sent.add(key)
                interest.stale.discard(key)
            interest.resend.clear()
        budget = cfg.sections_per_tick
        queue = interest.queue
        sent = interest.sent
        cache = self.cache
        while budget > 0 and interest.qpos < len(queue):
            key = queue[interest.qpos]
            if key not in sent:
                data = cache.get(key)
                if data is None:
                    if time.perf_counter() > deadline:
                        break  # the tick's load budget is spent: nearest-first resumes next tick
                    data = self.section_bytes(key)
                sections.append([*key, data])
                interest.mark_sent(key)
                budget -= 1
            interest.qpos += 1
        if flush_stale and interest.stale and budget > 0:
            for key in list(interest.stale)[:budget]:
                sections.append([*key, self.section_bytes(key)])
                interest.mark_sent(key)
        unload: list = []
        if interest.unload:
            unload, interest.unload = [list(k) for k in interest.unload], []

        seen = ents.view_for(s)
        spawn, moves, gone = seen.spawn, seen.moves, seen.gone

        ack_dirty = s.ack_dirty
        if not (
            sections
            or unload
            or blocks
            or s.edit_results
            or spawn
            or moves
            or gone
            or ack_dirty
            or self.tick_no - s.last_sent_tick >= cfg.heartbeat_ticks
        ):
            return
        msg = Update(
            tick=self.tick_no,
            sections=sections,
            unload=unload,
            blocks=blocks,
            edits=s.edit_results,
            spawn=spawn,
            gone=gone,
        )
        if body is not None:  # players get their authoritative state to reconcile
            msg.ack = s.last_seq
            msg.pos = (body.x, body.y, body.z)
            msg.vel = (body.vx, body.vy, body.vz)
            msg.on_ground = body.on_ground
            msg.flying = body.flying
        if s.send(encode_update(msg, moves)):
            s.ack_dirty = False
            s.edit_results = []
            s.last_sent_tick = self.tick_no
            stats.sections_sent += len(sections)
            stats.block_deltas_sent += len(blocks)
