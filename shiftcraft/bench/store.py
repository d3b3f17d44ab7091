"""``shiftcraft bench store``: edits committed per second through group commit.

Edits are applied to a `World`, and each batch (one tick's worth) is encoded
and written to a real SQLite file in one transaction — the server's exact
path. The same run measures a baseline that commits every edit on its own,
so the speed-up is a ratio from one machine at one moment.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from shiftcraft.bench import progress
from world.blocks import BlockId
from world.codec import encode_section
from world.generator import FlatGenerator
from world.map import World
from world.store import SectionStore

PLACEABLE = [BlockId.STONE, BlockId.PLANKS, BlockId.BRICK, BlockId.GLASS, BlockId.AIR]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--batch", type=int, default=200, help="edits per group commit (a tick)")
    parser.add_argument("--area", type=int, default=128, help="edits fall in an area this wide")
    parser.add_argument("--durable", action="store_true", help="synchronous=FULL (fsync)")


def _commit_dirty(world: World, store: SectionStore) -> None:
    dirty = world.take_dirty()
    store.commit(sections={key: encode_section(world.section(key)) for key in dirty})


def _measure(store: SectionStore, batch: int, area: int, seconds: float, seed: int) -> dict:
    rng = random.Random(seed)
    world = World(FlatGenerator(height=16), store)
    edits = 0
    commit_s: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(batch):
            x, z = rng.randrange(-area // 2, area // 2), rng.randrange(-area // 2, area // 2)
            world.set_block(x, rng.randrange(16, 24), z, rng.choice(PLACEABLE))
        t0 = time.perf_counter()
        _commit_dirty(world, store)
        commit_s.append(time.perf_counter() - t0)
        edits += batch
    elapsed = time.perf_counter() - start
    ms = np.asarray(commit_s) * 1e3
    return {
        "edits_per_s": edits / elapsed,
        "commits": len(commit_s),
        "commit_p50_ms": float(np.percentile(ms, 50)),
        "commit_p99_ms": float(np.percentile(ms, 99)),
    }


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="shiftcraft-store-") as tmp:
        progress(f"group commit: {args.batch} edits per transaction for {args.seconds}s")
        with SectionStore(Path(tmp) / "group.sqlite3", durable=args.durable) as store:
            group = _measure(store, args.batch, args.area, args.seconds, seed=1)
            sections = store.section_count()
        progress(f"baseline: one transaction per edit for {args.seconds}s")
        with SectionStore(Path(tmp) / "single.sqlite3", durable=args.durable) as store:
            single = _measure(store, 1, args.area, args.seconds, seed=1)
    return {
        "edits_per_s": round(group["edits_per_s"], 1),
        "edits_per_commit": args.batch,
        "commit_p50_ms": round(group["commit_p50_ms"], 3),
        "commit_p99_ms": round(group["commit_p99_ms"], 3),
        "sections_stored": sections,
        "baseline_edits_per_s": round(single["edits_per_s"], 1),
        "speedup_vs_commit_per_edit": round(group["edits_per_s"] / single["edits_per_s"], 2),
        "durable": args.durable,
    }
