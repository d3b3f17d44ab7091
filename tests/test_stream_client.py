"""``shiftcraft play --render remote``: the game client showing a render node's stream.

Real processes (sim, render node, and for the CLI tests the client too),
real WebRTC on loopback.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from client.config import ClientConfig
from client.display import HeadlessDisplay
from client.game import Game
from client.headless import GameRunner
from renderer.node.launch import NodeProcess, start_node

pygame = pytest.importorskip("pygame")
pytestmark = pytest.mark.timeout(180)
VIEW = 48


@pytest.fixture(scope="module")
def node(module_server, tmp_path_factory) -> Iterator[NodeProcess]:
    log = tmp_path_factory.mktemp("node") / "node.log"
    proc = start_node(module_server.url, "--view-distance", str(VIEW), log=log)
    yield proc
    proc.stop()


def play(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shiftcraft", "play", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_play_remote_headless_screenshot(module_server, node, tmp_path) -> None:
    shot = tmp_path / "remote.png"
    proc = play(
        "--headless", "--server", module_server.url, "--name", "rplay", "--res", "320x180",
        "--render", "remote", "--render-node", node.url, "--view-distance", str(VIEW),
        "--no-hud", "--max-fps", "60", "--seconds", "30",
        "--script", f"look 30 -10; walk 1; settle; screenshot {shot}; quit",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "remote: first_frame" in proc.stderr
    surf = pygame.image.load(str(shot))
    img = pygame.surfarray.array3d(surf).transpose(1, 0, 2).astype(np.int32)
    assert img.shape == (180, 320, 3)
    top, bottom = img[:10].reshape(-1, 3), img[-10:].reshape(-1, 3)
    assert (top[:, 2] > top[:, 0]).mean() > 0.9  # sky
    assert np.abs(bottom.mean(axis=0) - top.mean(axis=0)).max() > 30  # ground
    ended = node.stats()["ended"]
    assert ended.get("client_bye", 0) >= 1, ended


async def test_remote_game_sends_input_to_sim_and_node(module_server, node) -> None:
    config = ClientConfig(
        server=module_server.url, name="rgame", width=320, height=180, headless=True,
        render="remote", render_node=node.url, view_distance=VIEW, max_fps=60,
    )  # fmt: skip
    game = Game(config, HeadlessDisplay(320, 180), log=lambda line: None)
    async with GameRunner(game) as run:
        await run.until(lambda g: g.rendered >= 10, timeout=60)
        assert game.source.mode == "remote"
        assert len(game.replica) == 0  # remote mode keeps no world
        game.controls.set_look(1.0, -0.2)
        game.controls.forward = 1.0
        await run.sleep(1.0)
        game.controls.forward = 0.0
        await run.sleep(0.5)
        doc = await asyncio.to_thread(node.stats)
        mine = next(s for s in doc["session_list"] if s["player"] == "rgame")
        assert abs(mine["yaw"] - 1.0) < 1e-6 and mine["inputs"] > 30
        # The node's camera went where the sim put the player (it forwards acks).
        p = game.predictor
        sim_pos = game.server_state[2]
        assert np.hypot(mine["camera"][0] - sim_pos[0], mine["camera"][2] - sim_pos[2]) < 0.5
        assert np.hypot(sim_pos[0] - 0.5, sim_pos[2] - 0.5) > 2.0  # it walked
        assert p is not None
        # The HUD's crosshair target comes from the node (it has the world).
        game.controls.set_look(0.0, -1.2)
        await run.until(lambda g: g.target is not None, timeout=5)
        assert game.target.y < 64
        lines = game.debug_lines()
        assert any(line.startswith("remote streaming H264") for line in lines), lines


def test_play_remote_reports_a_dead_node_and_plays_on(module_server, tmp_path) -> None:
    doomed = start_node(module_server.url, "--view-distance", str(VIEW), log=tmp_path / "n.log")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "shiftcraft", "play", "--headless",
            "--server", module_server.url, "--name", "rdoomed", "--res", "160x90",
            "--render", "remote", "--render-node", doomed.url, "--seconds", "60",
        ],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            line = proc.stderr.readline()
            if "remote: first_frame" in line:
                break
        doomed.kill()
        # Said clearly, and the game goes on: it falls back to local rendering.
        said: list[str] = []
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end and proc.poll() is None:
            line = proc.stderr.readline()
            said.append(line)
            if "'outcome': 'fallback'" in line:
                break
        err = "".join(said)
        assert "'outcome': 'fallback'" in err and "render node" in err, err
        assert proc.poll() is None, err  # still playing
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        doomed.kill()


async def test_remote_session_opens_while_rendering_locally(module_server, node) -> None:
    """Make-before-break (issue 5) needs this: a local game keeps drawing while a
    stream for the same player opens, and the first decoded frame is reported."""
    from client.remote import RemoteOptions, RemoteStream

    config = ClientConfig(
        server=module_server.url, name="mbb", width=160, height=90, headless=True,
        view_distance=VIEW, max_fps=60,
    )  # fmt: skip
    game = Game(config, HeadlessDisplay(160, 90), log=lambda line: None)
    async with GameRunner(game) as run:
        await run.until_loaded(timeout=60)
        assert game.source.mode == "local"
        eye = game.eye()
        rendered0 = game.rendered
        stream = RemoteStream(
            node.url, "mbb", RemoteOptions(width=160, height=90, view_distance=VIEW),
            pos=(game.predictor.body.x, game.predictor.body.y, game.predictor.body.z),
            yaw=game.controls.yaw, pitch=game.controls.pitch,
        )  # fmt: skip
        t0 = time.monotonic()
        await stream.open()
        first = await stream.wait_first_frame(timeout=30)
        try:
            assert first - t0 < 10.0
            assert game.rendered > rendered0  # local frames kept coming meanwhile
            shown = await stream.next_frame(timeout=5)
            while shown is not None and shown.stamp is None:
                shown = await stream.next_frame(timeout=5)
            assert shown is not None
            assert np.allclose(shown.stamp.pos, eye, atol=0.2)  # the same camera
        finally:
            await stream.close()
