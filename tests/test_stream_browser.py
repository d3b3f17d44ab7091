"""The browser page, in a real headless Chromium (Debian's ``chromium``), driven by Playwright.

The page the node serves opens a WebRTC session (the node plays on the sim
for it), shows the video and moves the player with the keyboard. Skipped
when Chromium or the Playwright package is missing (never downloads a
browser: ``playwright install`` is not used).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
from machine import CHROMIUM
from playwright import sync_api

from renderer.node.launch import NodeProcess, start_node

pytestmark = [pytest.mark.timeout(240), pytest.mark.requires("chromium")]
VIEW = 48
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    # Host candidates as plain addresses, not mDNS names, on this loopback test.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]  # fmt: skip


@pytest.fixture(scope="module")
def node(module_server, tmp_path_factory) -> Iterator[NodeProcess]:
    log = tmp_path_factory.mktemp("node") / "node.log"
    proc = start_node(module_server.url, "--view-distance", str(VIEW), log=log)
    yield proc
    proc.stop()


@pytest.fixture
def page(tmp_path) -> Iterator:
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 640, "height": 360},
        )  # fmt: skip
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


def session(node: NodeProcess, player: str) -> dict | None:
    for s in node.stats()["session_list"]:
        if s["player"] == player:
            return s
    return None


def test_browser_plays_and_moves_with_a_key(node, page) -> None:
    page.goto(f"{node.http_url}/?name=webby&w=320&h=180&view={VIEW}")
    page.wait_for_function(
        "window.shiftcraft && window.shiftcraft.framesShown > 15", timeout=60_000
    )
    info = page.evaluate("({s: window.shiftcraft.state, c: window.shiftcraft.codec})")
    assert info["s"] == "streaming" and info["c"] in ("H264", "VP8"), info
    assert page.evaluate("document.getElementById('video').videoWidth") == 320
    before = session(node, "webby")
    assert before is not None and before["state"] == "streaming"
    shot0 = page.locator("#video").screenshot()
    # Walk forward for a second: the node forwards the input to the sim and the
    # sim's acks move the camera.
    page.locator("body").focus()
    page.keyboard.down("KeyW")
    page.wait_for_timeout(1000)
    page.keyboard.up("KeyW")
    deadline = time.monotonic() + 5
    moved = 0.0
    while time.monotonic() < deadline:
        now = session(node, "webby")
        assert now is not None
        dx = now["camera"][0] - before["camera"][0]
        dz = now["camera"][2] - before["camera"][2]
        moved = math.hypot(dx, dz)
        if moved > 2.0:
            break
        time.sleep(0.2)
    assert moved > 2.0, (before["camera"], now["camera"])
    page.wait_for_timeout(500)
    assert page.locator("#video").screenshot() != shot0  # the picture moved too
    stats = page.evaluate(
        "({fps: window.shiftcraft.fps, kbps: window.shiftcraft.kbps,"
        " g2g: window.shiftcraft.g2gMs, sent: window.shiftcraft.inputsSent})"
    )
    assert stats["fps"] > 15 and stats["kbps"] > 10 and stats["sent"] > 30, stats
    assert stats["g2g"] is not None and 0 < stats["g2g"] < 500, stats
    assert page.locator("#st-fps").inner_text() != "-"


def test_browser_shows_a_clear_error_when_the_node_dies(module_server, page, tmp_path) -> None:
    doomed = start_node(module_server.url, "--view-distance", str(VIEW), log=tmp_path / "n.log")
    try:
        page.goto(f"{doomed.http_url}/?name=webdoom&w=160&h=90&view={VIEW}")
        page.wait_for_function(
            "window.shiftcraft && window.shiftcraft.framesShown > 5", timeout=60_000
        )
        doomed.kill()
        page.wait_for_function("window.shiftcraft.error !== null", timeout=10_000)
        status = page.locator("#status")
        assert "render node" in status.inner_text()
        assert "error" in (status.get_attribute("class") or "")
    finally:
        doomed.kill()
