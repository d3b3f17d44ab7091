"""The events file of a run (``events.jsonl``): what happened, when, one JSON object a line.

Every line has ``time`` (Unix s), ``t`` (seconds since the start of the
measured phase; negative in warm-up), ``run`` and ``kind``:

* ``phase`` — ``warmup`` / ``measure`` / ``end`` began;
* ``action`` — a scenario action applied (``action`` = set_link, set_cpu,
  set_battery, plug, unplug, migrate, kill), with its fields, ``ok`` and the
  answer or error;
* ``link`` — link conditions set on the testbed (``applied`` false on loopback);
* ``node`` — a service started, exited unexpectedly or was stopped;
* ``decision`` — a line of the scheduler's decision log (``event`` migrate,
  hold, stale, timeout, node_up, node_down), its fields kept;
* ``migration`` — a migration report (``outcome``, ``gap_ms``,
  ``duration_ms``, ``from``, ``to``, ``client``), from the scheduler's
  decision log;
* ``note`` — anything a reader of the report must know (no emulation, a
  target that never answered, an option a tool cannot take).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any


class EventLog:
    def __init__(self, path: Path, run: str, t0: float | None = None) -> None:
        self.path = path
        self.run = run
        self.t0 = t0  # set when the measured phase starts; until then t is vs. the planned start
        self._file: IO[str] = open(path, "a")  # noqa: SIM115 (closed in close())
        self.count = 0

    def write(self, kind: str, when: float | None = None, **fields: Any) -> dict[str, Any]:
        when = time.time() if when is None else when
        t = None if self.t0 is None else round(when - self.t0, 3)
        rec = {"time": round(when, 3), "t": t, "run": self.run, "kind": kind, **fields}
        self._file.write(json.dumps(rec, default=str) + "\n")
        self._file.flush()
        self.count += 1
        return rec

    def close(self) -> None:
        self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event of an events file (bad lines are skipped: a crashed run may cut one)."""
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def decision_events(decision_log: Path, log: EventLog) -> int:
    """Copy the scheduler's decision log into the events file; reports become ``migration``.

    Read once the run is over (the log is flushed per line and outlives a
    killed scheduler), so no tailing is needed during the run.
    """
    if not decision_log.exists():
        return 0
    n = 0
    for line in decision_log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        when = float(rec.get("ts") or time.time())
        base = {
            "client": rec.get("client"),
            "from": rec.get("from"),
            "to": rec.get("to"),
            "from_location": rec.get("from_location"),
            "to_location": rec.get("to_location"),
            "decision": rec.get("decision"),
            "reason": rec.get("reason"),
            "policy": rec.get("policy"),
        }
        detail = rec.get("detail") or {}
        if rec.get("event") == "report":
            log.write(
                "migration",
                when,
                **base,
                outcome=detail.get("outcome", rec.get("reason")),
                gap_ms=detail.get("gap_ms"),
                duration_ms=detail.get("duration_ms"),
                source="scheduler",
            )
        else:
            log.write("decision", when, event=rec.get("event"), **base, detail=detail)
        n += 1
    return n
