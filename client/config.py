"""Client settings: one dataclass, filled by the CLI, tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from client.script import Action


@dataclass(slots=True)
class ClientConfig:
    server: str = "ws://127.0.0.1:8765"
    name: str = "player"
    token: str = ""
    width: int = 960
    height: int = 540
    render_scale: float = 1.0  # render at this fraction of the window size
    view_distance: int = 96  # blocks; capped by what the server sends (welcome)
    fov_deg: float = 70.0
    headless: bool = False
    seconds: float | None = None  # quit after this long (from start)
    max_fps: float = 0.0  # 0 = as fast as it goes
    screenshot: str | None = None  # PNG path
    screenshot_after: float = 1.0  # seconds after the world has loaded
    script: list[Action] | None = None
    loop_script: bool = False
    hud: bool = True
    latency_ms: float = 0.0  # emulated one-way latency, added in both directions
    input_hz: float = 30.0  # input messages per second (frames are batched)
    connect_timeout: float = 5.0
    reconnect: bool = True
    render_threads: int | None = None
    # Remote rendering (issue 4): "local" renders here; "remote" shows a render
    # node's WebRTC stream (client/remote.py) and holds no replica or renderer.
    render: str = "local"
    render_node: str = ""  # the node's URL (ws:// or http://), for render="remote"
    stream_fps: int = 30
    stream_bitrate: int = 1_000_000  # bits/s ceiling
    stream_codec: str = ""  # "" = H264 if both sides have it, or "VP8"

    def validate(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"resolution {self.width}x{self.height} is too small (min 16x16)")
        if not 0.1 <= self.render_scale <= 1.0:
            raise ValueError("render scale must be within 0.1..1")
        if not 16 <= self.view_distance <= 512:
            raise ValueError("view distance must be within 16..512 blocks")
        if self.input_hz <= 0 or self.latency_ms < 0 or self.max_fps < 0:
            raise ValueError("input rate must be positive; latency and max fps not negative")
        if self.render not in ("local", "remote"):
            raise ValueError(f"render must be local or remote, not {self.render!r}")
        if self.render == "remote" and not self.render_node:
            raise ValueError("--render remote needs --render-node URL")
