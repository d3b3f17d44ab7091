"""The validator's toolkit: problems with their lines, and checked reads of YAML values.

`Checker` collects every problem (``file:line: where: what``) instead of
stopping at the first, and its helpers read a value from a `Mapping`
checking its type, unit or range and reporting the exact line on failure.
`load` uses them for the scenario format; nothing here knows that format.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from experiments.scenarios.source import Mapping, Sequence, line_of
from experiments.scenarios.units import UnitError, parse_quantity

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")  # as the sim and scheduler protocols


@dataclass(slots=True)
class Problem:
    file: str
    line: int | None
    where: str  # dotted path in the file: links[1].latency
    message: str
    warning: bool = False

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else self.file
        kind = "warning: " if self.warning else ""
        return f"{loc}: {kind}{self.where + ': ' if self.where else ''}{self.message}"


class ScenarioError(ValueError):
    """The file is not a valid scenario; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def did_you_mean(word: object, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


@dataclass
class Checker:
    """Collects problems while the model is built; helpers read values with their lines."""

    file: str
    problems: list[Problem] = field(default_factory=list)
    # Lines of values checked after the model is built (cross references), by path.
    key_lines: dict[str, int | None] = field(default_factory=dict)

    def error(self, where: str, message: str, line: int | None) -> None:
        self.problems.append(Problem(self.file, line, where, message))

    def warn(self, where: str, message: str, line: int | None) -> None:
        self.problems.append(Problem(self.file, line, where, message, warning=True))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    # -- shapes -------------------------------------------------------------------
    def mapping(self, value: Any, where: str, line: int | None) -> Mapping | None:
        if isinstance(value, Mapping):
            return value
        self.error(where, f"expected a mapping (key: value lines), got {show(value)}", line)
        return None

    def sequence(self, value: Any, where: str, line: int | None) -> Sequence | None:
        if isinstance(value, Sequence):
            return value
        self.error(where, f"expected a list (- item lines), got {show(value)}", line)
        return None

    def keys(
        self, m: Mapping, where: str, allowed: Iterable[str], required: Iterable[str] = ()
    ) -> None:
        allowed = list(allowed)
        for key in m:
            if key not in allowed:
                self.error(
                    join(where, str(key)),
                    f"unknown key{did_you_mean(key, allowed)};"
                    f" expected one of {', '.join(allowed)}",
                    line_of(m, key),
                )
        for key in required:
            if key not in m:
                self.error(where, f"missing required key {key!r}", m.line)

    # -- scalars ------------------------------------------------------------------
    def quantity(
        self,
        m: Mapping,
        key: str,
        where: str,
        kind: str,
        default: float | None = None,
        *,
        positive: bool = False,
        maximum: float | None = None,
    ) -> float | None:
        if key not in m:
            return default
        at = join(where, key)
        try:
            value = parse_quantity(m[key], kind)
        except UnitError as exc:
            self.error(at, str(exc), line_of(m, key))
            return default
        if positive and value <= 0:
            self.error(at, f"{m[key]!r} must be more than zero", line_of(m, key))
        if maximum is not None and value > maximum:
            self.error(
                at, f"{m[key]!r} is more than the maximum ({maximum * 100:g}%)", line_of(m, key)
            )
        return value

    def integer(self, m: Mapping, key: str, where: str, default: int, *, minimum: int = 0) -> int:
        if key not in m:
            return default
        v = m[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(join(where, key), f"expected a whole number, got {show(v)}", line_of(m, key))
            return default
        if v < minimum:
            self.error(join(where, key), f"{v} must be at least {minimum}", line_of(m, key))
            return default
        return v

    def number(
        self, m: Mapping, key: str, where: str, default: float, *, minimum: float | None = 0.0
    ) -> float:
        """A plain number (blocks, frames per second): no unit."""
        if key not in m:
            return default
        v = m[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.error(join(where, key), f"expected a number, got {show(v)}", line_of(m, key))
            return default
        if minimum is not None and v < minimum:
            self.error(join(where, key), f"{v} must not be less than {minimum:g}", line_of(m, key))
            return default
        return float(v)

    def string(
        self,
        m: Mapping,
        key: str,
        where: str,
        default: str | None = None,
        *,
        choices: Iterable[str] | None = None,
    ) -> str | None:
        if key not in m:
            return default
        v = m[key]
        at = join(where, key)
        if not isinstance(v, str):
            self.error(at, f"expected text, got {show(v)}", line_of(m, key))
            return default
        if choices is not None:
            choices = list(choices)
            if v not in choices:
                self.error(
                    at,
                    f"{v!r} is not one of {', '.join(choices)}{did_you_mean(v, choices)}",
                    line_of(m, key),
                )
                return default
        return v

    def name(self, m: Mapping, key: str, where: str) -> str | None:
        v = self.string(m, key, where)
        if v is None:
            if key not in m:
                self.error(where, f"missing required key {key!r}", m.line)
            return None
        if not NAME_RE.match(v):
            self.error(
                join(where, key),
                f"{v!r} is not a valid name (1-32 of A-Z a-z 0-9 _ . -)",
                line_of(m, key),
            )
            return None
        return v

    def boolean(self, m: Mapping, key: str, where: str, default: bool) -> bool:
        if key not in m:
            return default
        v = m[key]
        if not isinstance(v, bool):
            self.error(join(where, key), f"expected true or false, got {show(v)}", line_of(m, key))
            return default
        return v


def join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def show(v: Any) -> str:
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, Sequence):
        return "a list"
    return repr(v)


def items(
    c: Checker, parent: Mapping, key: str, where: str
) -> list[tuple[int, Any, str, int | None]]:
    """(index, item, where, line) of a list under ``parent[key]`` (absent: none)."""
    if key not in parent or parent[key] is None:
        return []
    seq = c.sequence(parent[key], join(where, key), line_of(parent, key))
    if seq is None:
        return []
    return [(i, item, join(join(where, key), i), line_of(seq, i)) for i, item in enumerate(seq)]
