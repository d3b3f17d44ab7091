"""``replay``: play back a recorded input trace (`experiments.bots.trace`).

The bot sends the trace's input frames as they were (same ``dt``, movement,
look and flags), each at its recorded time after the replay starts, and its
edits likewise. The server's physics is the same code with the same frames,
so from the same spawn point in the same world the replay walks the same
path; the bot checks that as it goes, comparing its displacement from spawn
after each acknowledged frame with the recorded one, and reports the worst
difference (``replay_error_max``, blocks) in the run summary.

At the end of the trace the bot stands still, or starts over (``loop``;
deviation is only checked on the first pass, since a second pass starts
wherever the first one ended).
"""

from __future__ import annotations

import math
import random

from experiments.bots.behaviours import (
    Behaviour,
    BehaviourOptions,
    EditRequest,
    Intent,
    register,
)
from experiments.bots.bot import Bot
from experiments.bots.trace import Trace, TraceError
from shiftcraft.protocol import MAX_INPUT_FRAMES

_TRACES: dict[str, Trace] = {}  # one parse per file for a process of many replaying bots


def load_trace(path: str) -> Trace:
    trace = _TRACES.get(path)
    if trace is None:
        trace = _TRACES[path] = Trace.load(path)
    return trace


@register
class Replay(Behaviour):
    name = "replay"

    def __init__(self, rng: random.Random, options: BehaviourOptions) -> None:
        super().__init__(rng, options)
        self.trace: Trace | None = None
        self.t0 = 0.0
        self.i_frame = 0
        self.i_edit = 0
        self.passes = 0
        self.expected: dict[int, tuple[float, float, float]] = {}
        self.checked = 0
        self.max_error = 0.0
        self._last_checked_ack = -1
        self._yaw = 0.0
        self._pitch = 0.0

    @classmethod
    def prepare(cls, options: BehaviourOptions, names: list[str]) -> None:
        if not options.trace:
            raise TraceError("the replay behaviour needs a trace (--trace PATH)")
        for name in names:
            trace = load_trace(options.trace.replace("{name}", name))
            if not trace.frames:
                raise TraceError(f"{options.trace}: the trace has no input frames")

    def start(self, bot: Bot) -> None:
        path = self.options.trace.replace("{name}", bot.name)
        self.trace = load_trace(path)
        self.expected = self.trace.positions()
        self.t0 = bot.now

    def step(self, bot: Bot, now: float, dt: float) -> Intent:
        trace = self.trace
        assert trace is not None
        self._check(bot)
        elapsed = now - self.t0
        frames: list[list] = []
        first_t = trace.frames[0].t if trace.frames else 0.0
        while (
            self.i_frame < len(trace.frames)
            and trace.frames[self.i_frame].t - first_t <= elapsed
            and len(frames) < MAX_INPUT_FRAMES
        ):
            frame = trace.frames[self.i_frame]
            frames.append(frame.wire())
            self._yaw, self._pitch = frame.yaw, frame.pitch
            self.i_frame += 1
        edits = []
        while self.i_edit < len(trace.edits) and trace.edits[self.i_edit].t - first_t <= elapsed:
            e = trace.edits[self.i_edit]
            edits.append(EditRequest(e.action, e.x, e.y, e.z, e.block))
            self.i_edit += 1
        if frames:
            bot.count("replayed_frame", len(frames))
        done = self.i_frame >= len(trace.frames) and self.i_edit >= len(trace.edits)
        if done and not frames and not edits:
            if self.options.loop and trace.frames:
                self.passes += 1
                self.t0, self.i_frame, self.i_edit = now, 0, 0
                bot.count("loop")
            # The trace is over: stand still looking where it last looked.
            return Intent(yaw=self._yaw, pitch=self._pitch)
        return Intent(frames=frames, edits=edits)

    def _check(self, bot: Bot) -> None:
        """Compare the newest acknowledged position with the recorded one (first pass)."""
        if self.passes or bot.ack == self._last_checked_ack:
            return
        self._last_checked_ack = bot.ack
        want = self.expected.get(bot.ack)  # our frames are numbered from 0, as the trace's index
        if want is None:
            return
        got = tuple(p - s for p, s in zip(bot.pos, bot.spawn, strict=True))
        err = math.dist(got, want)
        self.checked += 1
        if err > self.max_error:
            self.max_error = err

    def report(self) -> dict[str, float]:
        return {"replay_checked": self.checked, "replay_error_max": round(self.max_error, 4)}
