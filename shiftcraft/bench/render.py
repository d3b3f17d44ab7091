"""``shiftcraft bench render``: ray-caster frame rate along a fixed camera path.

The path walks a player's eye (feet on the terrain + EYE_HEIGHT) over a
generated world, starting at the dry lowland spot nearest to spawn that has
both trees and open water within sight, heading across the water while the
view turns left and right and stays near the horizon, so the 96-block view
distance is what the rays cover. The same path is rendered at 640×360 and
1280×720 with textures, shading, AO and fog on. ``--avatars N`` puts N other
players on the path ahead, walking with the camera (what a render node
draws for a player among others).

The view is kept the way a client keeps it: a `WorldView` recentred on the
camera, sections loaded as they come into range. Loading and the JIT
warm-up are outside the timed part: only `Renderer.render` is timed.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numba
import numpy as np

from renderer import Camera, Renderer, WorldView, warm_up
from renderer.png import save_png
from shiftcraft.bench import progress
from world.blocks import BLOCKS, BlockId
from world.coords import SEA_LEVEL
from world.map import World
from world.physics import EYE_HEIGHT
from world.terrain import Biome, TerrainGenerator

RESOLUTIONS = ((640, 360), (1280, 720))
VIEW_DISTANCE = 96
PATH_LENGTH = 64.0  # blocks walked over the whole path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=200, help="frames per resolution")
    parser.add_argument("--seed", type=int, default=1234, help="world seed")
    parser.add_argument("--threads", type=int, default=None, help="numba threads (default all)")
    parser.add_argument(
        "--save", type=Path, default=None, help="write the first and middle frames as PNG here"
    )
    parser.add_argument(
        "--avatars", type=int, default=0, help="other players on the path ahead of the camera"
    )
    parser.add_argument(
        "--full-trace",
        action="store_true",
        help="one ray per pixel (no subsampling): the baseline the shortcut is measured against",
    )


def find_start(gen: TerrainGenerator) -> tuple[float, float, float]:
    """(x, z, yaw): the nearest dry lowland point to spawn with trees and water
    around it, facing the water. Deterministic for a seed."""
    sx, _, sz = gen.spawn_point()
    ring = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    best = None
    for radius in range(0, 1024, 16):
        n = max(1, int(2 * math.pi * radius / 16))
        for k in range(n):
            a = 2 * math.pi * k / n
            x, z = int(sx + radius * math.cos(a)), int(sz + radius * math.sin(a))
            here = gen.surface(np.array([x]), np.array([z]))
            h = int(here.height[0])
            if not (SEA_LEVEL + 1 <= h <= SEA_LEVEL + 8) or here.biome[0] in (
                Biome.MOUNTAINS,
                Biome.DESERT,
            ):
                continue
            # Water and forest in rings 16..64 blocks out.
            rx = np.concatenate([x + r * np.cos(ring) for r in (16, 32, 48, 64)])
            rz = np.concatenate([z + r * np.sin(ring) for r in (16, 32, 48, 64)])
            around = gen.surface(rx.astype(np.int64), rz.astype(np.int64))
            wet = around.height < SEA_LEVEL
            forest = around.biome == Biome.FOREST
            if 0.15 <= wet.mean() <= 0.6 and forest.mean() >= 0.15:
                # Face the water: the mean direction of the wet samples.
                wx = float(np.mean(rx[wet] - x))
                wz = float(np.mean(rz[wet] - z))
                best = (x + 0.5, z + 0.5, math.atan2(wx, wz))  # yaw 0 looks +z
                break
        if best is not None:
            return best
    return (sx, sz, 0.0)


def _feet_y(world: World, gen: TerrainGenerator, x: float, z: float) -> float:
    """Where a walker's feet are: on the terrain, or swimming on the sea."""
    h = int(gen.surface(np.array([math.floor(x)]), np.array([math.floor(z)])).height[0])
    return float(max(h, SEA_LEVEL) + 1)


def _clear(world: World, x: float, y: float, z: float) -> bool:
    for dy in (0, 1):
        b = world.get_block(math.floor(x), math.floor(y) + dy, math.floor(z))
        if BLOCKS.solid[b] and b != BlockId.LEAVES:
            return False
    return True


def camera_path(world: World, gen: TerrainGenerator, frames: int) -> list[Camera]:
    """The fixed walk: along the start heading, weaving sideways, turning the
    view ±35° and nodding slightly around the horizon."""
    x0, z0, yaw0 = find_start(gen)
    fx, fz = math.sin(yaw0), math.cos(yaw0)
    cams = []
    for i in range(frames):
        s = i / max(1, frames - 1)
        side = 6.0 * math.sin(2 * math.pi * s)
        x = x0 + fx * PATH_LENGTH * s - fz * side
        z = z0 + fz * PATH_LENGTH * s + fx * side
        feet = _feet_y(world, gen, x, z)
        for _ in range(8):  # step around tree trunks rather than into them
            if _clear(world, x, feet, z):
                break
            x += 1.0
            feet = _feet_y(world, gen, x, z)
        yaw = yaw0 + 0.6 * math.sin(2 * math.pi * 1.5 * s)
        pitch = -0.06 + 0.05 * math.sin(2 * math.pi * 2 * s)
        cams.append(Camera(x, feet + EYE_HEIGHT, z, yaw, pitch))
    return cams


