"""``shiftcraft experiment validate FILE...``: check scenario files, say what they would run.

`validate_main` is the entry point the ``experiment`` command calls for its
``validate`` subcommand. Exit status: 0 when every file is valid (warnings
are printed but do not fail), 1 when any file has errors (all of them are
printed, ``file:line: where: what``, on stderr), 2 for usage errors.
A name without a path (``smoke``) means the shipped scenario of that name.
"""

from __future__ import annotations

import argparse
import json
import sys

from experiments.scenarios import ScenarioError, find, load, shipped
from experiments.scenarios.model import Scenario
from experiments.scenarios.units import format_duration


def describe(s: Scenario) -> str:
    runs = s.runs()
    variants = s.scheduler.runs()
    lines = [
        f"{s.path}: ok: {s.name}",
        f"  runs      {len(runs)} = {len(variants)} variant(s) x {s.repeats} repeat(s)"
        f" ({', '.join(v.name for v in variants)}), seeds {s.seeds[: s.repeats]}",
        f"  time      {format_duration(s.warmup_s)} warm-up + {format_duration(s.duration_s)}"
        f" per run, {format_duration(s.total_seconds)} in all (plus start-up)",
        f"  nodes     sim at {s.sim.location}; render: "
        + (", ".join(f"{n.name} ({n.location}, {n.capacity})" for n in s.render_nodes) or "none"),
        "  clients   "
        + (", ".join(f"{c.name} ({c.device}, {c.mode})" for c in s.clients) or "none"),
        "  bots      "
        + (", ".join(f"{g.count} {g.behaviour} ({g.name})" for g in s.bots) or "none"),
        f"  links     {len(s.links)}, actions {len(s.actions)}",
    ]
    return "\n".join(lines)


def validate_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="shiftcraft experiment validate",
        description="check scenario files (docs/scenarios.md) and summarise what they run",
    )
    p.add_argument(
        "files", nargs="*", help="scenario files or shipped names (default: all shipped)"
    )
    p.add_argument("--json", action="store_true", help="print each validated model as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    args = p.parse_args(argv)
    files = [find(f) for f in args.files] or shipped()
    failed = 0
    for path in files:
        try:
            scenario = load(path, on_warning=lambda w: print(w, file=sys.stderr))
        except ScenarioError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(scenario.to_dict()))
        elif not args.quiet:
            print(describe(scenario))
    if failed:
        print(f"{failed} of {len(files)} scenario file(s) invalid", file=sys.stderr)
    return 1 if failed else 0


main = validate_main

if __name__ == "__main__":
    sys.exit(validate_main())
