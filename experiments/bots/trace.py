"""Input traces: what a player did, frame by frame, as JSONL — recorded and read back.

A trace lets a ``replay`` bot repeat a session exactly: the sim applies the
same input frames with the same shared physics, so the same frames from the
same spawn point give the same positions. It is one JSON object per line::

    {"type": "header", "version": 1, "name": "bot0", "source": "bot",
     "spawn": [0.5, 16.0, 0.5], "started_unix": 1712345678.9}
    {"type": "input", "t": 0.05, "seq": 0, "dt": 0.05, "forward": 1.0, "strafe": 0.0,
     "yaw": 0.3, "pitch": -0.1, "flags": 0}
    {"type": "edit", "t": 1.20, "action": "place", "x": 3, "y": 16, "z": -2, "block": 5}
    {"type": "state", "t": 0.10, "ack": 0, "pos": [0.5, 16.0, 0.71]}
    {"type": "end", "t": 30.0, "reason": "left"}

``t`` is seconds since the recording started (rounded to 0.1 ms); every
other number is written exactly (JSON floats round-trip), because a replay
must send the very same ``dt`` and angles to walk the very same path.
``input`` rows are the wire frames (``[seq, dt, forward, strafe, yaw,
pitch, flags]``, see docs/protocol.md); ``state`` rows are the
authoritative position after input ``ack`` (what a replay is checked
against). Bots record with ``shiftcraft bots --record PATH``; the game
client with `record_game`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from shiftcraft.protocol import EDIT_ACTIONS

if TYPE_CHECKING:
    from client.game import FrameInfo, Game

TRACE_VERSION = 1
Vec3 = tuple[float, float, float]


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names file and line."""


@dataclass(slots=True)
class TraceFrame:
    t: float
    seq: int
    dt: float
    forward: float
    strafe: float
    yaw: float
    pitch: float
    flags: int

    def wire(self) -> list:
        """``[dt, forward, strafe, yaw, pitch, flags]``: what `Intent.frames` takes."""
        return [self.dt, self.forward, self.strafe, self.yaw, self.pitch, self.flags]


@dataclass(slots=True)
class TraceEdit:
    t: float
    action: str
    x: int
    y: int
    z: int
    block: int = 0


@dataclass(slots=True)
class TraceState:
    t: float
    ack: int
    pos: Vec3