def avatars_ahead(cams: list[Camera], i: int, n: int) -> list[tuple[float, float, float, float]]:
    """``n`` players (feet, yaw) where the camera will be 8, 16, ... frames
    on, a block and a half to alternate sides of the path."""
    out = []
    for k in range(n):
        c = cams[min(len(cams) - 1, i + 8 * (k + 1))]
        side = 1.5 if k % 2 else -1.5
        out.append(
            (c.x + side * math.cos(c.yaw), c.y - EYE_HEIGHT, c.z - side * math.sin(c.yaw), c.yaw)
        )
    return out


def _follow(view: WorldView, world: World, cam: Camera) -> None:
    """What a client does as it moves: recentre, load what came into range."""
    view.recenter(cam.x, cam.z)
    for key in view.missing_sections(VIEW_DISTANCE + 16):
        view.set_section(key, world.section(key))


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        numba.set_num_threads(args.threads)
    gen = TerrainGenerator(args.seed)
    world = World(gen)
    progress("render: finding the path and generating terrain...")
    cams = camera_path(world, gen, args.frames)
    view = WorldView(radius=VIEW_DISTANCE + 16, center=(cams[0].x, cams[0].z))
    for cam in cams:  # generate every section once, outside the timing
        _follow(view, world, cam)
    warm_up(progress)

    result: dict = {}
    for width, height in RESOLUTIONS:
        renderer = Renderer(
            width, height, view_distance=VIEW_DISTANCE, subsample=not args.full_trace
        )
        # Untimed: how far the subsampled frames are from a full trace.
        full = Renderer(width, height, view_distance=VIEW_DISTANCE, subsample=False)
        diffs: list[np.ndarray] = []
        _follow(view, world, cams[0])
        for _ in range(3):  # first-touch of buffers and caches
            renderer.render(view, cams[0])
        times = []
        cpu = 0.0
        for i, cam in enumerate(cams):
            _follow(view, world, cam)
            c0 = time.process_time()
            t0 = time.perf_counter()
            others = avatars_ahead(cams, i, args.avatars)
            frame = renderer.render(view, cam, others)
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
            if renderer.subsample and i % 10 == 0:
                ref = full.render(view, cam, others)
                diffs.append(np.abs(frame.astype(np.int16) - ref.astype(np.int16)).max(axis=2))
            if args.save is not None and i in (0, len(cams) // 2):
                args.save.mkdir(parents=True, exist_ok=True)
                save_png(args.save / f"render_{width}x{height}_{i:04d}.png", frame)
        ms = np.array(times) * 1e3
        tag = f"{width}x{height}"
        result[f"fps_{tag}"] = round(len(ms) / (ms.sum() / 1e3), 1)
        result[f"p50_ms_{tag}"] = round(float(np.percentile(ms, 50)), 2)
        result[f"p99_ms_{tag}"] = round(float(np.percentile(ms, 99)), 2)
        # CPU time (all threads) per frame: what the frame costs, whatever
        # else the machine is running; wall time is what a player sees.
        result[f"cpu_ms_per_frame_{tag}"] = round(cpu / len(ms) * 1e3, 2)
        if diffs:
            # Against a full trace of the same frames (every 10th): the
            # largest channel difference, the mean, and the share of pixels
            # off by more than 8/255 (edges where a block pokes between rays).
            d = np.stack(diffs)
            result[f"subsample_max_diff_{tag}"] = int(d.max())
            result[f"subsample_mean_diff_{tag}"] = round(float(d.mean()), 4)
            result[f"subsample_px_over_8_{tag}"] = round(float((d > 8).mean()), 6)
        progress(f"render {tag}: {result[f'fps_{tag}']} fps, p99 {result[f'p99_ms_{tag}']} ms")
    result.update(
        frames=args.frames,
        avatars=args.avatars,
        seed=args.seed,
        view_distance=VIEW_DISTANCE,
        path_start=[round(cams[0].x, 1), round(cams[0].z, 1)],
        subsample=not args.full_trace,
        threads=numba.get_num_threads(),
        threading_layer=numba.threading_layer(),
        numba=numba.__version__,
        cpus=os.cpu_count(),
        load_avg_1m=round(os.getloadavg()[0], 2),
    )
    return result
