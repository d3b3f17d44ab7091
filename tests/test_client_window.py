"""A real pygame window (SDL's dummy video driver) runs the game loop.

In-process: keyboard and mouse events posted to SDL's queue go through the
same event pump as a person's; the window is resized; Ctrl-Q quits and no
task is left behind. As a process: ``shiftcraft play`` with a window for
a few seconds against a real server, exit status 0.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys

import pytest

from client.config import ClientConfig
from client.display import WindowDisplay
from client.game import Game
from client.headless import GameRunner

pygame = pytest.importorskip("pygame")


def post(kind: int, **attrs) -> None:
    pygame.event.post(pygame.event.Event(kind, **attrs))


def key(kind: int, k: int, mod: int = 0) -> None:
    post(kind, key=k, mod=mod, unicode="", scancode=0)


async def test_window_loop_handles_input_resize_and_quits_cleanly(module_server, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    before = asyncio.all_tasks()
    display = WindowDisplay(160, 90)
    cfg = ClientConfig(server=module_server.url, name="win_alice", width=160, height=90)
    cfg.max_fps = 60
    game = Game(cfg, display)
    run = GameRunner(game)
    async with run:
        await run.until_loaded()
        c = game.controls
        assert not c.pointer_grabbed
        assert "click to capture" in (game.hud_state(0.0).status or "")

        # The click that grabs the pointer does not break a block.
        post(pygame.MOUSEBUTTONDOWN, button=1, pos=(80, 45))
        post(pygame.MOUSEBUTTONUP, button=1, pos=(80, 45))
        await run.frames(2)
        assert c.pointer_grabbed and game.replica.stats.edits_predicted == 0

        # Mouse right turns right (yaw decreases); W walks that way.
        yaw0 = c.yaw
        post(pygame.MOUSEMOTION, rel=(100, 0), pos=(80, 45), buttons=(0, 0, 0))
        await run.frames(2)
        assert c.yaw == pytest.approx(yaw0 - 100 * 0.0025)
        start = game.predictor.render_position()
        key(pygame.KEYDOWN, pygame.K_w)
        await run.sleep(0.4)
        key(pygame.KEYUP, pygame.K_w)
        await run.frames(2)
        end = game.predictor.render_position()
        moved = (end[0] - start[0], end[2] - start[2])
        assert math.hypot(*moved) > 1.0
        assert math.atan2(moved[0], moved[1]) == pytest.approx(c.yaw, abs=0.05)

        # Hotbar keys and wheel, F3, a double-tapped space toggles flying.
        key(pygame.KEYDOWN, pygame.K_3)
        post(pygame.MOUSEWHEEL, x=0, y=-1, flipped=False)
        key(pygame.KEYDOWN, pygame.K_F3)
        await run.frames(2)
        assert c.selected == 3 and c.debug
        assert any(line.startswith("tick ") for line in game.hud_state(0.0).debug)
        for _ in range(2):
            key(pygame.KEYDOWN, pygame.K_SPACE)
            key(pygame.KEYUP, pygame.K_SPACE)
            await run.frames(1)
        assert c.fly
        await run.until(lambda g: g.server_state is not None and g.server_state[5], timeout=3)

        # Left click breaks the block under the crosshair (look down first).
        c.set_look(c.yaw, -1.2)
        await run.frames(2)
        assert game.target is not None
        post(pygame.MOUSEBUTTONDOWN, button=1, pos=(80, 45))
        post(pygame.MOUSEBUTTONUP, button=1, pos=(80, 45))
        await run.until(lambda g: g.replica.stats.edits_confirmed >= 1, timeout=5)

        # The window is resized: the renderer follows.
        pygame.display.set_mode((200, 120), pygame.RESIZABLE)
        await run.until(lambda g: g.source.size == (200, 120), timeout=3)
        assert game.canvas.shape == (120, 200, 3)

        # Esc releases the pointer; Ctrl-Q quits.
        key(pygame.KEYDOWN, pygame.K_ESCAPE)
        await run.frames(1)
        assert not c.pointer_grabbed
        rendered = game.rendered
        key(pygame.KEYDOWN, pygame.K_q, mod=pygame.KMOD_LCTRL)
        code = await asyncio.wait_for(run.task, 10)
    assert code == 0
    assert rendered > 20 and display.presented >= rendered
    assert display.events >= 10 and display.resizes >= 1
    assert game.session.state.value == "closed"
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - before
    leftover.discard(asyncio.current_task())
    assert not leftover, leftover


def test_play_command_with_a_window_runs_and_exits(module_server):
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    proc = subprocess.run(
        [sys.executable, "-m", "shiftcraft", "play", "--server", module_server.url,
         "--name", "win_cli", "--res", "160x90", "--seconds", "3", "--max-fps", "60"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stderr.strip().splitlines()[-1].removeprefix("shiftcraft play: "))
    assert summary["rendered"] > 30 and summary["sections"] > 50
    assert "compiling renderer (first start only)..." in proc.stderr
