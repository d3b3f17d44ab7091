"""Client settings: one dataclass, filled by the CLI, tests and benchmarks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from client.script import Action

# Render-node names as the scheduler protocol accepts them (shiftcraft.protocol.NAME_RE).
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
NODE_URL_PREFIXES = ("ws://", "wss://", "http://", "https://")
LOCAL_TARGETS = ("local", "device")  # "device" is the scheduler's name for local rendering


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
    # Migration and telemetry (issue 5, docs/client.md "Telemetry").
    nodes: dict[str, str] = field(default_factory=dict)  # render node name -> URL
    migrate_at: list[tuple[float, str]] = field(default_factory=list)  # scripted switches
    migration_timeout_s: float = 3.0  # a target showing no frame by then is abandoned
    scheduler: str = ""  # ws://HOST:PORT of `shiftcraft scheduler` ("" = none)
    scheduler_token: str = ""
    device: str | None = None  # a client.device.DEVICE_PROFILES key
    battery_level: float | None = None  # start level 0..1 (models a battery)
    charging: bool | None = None  # on a charger at the start (models a battery)
    battery_capacity_j: float | None = None  # resize the modelled battery
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0  # HTTP /metrics, /health, /state, /control; 0 = off

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
        for name, url in self.nodes.items():
            if not NODE_NAME_RE.match(name) or name in LOCAL_TARGETS:
                raise ValueError(
                    f"bad node name {name!r}: use 1-32 of A-Z a-z 0-9 _ . - "
                    "(not 'local' or 'device')"
                )
            if not url.startswith(NODE_URL_PREFIXES):
                raise ValueError(f"node {name}: {url!r} is not a ws:// or http:// URL")
        for at, target in self.migrate_at:
            if not 0.0 <= at < 1e9:
                raise ValueError(f"--migrate-at {at}: seconds must be >= 0")
            if not (
                target in LOCAL_TARGETS
                or target in self.nodes
                or target.startswith(NODE_URL_PREFIXES)
            ):
                known = ", ".join(["local", *self.nodes])
                raise ValueError(
                    f"--migrate-at target {target!r} is unknown (known: {known}, or a URL)"
                )
        if self.migration_timeout_s <= 0:
            raise ValueError("migration timeout must be positive")
        if self.scheduler and not self.scheduler.startswith(("ws://", "wss://")):
            raise ValueError(f"--scheduler must be a ws:// URL, got {self.scheduler!r}")
        if self.device is not None:
            from client.device import DEVICE_PROFILES

            if self.device not in DEVICE_PROFILES:
                known = ", ".join(DEVICE_PROFILES)
                raise ValueError(f"unknown device profile {self.device!r} (known: {known})")
        if self.battery_capacity_j is not None and not self.battery_capacity_j > 0:
            raise ValueError("battery capacity must be > 0 joules")
        if self.battery_level is not None and not 0.0 <= self.battery_level <= 1.0:
            raise ValueError("battery level must be within 0..1 (0.15 = 15 %)")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"bad metrics port {self.metrics_port}")
