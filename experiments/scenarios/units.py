"""Quantities with units, as scenario files write them: ``30s``, ``7.21mbit``, ``1%``.

Every dimensioned value in a scenario must carry its unit: ``latency: 20``
is an error (20 what?), and so is a unit of the wrong kind (``latency:
20mbit``). Values are converted to base units here — seconds, bits per
second, ratios 0–1, watts, joules, per second, joules per megabyte — so the
rest of the code never sees a unit.

| kind | units | base |
|---|---|---|
| duration | ``us``, ``ms``, ``s``, ``min``, ``h`` | seconds |
| rate (bandwidth) | ``bit``, ``kbit``, ``mbit``, ``gbit`` (optionally ``/s``; as ``tc``) | bit/s |
| percent | ``%`` | ratio (``1%`` → 0.01) |
| power | ``mW``, ``W`` | watts |
| energy | ``J``, ``kJ``, ``mWh``, ``Wh`` | joules |
| frequency | ``/s``, ``/min``, ``Hz`` | per second |
| energy per data | ``J/MB``, ``mJ/MB`` | joules per megabyte (10⁶ bytes) |

Units are case-insensitive. ``kbps``/``mbps`` are refused on purpose: ``tc``
reads them as *bytes* per second, the rest of the world as bits.
"""

from __future__ import annotations

import math
import re

# kind -> {unit (lower case): factor to the base unit}
UNITS: dict[str, dict[str, float]] = {
    "duration": {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0},
    "rate": {
        "bit": 1.0,
        "kbit": 1e3,
        "mbit": 1e6,
        "gbit": 1e9,
        "bit/s": 1.0,
        "kbit/s": 1e3,
        "mbit/s": 1e6,
        "gbit/s": 1e9,
    },
    "percent": {"%": 0.01},
    "power": {"mw": 1e-3, "w": 1.0},
    "energy": {"j": 1.0, "kj": 1e3, "mwh": 3.6, "wh": 3600.0},
    "frequency": {"/s": 1.0, "/min": 1.0 / 60.0, "hz": 1.0},
    "energy_per_data": {"j/mb": 1.0, "mj/mb": 1e-3},
}

EXAMPLES = {
    "duration": "500ms or 30s",
    "rate": "10mbit or 7.21mbit",
    "percent": "1% or 0.5%",
    "power": "2.5W or 800mW",
    "energy": "15Wh or 5000J",
    "frequency": "5/s or 60/min",
    "energy_per_data": "0.3J/MB",
}

# Units that look plausible but are ambiguous or wrong, and what to write instead.
CONFUSABLE = {
    "kbps": "kbit (tc reads kbps as kilobytes per second)",
    "mbps": "mbit (tc reads mbps as megabytes per second)",
    "gbps": "gbit",
    "sec": "s",
    "secs": "s",
    "msec": "ms",
    "m": "min (or ms)",
}

_QUANTITY = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z%/]+)?\s*$")


class UnitError(ValueError):
    """A value without its unit, with the wrong kind of unit, or out of range."""


def kind_of_unit(unit: str) -> str | None:
    u = unit.lower()
    for kind, table in UNITS.items():
        if u in table:
            return kind
    return None


def parse_quantity(value: object, kind: str, *, allow_negative: bool = False) -> float:
    """``"20ms"`` -> 0.02 for kind ``duration``; raises `UnitError` with a sentence."""
    table = UNITS[kind]
    example = EXAMPLES[kind]
    if isinstance(value, bool) or value is None:
        raise UnitError(f"expected a {_name(kind)} such as {example}, got {value!r}")
    if isinstance(value, int | float):
        raise UnitError(
            f"{value!r} has no unit; a {_name(kind)} needs one, e.g. {example}"
            + (f" (for {value:g} percent write {value:g}%)" if kind == "percent" else "")
        )
    if not isinstance(value, str):
        raise UnitError(f"expected a {_name(kind)} such as {example}, got {value!r}")
    m = _QUANTITY.match(value)
    if not m:
        raise UnitError(f"{value!r} is not a number with a unit; write e.g. {example}")
    number, unit = float(m.group(1)), m.group(2)
    if unit is None:
        raise UnitError(f"{value!r} has no unit; a {_name(kind)} needs one, e.g. {example}")
    u = unit.lower()
    if u not in table:
        if u in CONFUSABLE:
            hint = f"write {CONFUSABLE[u]}"
        else:
            other = kind_of_unit(u)
            hint = (
                f"{unit} is a unit of {_name(other)}, not of {_name(kind)}"
                if other is not None
                else f"unknown unit {unit!r}"
            )
        units = ", ".join(sorted({k.removesuffix("/s") if kind == "rate" else k for k in table}))
        raise UnitError(f"{value!r}: {hint}; a {_name(kind)} takes {units} (e.g. {example})")
    if not math.isfinite(number):
        raise UnitError(f"{value!r} is not a finite number")
    if number < 0 and not allow_negative:
        raise UnitError(f"{value!r} must not be negative")
    return number * table[u]


def _name(kind: str | None) -> str:
    return {
        "duration": "duration",
        "rate": "rate (bandwidth)",
        "percent": "percentage",
        "power": "power",
        "energy": "energy",
        "frequency": "frequency",
        "energy_per_data": "energy per data",
        None: "unknown kind",
    }[kind]


def format_duration(seconds: float) -> str:
    """For people: ``95`` -> ``"1 min 35 s"``."""
    seconds = round(seconds)
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes} min {s} s" if minutes else f"{s} s"