@dataclass(slots=True)
class Trace:
    name: str
    source: str  # "bot" | "game"
    spawn: Vec3
    frames: list[TraceFrame] = field(default_factory=list)
    edits: list[TraceEdit] = field(default_factory=list)
    states: list[TraceState] = field(default_factory=list)

    @property
    def duration(self) -> float:
        last = [rows[-1].t for rows in (self.frames, self.edits, self.states) if rows]
        return max(last, default=0.0)

    def positions(self) -> dict[int, Vec3]:
        """Displacement from spawn after each frame, by frame index (0 = the first frame)."""
        if not self.frames:
            return {}
        first = self.frames[0].seq
        sx, sy, sz = self.spawn
        return {
            s.ack - first: (s.pos[0] - sx, s.pos[1] - sy, s.pos[2] - sz)
            for s in self.states
            if s.ack >= first
        }

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        path = Path(path)
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise TraceError(f"{path}: cannot read the trace: {exc.strerror or exc}") from None
        trace: Trace | None = None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise TraceError(f"{where}: not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise TraceError(f"{where}: each line must be a JSON object")
            kind = row.get("type")
            if trace is None:
                if kind != "header":
                    raise TraceError(f"{where}: the first line must be the header")
                if row.get("version") != TRACE_VERSION:
                    raise TraceError(
                        f"{where}: trace version {row.get('version')!r}, expected {TRACE_VERSION}"
                    )
                trace = cls(
                    str(row.get("name", "")),
                    str(row.get("source", "bot")),
                    _vec3(row.get("spawn"), where, "spawn"),
                )
                continue
            try:
                if kind == "input":
                    trace.frames.append(
                        TraceFrame(
                            _num(row, "t"),
                            int(row["seq"]),
                            _num(row, "dt"),
                            _num(row, "forward"),
                            _num(row, "strafe"),
                            _num(row, "yaw"),
                            _num(row, "pitch"),
                            int(row["flags"]),
                        )
                    )
                elif kind == "edit":
                    if row.get("action") not in EDIT_ACTIONS:
                        raise ValueError(f"action must be one of {', '.join(EDIT_ACTIONS)}")
                    trace.edits.append(
                        TraceEdit(
                            _num(row, "t"),
                            row["action"],
                            int(row["x"]),
                            int(row["y"]),
                            int(row["z"]),
                            int(row.get("block", 0)),
                        )
                    )
                elif kind == "state":
                    trace.states.append(
                        TraceState(_num(row, "t"), int(row["ack"]), _vec3(row["pos"], where, "pos"))
                    )
                elif kind == "end":
                    break
                else:
                    raise ValueError(f"unknown row type {kind!r}")
            except TraceError:
                raise
            except (KeyError, TypeError, ValueError) as exc:
                what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                raise TraceError(f"{where}: bad {kind!r} row: {what}") from None
        if trace is None:
            raise TraceError(f"{path}: empty trace (no header)")
        return trace


def _num(row: dict[str, Any], key: str) -> float:
    v = row[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{key} must be a finite number, got {v!r}")
    return float(v)


def _vec3(v: Any, where: str, key: str) -> Vec3:
    if not (isinstance(v, list) and len(v) == 3 and all(isinstance(c, int | float) for c in v)):
        raise TraceError(f"{where}: {key} must be [x, y, z], got {v!r}")
    return (float(v[0]), float(v[1]), float(v[2]))


class TraceRecorder:
    """Writes one session's trace. Times are the caller's clock; rows store them relative.

    Rows are buffered by the file object (a bot records 40 rows a second);
    `close` writes the ``end`` row and flushes. Usable by bots (the `Bot`
    calls it) and by the game client (`record_game`).
    """

    def __init__(self, path: str | Path, name: str, source: str = "bot") -> None:
        self.path = Path(path)
        self.name = name
        self.source = source
        self.rows = 0
        self._t0: float | None = None
        self._file: IO[str] | None = None
        self._last_ack = -1

    @property
    def started(self) -> bool:
        return self._t0 is not None

    def start(self, now: float, spawn: Vec3) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", buffering=64 * 1024)  # noqa: SIM115 (closed in close)
        self._t0 = now
        self._write(
            {
                "type": "header",
                "version": TRACE_VERSION,
                "name": self.name,
                "source": self.source,
                "spawn": list(spawn),
                "started_unix": round(time.time(), 3),
            }
        )

    def _t(self, now: float) -> float:
        assert self._t0 is not None, "TraceRecorder.start first"
        return round(now - self._t0, 4)

    def _write(self, row: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(row, separators=(",", ":")) + "\n")
        self.rows += 1

    def frame(self, now: float, frame: list) -> None:
        """One wire input frame ``[seq, dt, forward, strafe, yaw, pitch, flags]``."""
        seq, dt, forward, strafe, yaw, pitch, flags = frame
        self._write(
            {
                "type": "input",
                "t": self._t(now),
                "seq": seq,
                "dt": dt,
                "forward": forward,
                "strafe": strafe,
                "yaw": yaw,
                "pitch": pitch,
                "flags": flags,
            }
        )

    def edit(self, now: float, action: str, x: int, y: int, z: int, block: int = 0) -> None:
        self._write(
            {
                "type": "edit",
                "t": self._t(now),
                "action": action,
                "x": x,
                "y": y,
                "z": z,
                "block": block,
            }
        )

    def state(self, now: float, ack: int, pos: Vec3) -> None:
        """The authoritative position after input ``ack``; repeats of an ack are skipped."""
        if ack < 0 or ack == self._last_ack:
            return
        self._last_ack = ack
        self._write({"type": "state", "t": self._t(now), "ack": ack, "pos": list(pos)})

    def close(self, now: float | None = None, reason: str = "left") -> None:
        if self._file is None:
            return
        end: dict[str, Any] = {"type": "end", "reason": reason}
        if now is not None and self._t0 is not None:
            end["t"] = self._t(now)
        self._write(end)
        self._file.close()
        self._file = None


def record_game(game: Game, path: str | Path) -> TraceRecorder:
    """Record what the game client sends (``shiftcraft play`` or a headless `Game`).

    Hooks the game's public extension points only: `Game.on_frame` (chained)
    sees each frame's new input frames in the predictor's un-acked queue and
    the newest authoritative state; `Game.request_edit` is wrapped on this one
    instance so edits are recorded where they are made. Recording stops at a
    reconnect (the server numbers frames afresh). Call ``recorder.close()``
    when the game has ended::

        recorder = record_game(game, "trace.jsonl")
        try:
            await game.run()
        finally:
            recorder.close()
    """
    recorder = TraceRecorder(path, game.config.name, source="game")
    chained = game.on_frame
    state = {"gen": 0, "last_seq": -1}
    request_edit = game.request_edit

    def on_frame(g: Game, info: FrameInfo) -> None:
        if chained is not None:
            chained(g, info)
        p = g.predictor
        if p is None or g.generation == 0:
            return
        if not recorder.started:
            welcome = g.session.welcome
            spawn = tuple(welcome.pos) if welcome is not None else (p.body.x, p.body.y, p.body.z)
            recorder.start(info.now, spawn)  # type: ignore[arg-type]
            state["gen"] = g.generation
        if g.generation != state["gen"]:
            recorder.close(info.now, reason="reconnected")
            return
        for frame in p.sequencer.pending:  # un-acked: this frame's new ones are still here
            if frame[0] > state["last_seq"]:
                recorder.frame(info.now, frame)
                state["last_seq"] = frame[0]
        if g.server_state is not None:
            _tick, ack, pos, *_ = g.server_state
            recorder.state(info.now, ack, tuple(pos))  # type: ignore[arg-type]

    def recording_edit(action: str, x: int, y: int, z: int, block: int = 0) -> bool:
        ok = request_edit(action, x, y, z, block)
        if ok and recorder.started:
            recorder.edit(game.clock(), action, x, y, z, block)
        return ok

    game.on_frame = on_frame
    game.request_edit = recording_edit  # type: ignore[method-assign]
    return recorder


RecorderFactory = Callable[[str], TraceRecorder | None]


def recorder_factory(pattern: str, count: int) -> RecorderFactory:
    """Where each bot's trace goes: ``{name}`` in ``pattern`` is the bot's name.

    One bot may record to a plain path; several without ``{name}`` record to
    ``STEM.NAME.SUFFIX`` next to it, so no two bots write the same file.
    """
    if not pattern:
        return lambda name: None
    if "{name}" not in pattern and count > 1:
        p = Path(pattern)
        pattern = str(p.with_name(f"{p.stem}.{{name}}{p.suffix or '.jsonl'}"))
    return lambda name: TraceRecorder(pattern.replace("{name}", name), name)
