"""Progress on stderr: which run, which phase, time left in the run and overall.

On a terminal one line is redrawn in place every second; otherwise (CI
logs, pipes) a full line is printed every ``every`` seconds so logs stay
readable. ``quiet`` prints only phase changes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


def fmt_secs(s: float) -> str:
    s = max(0, round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class Progress:
    total_runs: int
    run_seconds: float  # warm-up + measured, per run
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    every: float = 5.0  # seconds between lines when not on a terminal
    quiet: bool = False
    run_index: int = 0  # 1-based once a run starts
    label: str = ""
    phase: str = "starting"
    _last_line: float = 0.0
    _tty: bool = False

    def __post_init__(self) -> None:
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def start_run(self, index: int, label: str) -> None:
        self.run_index, self.label = index, label
        self.set_phase("starting")

    def set_phase(self, phase: str, detail: str = "") -> None:
        self.phase = phase
        self._emit(
            f"[{self.run_index}/{self.total_runs} {self.label}] {phase} {detail}".rstrip(),
            final=True,
        )

    def message(self, text: str) -> None:
        self._emit(text, final=True)

    def tick(self, elapsed_in_phase: float, phase_len: float, run_left: float, status: str) -> None:
        """Once a second during warm-up and the measured phase."""
        if self.quiet:
            return
        now = time.monotonic()
        if not self._tty and now - self._last_line < self.every:
            return
        runs_after = self.total_runs - self.run_index
        all_left = run_left + runs_after * (self.run_seconds + 15)  # ~15 s start/stop a run
        line = (
            f"[{self.run_index}/{self.total_runs} {self.label}] {self.phase}"
            f" {elapsed_in_phase:5.1f}/{phase_len:g}s | run left {fmt_secs(run_left)}"
            f" | all left ~{fmt_secs(all_left)}"
        )
        if status:
            line += f" | {status}"
        self._emit(line, final=False)
        self._last_line = now

    def _emit(self, line: str, final: bool) -> None:
        if self._tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
