"""Server settings: one dataclass, filled by the CLI or by tests.

Every limit the server enforces lives here with its default and a comment on
why it has that value, so an operator can see (and `docs/protocol.md` can
quote) what a client may rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shiftcraft.protocol import MAX_CLIENT_FRAME_BYTES

GENERATORS = ("terrain", "flat")


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port; the bound one is on SimServer.port
    db: Path | str = "shiftcraft.sqlite3"
    seed: int | None = None  # None = the seed stored in the db, else 1
    generator: str = "terrain"  # "flat" is cheap terrain for tests
    view_distance: int = 64  # blocks; players get the section columns within it
    max_view_distance: int = 192  # cap for render nodes' `view.distance`
    entity_distance: int = 64  # blocks; other players closer than this are sent
    entity_near: float = 16.0  # moves every tick within this, every 2nd/4th tick beyond
    auth: str = "open"  # open | file:PATH | secret:SECRET
    tps: int = 20

    # Tick loop: a late tick is caught up immediately, at most this many in a
    # row; beyond that the clock resynchronises (ticks are skipped, counted).
    max_catchup_ticks: int = 5
    tick_ring: int = 2000  # tick durations kept for /stats

    # Interest management.
    sections_per_tick: int = 12  # per subscriber, nearest first
    load_budget_s: float = 0.010  # per tick, all subscribers: generate/load+encode
    unload_hysteresis: float = 1.5  # section columns beyond the view before unloading
    entity_hysteresis: float = 8.0  # blocks beyond entity_distance before `gone`
    far_fraction: float = 0.5  # subscribers farther than this share of their view
    # distance from an edited section get it again (coalesced) instead of deltas
    stale_flush_ticks: int = 10  # how often those coalesced re-sends go out
    many_changes: int = 48  # more block changes than this in a section in one tick:
    # holders get the whole section instead of the deltas
    heartbeat_ticks: int = 20  # an empty update at least this often

    # Inputs and edits.
    input_allowance_s: float = 0.5  # input dt may run ahead of wall time by this
    reach: float = 6.0  # blocks from the eye to the nearest point of the target
    edit_rate: float = 10.0  # edits per second per player (token bucket)
    edit_burst: float = 20.0

    # Connections.
    hello_timeout_s: float = 5.0
    msg_rate: float = 100.0  # client messages per second (token bucket)
    msg_burst: float = 200.0
    flood_drops: float = 200.0  # dropped messages (net of msg_rate/4 per s) -> close
    max_frame_bytes: int = MAX_CLIENT_FRAME_BYTES
    # websockets itself refuses frames above this; between the two we answer
    # `error too_large` ourselves before closing with 1009.
    ws_max_size: int = 4 * MAX_CLIENT_FRAME_BYTES
    # Frames queued for one client before it is cut off: ~1 update a tick plus
    # replies, which msg_burst bounds, so a burst of pings is not "slow".
    out_queue: int = 300
    ping_interval_s: float | None = 20.0

    # Persistence.
    player_save_s: float = 5.0  # moved players are saved at most this often
    durable: bool = False  # SQLite synchronous=FULL (power-loss safe) instead of NORMAL
    gc_freeze: bool = True  # move start-up objects out of the GC's way

    @property
    def tick_s(self) -> float:
        return 1.0 / self.tps

    def validate(self) -> None:
        if not 1 <= self.tps <= 1000:
            raise ValueError(f"tps {self.tps} outside 1..1000")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} outside 0..65535")
        if not 16 <= self.view_distance <= 1024:
            raise ValueError(f"view distance {self.view_distance} outside 16..1024 blocks")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator {self.generator!r} not one of {', '.join(GENERATORS)}")
        if self.ws_max_size <= self.max_frame_bytes:
            raise ValueError("ws_max_size must exceed max_frame_bytes")
