"""``shiftcraft bench worldgen``: terrain generation speed and wire size.

A fresh `TerrainGenerator` walks a square spiral of columns out from the
origin, so every column is new to it (nothing cached, nothing seen). For each
column all eight sections are requested, as a client joining would; the time
of those calls is what ``sections_per_s`` counts (one process, one thread).
Afterwards, outside the timed part, the *surface sections* (those holding the
top solid block of at least one (x, z) and both solid and non-solid blocks)
are encoded with the wire codec, giving ``wire_bytes_median`` / ``_p95``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np

from shiftcraft.bench import progress
from world.blocks import BLOCKS
from world.codec import encode_section
from world.coords import SECTION_SIZE, SECTIONS_Y
from world.terrain import TerrainGenerator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=5.0, help="time to generate for")
    parser.add_argument("--seed", type=int, default=1234, help="world seed")


def spiral() -> Iterator[tuple[int, int]]:
    """Column coordinates in a square spiral around (0, 0), each once."""
    x = z = 0
    yield x, z
    step = 1
    while True:
        for dx, dz, n in ((1, 0, step), (0, 1, step), (-1, 0, step + 1), (0, -1, step + 1)):
            for _ in range(n):
                x += dx
                z += dz
                yield x, z
        step += 2


def surface_sections(column: np.ndarray) -> list[int]:
    """Section y indices of a ``[y, z, x]`` column that hold the terrain surface."""
    solid = BLOCKS.solid[column]
    top = column.shape[0] - 1 - np.argmax(solid[::-1], axis=0)  # highest solid y
    out = []
    for sy in range(SECTIONS_Y):
        y0 = sy * SECTION_SIZE
        part = solid[y0 : y0 + SECTION_SIZE]
        has_top = ((top >= y0) & (top < y0 + SECTION_SIZE)).any()
        if has_top and part.any() and not part.all():
            out.append(sy)
    return out


def run(args: argparse.Namespace) -> dict:
    gen = TerrainGenerator(args.seed)
    # Warm up numpy's first-call paths far away from the measured spiral.
    for i in range(4):
        for sy in range(SECTIONS_Y):
            gen.generate_section((100_000 + i, sy, 100_000))

    gen_s = 0.0
    sections = columns = uniform = 0
    wire: list[int] = []
    encode_s = 0.0
    start = time.perf_counter()
    last_report = start
    for cx, cz in spiral():
        t0 = time.perf_counter()
        out = [gen.generate_section((cx, sy, cz)) for sy in range(SECTIONS_Y)]
        gen_s += time.perf_counter() - t0
        sections += len(out)
        columns += 1

        column = np.concatenate(out, axis=0)
        uniform += sum(1 for s in out if (s == s.flat[0]).all())
        for sy in surface_sections(column):
            t1 = time.perf_counter()
            data = encode_section(out[sy])
            encode_s += time.perf_counter() - t1
            wire.append(len(data))

        now = time.perf_counter()
        if now - last_report >= 1.0:
            progress(f"worldgen: {columns} columns, {sections / gen_s:.0f} sections/s")
            last_report = now
        if now - start >= args.seconds:
            break

    sizes = np.array(wire, dtype=np.float64)
    return {
        "sections_per_s": round(sections / gen_s, 1),
        "wire_bytes_median": float(np.median(sizes)) if sizes.size else None,
        "wire_bytes_p95": float(np.percentile(sizes, 95)) if sizes.size else None,
        "columns": columns,
        "sections": sections,
        "surface_sections": int(sizes.size),
        "uniform_fraction": round(uniform / sections, 3),
        "column_ms_mean": round(gen_s / columns * 1e3, 3),
        "encode_us_mean": round(encode_s / max(1, sizes.size) * 1e6, 1),
        "seed": args.seed,
        "seconds": round(time.perf_counter() - start, 2),
    }
