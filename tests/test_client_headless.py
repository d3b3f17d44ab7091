"""``shiftcraft play --headless``: screenshots of real terrain, and clear errors.

The screenshot comes from the command itself (a real server with the
terrain generator, seed 1234, the real renderer) and is checked for what a
person would call "terrain": many colours, sky at the top, ground below.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from client.config import ClientConfig
from client.display import HeadlessDisplay, WindowDisplay
from client.game import Game
from client.headless import GameRunner
from client.session import ConnState, SimSession

pygame = pytest.importorskip("pygame")


def play(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shiftcraft", "play", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def load_png(path: Path) -> np.ndarray:
    surf = pygame.image.load(str(path))
    return pygame.surfarray.array3d(surf).transpose(1, 0, 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_headless_screenshot_of_spawn_shows_terrain(server_factory, tmp_path):
    server = server_factory(
        "--generator", "terrain", "--seed", "1234", "--view-distance", "32"
    )  # fmt: skip
    shot = tmp_path / "spawn.png"
    proc = play(
        "--headless", "--server", server.url, "--name", "shot", "--res", "160x90",
        "--no-hud", "--script", "look 290 -12", "--screenshot", str(shot), "--after", "0.3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"screenshot saved to {shot}" in proc.stderr
    img = load_png(shot).astype(np.int32)
    assert img.shape == (90, 160, 3)
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert colours > 200, colours  # textures, shading, fog: not a flat fill
    top, bottom = img[:8].reshape(-1, 3), img[-8:].reshape(-1, 3)
    # Sky: bluish and bright, smooth; ground: textured and not sky-coloured.
    assert (top[:, 2] > top[:, 0]).mean() > 0.9 and top.mean() > 150
    assert np.abs(bottom.mean(axis=0) - top.mean(axis=0)).max() > 30
    assert bottom.std(axis=0).mean() > top.std(axis=0).mean()


def test_headless_scripted_walk_and_edits(module_server, tmp_path):
    shot = tmp_path / "after.png"
    proc = play(
        "--headless", "--server", module_server.url, "--name", "head_walk", "--res", "160x90",
        "--max-fps", "60", "--seconds", "20",
        "--script", f"hop 1; look - -60; break; settle; place 3; settle; screenshot {shot}; quit",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert shot.exists()
    assert '"state": "closed"' in proc.stderr


def test_refused_connection_is_explained(tmp_path):
    url = f"ws://127.0.0.1:{free_port()}"
    proc = play("--headless", "--server", url, "--res", "32x18", timeout=120)
    assert proc.returncode == 1
    assert f"connection refused by {url}" in proc.stderr
    assert "is `shiftcraft server` running there?" in proc.stderr


def test_bad_url_and_no_display_are_explained():
    proc = play("--headless", "--server", "http://example.invalid/", "--res", "32x18")
    assert proc.returncode == 1 and "bad server URL" in proc.stderr, proc.stderr
    env = dict(os.environ)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        env.pop(var, None)
    proc = play("--server", "ws://127.0.0.1:1", env=env, timeout=60)
    assert proc.returncode == 2
    assert "--headless" in proc.stderr and "SDL_VIDEODRIVER=dummy" in proc.stderr


def test_wrong_token_is_explained(server_factory):
    server = server_factory("--generator", "flat", "--auth", "secret:s3cret")
    proc = play(
        "--headless", "--server", server.url, "--name", "mallory", "--token", "nope",
        "--res", "32x18",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "the server refused the token for 'mallory'" in proc.stderr


async def test_version_mismatch_is_explained(module_server):
    session = SimSession(module_server.url, "old_client", version=99)
    stop = asyncio.Event()
    task = asyncio.create_task(session.run_connection(stop))
    async with asyncio.timeout(10):
        while session.state is not ConnState.FAILED:
            await asyncio.sleep(0.02)
    assert session.status.code == "bad_version"
    assert "protocol version mismatch" in session.status.message
    stop.set()
    await session.close()
    await asyncio.wait_for(task, 5)


async def test_window_shows_why_it_cannot_connect(monkeypatch):
    # A window stays open on a failure and says why (the player may retry with R).
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    url = f"ws://127.0.0.1:{free_port()}"
    cfg = ClientConfig(server=url, name="lost", width=160, height=90, max_fps=30)
    game = Game(cfg, WindowDisplay(160, 90))
    async with GameRunner(game) as run:
        await run.until(lambda g: g.session.state is ConnState.FAILED, timeout=60)
        await run.frames(2)
        banner = game.hud_state(0.0).banner
        assert banner[0] == "cannot connect" and "connection refused" in banner[1]
        assert "press R to retry" in banner[2]
    assert run.task.result() == 0


def test_headless_display_keeps_the_last_frame():
    d = HeadlessDisplay(8, 8)
    frame = np.zeros((8, 8, 3), np.uint8)
    d.present(frame)
    assert d.last is frame and d.poll() == []
