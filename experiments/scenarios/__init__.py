"""Declarative experiment scenarios: YAML files here, validated into a `Scenario`.

* ``*.yaml`` — the shipped scenarios (``smoke`` for tests; four experiments);
* `units` — quantities with units (``30s``, ``7.21mbit``, ``1%``) to base units;
* `source` — YAML that keeps line numbers, for ``file:line`` errors;
* `model` — the dataclasses (nodes, links, device profiles, actions, runs);
* `checks` — the validator's toolkit: problems with lines, checked reads;
* `load` — the format's validation: every problem at once, with did-you-means;
* `cli` — ``validate_main(argv)`` (``shiftcraft experiment validate FILE``).

The format is documented in docs/scenarios.md.
"""

from pathlib import Path

from experiments.scenarios.load import Problem, ScenarioError, load
from experiments.scenarios.model import Scenario

SCENARIO_DIR = Path(__file__).resolve().parent


def shipped() -> list[Path]:
    """The scenario files that ship with Shiftcraft."""
    return sorted(SCENARIO_DIR.glob("*.yaml"))


def find(name_or_path: str) -> Path:
    """A path as given, or the shipped scenario of that name (``smoke``)."""
    p = Path(name_or_path)
    if p.exists() or p.suffix in (".yaml", ".yml"):
        return p
    return SCENARIO_DIR / f"{name_or_path}.yaml"


__all__ = ["SCENARIO_DIR", "Problem", "Scenario", "ScenarioError", "find", "load", "shipped"]
