"""Benchmark registry: ``shiftcraft bench <name> [options] [--json]``.

Each benchmark module has ``add_arguments(parser)`` and ``run(args) -> dict``.
Progress goes to stderr; the result is one JSON object on stdout (``--json``)
or readable ``key: value`` lines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHES: dict[str, tuple[str, str]] = {
    "worldgen": ("shiftcraft.bench.worldgen", "terrain sections generated per second, wire size"),
    "tick": ("shiftcraft.bench.tick", "server TPS and tick times with N bot processes"),
    "bots": ("shiftcraft.bench.bots", "bots one machine drives while the sim holds 20 TPS"),
    "store": ("shiftcraft.bench.store", "edits committed per second through group commit"),
    "render": ("shiftcraft.bench.render", "ray-caster FPS and frame times at 360p and 720p"),
    "client-local": ("shiftcraft.bench.client_local", "headless local-mode client walking a path"),
    "client-memory": ("shiftcraft.bench.client_memory", "client RSS: local vs remote rendering"),
    "stream": ("shiftcraft.bench.stream", "remote rendering over WebRTC: g2g latency, fps, Mbit/s"),
    "stream-capacity": ("shiftcraft.bench.stream_capacity", "sessions one render node sustains"),
    "link-emulator": ("shiftcraft.bench.link_emulator", "emulator latency, CPU/Mbit, RTT, rate"),
    "migration": ("shiftcraft.bench.migration", "make-before-break switches: gaps, rollbacks"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHES:
        print("usage: shiftcraft bench <name> [options] [--json]\n\nbenchmarks:")
        for name, (_, help_) in BENCHES.items():
            print(f"  {name:<12} {help_}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(BENCHES[name][0])
    parser = argparse.ArgumentParser(prog=f"shiftcraft bench {name}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    result = module.run(args)
    result = {"bench": name, **result}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def progress(msg: str) -> None:
    """Benchmarks report progress on stderr so stdout stays one JSON object."""
    print(msg, file=sys.stderr, flush=True)
