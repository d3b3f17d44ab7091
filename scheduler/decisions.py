"""The decision log: one JSON object per line, for people and for analysis scripts.

Every decision (a `migrate` sent), every non-decision where a threshold was
crossed (a policy holding for hysteresis, a proposal suppressed by the dwell
time or an unavailable target, a client gone stale), every migration report
and every node coming or going is one line. Each line carries what the
decision was made on (``inputs``: the smoothed telemetry and the candidates)
and why (``reason``, ``detail``), so a run can be explained afterwards
without re-running it. Lines are flushed as they are written: ``tail -f``
works and a crash loses nothing. ``docs/scheduler.md`` gives the schema.
"""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import IO, Any

EVENTS = ("migrate", "hold", "report", "timeout", "stale", "node_up", "node_down")


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: replace them by null (only called when dumping failed)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def dumps(record: dict[str, Any]) -> str:
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(record), separators=(",", ":"), allow_nan=False, default=str)


class DecisionLog:
    """Append-only JSONL file (optional) plus the most recent records in memory."""

    def __init__(self, path: str | Path | None = None, keep: int = 200) -> None:
        self.path = Path(path) if path else None
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.lines = 0
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self.recent.append(record)
        self.lines += 1
        if self._file is not None:
            self._file.write(dumps(record) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a decision log file (for tests and analysis)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
