"""YAML that remembers where each value came from, for errors that say ``file:line``.

`load_yaml` parses with PyYAML's safe loader, but every mapping becomes a
`Mapping` (a dict) and every sequence a `Sequence` (a list) that also hold
the line of each key or item, so the validator can point at the exact line
of a bad value. Duplicate keys are an error here (PyYAML would silently keep
the last one, and a scenario with two ``latency:`` lines is a mistake).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class SourceError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class Mapping(dict):
    """A dict with ``line`` (of the mapping) and ``lines[key]`` (of each key)."""

    line: int = 0
    lines: dict[Any, int]


class Sequence(list):
    """A list with ``line`` (of the sequence) and ``lines[i]`` (of each item)."""

    line: int = 0
    lines: list[int]


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Mapping:
        out = Mapping()
        out.line = node.start_mark.line + 1
        out.lines = {}
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                line = key_node.start_mark.line + 1
                raise SourceError("a key must be a plain value", line) from None
            if key in out:
                raise SourceError(
                    f"duplicate key {key!r} (first on line {out.lines[key]})",
                    key_node.start_mark.line + 1,
                )
            out[key] = self.construct_object(value_node, deep=True)
            out.lines[key] = key_node.start_mark.line + 1
        return out

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> Sequence:
        out = Sequence(self.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.lines = [child.start_mark.line + 1 for child in node.value]
        return out


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_sequence)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file into `Mapping` / `Sequence` / scalars; `SourceError` on bad YAML."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise SourceError(f"not valid YAML: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise SourceError(f"not valid YAML: {exc}") from None


def line_of(container: Any, key: Any) -> int | None:
    """The line of ``container[key]`` when known."""
    if isinstance(container, Mapping):
        return container.lines.get(key, container.line)
    if isinstance(container, Sequence) and isinstance(key, int) and 0 <= key < len(container.lines):
        return container.lines[key]
    return getattr(container, "line", None)
