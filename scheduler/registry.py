"""Who is there: render nodes and clients, their load, liveness and placement.

A node is *alive* while its websocket is open and it has sent a heartbeat
(`NodeStatus`, or its registration) within ``node_timeout_s``: a node whose
process hangs keeps its TCP connection but stops beating, and must not be
chosen. A node's *load* is what it last reported plus the players the
scheduler has just sent to it and the node has not reported yet
(reservations) — otherwise ten clients evaluated in the same second would
all be sent to the one free slot.

Records of peers that disconnected are kept for a while (``forget_after_s``),
so a client that reconnects after a network blip keeps its placement,
history and dwell timer, and /state still shows a node that just died.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from scheduler.messages import DEVICE, NodeStatus, Register
from scheduler.smoothing import TelemetrySmoother, _r

RESERVATION_S = 30.0  # a reservation not confirmed by the node expires after this


@dataclass(slots=True)
class NodeRecord:
    name: str
    location: str
    url: str
    capacity: int
    cost: float | None
    registered_at: float
    last_seen: float
    conn: int = 0  # the connection that registered it
    connected: bool = True
    accepting: bool = True
    sessions: int = 0
    encode_ms: float | None = None
    render_ms: float | None = None
    fps: float | None = None
    cpu: float | None = None
    uplink_bps: float | None = None
    players: frozenset[str] = frozenset()
    status_at: float | None = None
    reservations: dict[str, float] = field(default_factory=dict)  # client -> expires

    def alive(self, now: float, timeout_s: float) -> bool:
        return self.connected and now - self.last_seen <= timeout_s

    def reserve(self, client: str, now: float, for_s: float = RESERVATION_S) -> None:
        self.reservations[client] = now + for_s

    def release(self, client: str) -> None:
        self.reservations.pop(client, None)

    def load(self, now: float) -> int:
        """Sessions plus reservations the node has not reported yet."""
        for c, until in list(self.reservations.items()):
            if until < now:
                del self.reservations[c]
        extra = sum(1 for c in self.reservations if c not in self.players)
        return self.sessions + extra

    def has_room_for(self, client: str, now: float) -> bool:
        if client in self.players or client in self.reservations:
            return True  # already counted
        return self.load(now) < self.capacity

    def apply_status(self, s: NodeStatus, now: float) -> None:
        self.last_seen = now
        self.status_at = now
        self.sessions = s.sessions
        self.capacity = s.capacity
        self.accepting = s.accepting
        self.encode_ms = s.encode_ms
        self.render_ms = s.render_ms
        self.fps = s.fps
        self.cpu = s.cpu
        self.uplink_bps = s.uplink_bps
        self.players = frozenset(s.players)
        # A player the node now streams is counted in `sessions`.
        for c in self.players:
            self.reservations.pop(c, None)

    def snapshot(self, now: float, timeout_s: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "location": self.location,
            "url": self.url,
            "alive": self.alive(now, timeout_s),
            "connected": self.connected,
            "accepting": self.accepting,
            "capacity": self.capacity,
            "sessions": self.sessions,
            "load": self.load(now),
            "reserved": sorted(self.reservations),
            "players": sorted(self.players),
            "encode_ms": _r(self.encode_ms),
            "render_ms": _r(self.render_ms),
            "fps": _r(self.fps),
            "cpu": _r(self.cpu, 4),
            "uplink_bps": _r(self.uplink_bps),
            "cost": self.cost,
            "last_seen_s": _r(now - self.last_seen),
        }


@dataclass(slots=True)
class Pending:
    """A migrate command sent and not yet answered."""

    decision: int
    target: str
    sent_at: float
    reason: str


@dataclass(slots=True)
class ClientRecord:
    name: str
    smoother: TelemetrySmoother
    registered_at: float
    can_local: bool = True
    can_remote: bool = True
    bitrate_bps: int = 0
    conn: int = 0  # the connection that registered it last
    connected: bool = True
    disconnected_at: float | None = None
    placement: str = DEVICE  # where it renders, as its telemetry says
    last_switch_at: float | None = None  # placement last changed
    last_command_at: float | None = None  # last migrate sent
    settle_until: float = 0.0
    pending: Pending | None = None
    penalties: dict[str, float] = field(default_factory=dict)  # node -> avoid until
    stale: bool = False  # logged as stale (log the transition once)
    switches: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))

    def penalised(self, node: str, now: float) -> bool:
        until = self.penalties.get(node)
        if until is None:
            return False
        if until < now:
            del self.penalties[node]
            return False
        return True

    def snapshot(self, now: float) -> dict[str, Any]:
        p = self.pending
        return {
            "name": self.name,
            "connected": self.connected,
            "placement": self.placement,
            "can_local": self.can_local,
            "can_remote": self.can_remote,
            "switches": self.switches,
            "since_switch_s": None
            if self.last_switch_at is None
            else _r(now - self.last_switch_at),
            "settling": now < self.settle_until,
            "pending": None
            if p is None
            else {"decision": p.decision, "target": p.target, "age_s": _r(now - p.sent_at)},
            "penalties": {n: _r(t - now) for n, t in self.penalties.items() if t >= now},
            "telemetry": self.smoother.snapshot(now),
            "recent_decisions": list(self.recent),
        }


class Registry:
    def __init__(self, node_timeout_s: float = 5.0, window_s: float = 5.0) -> None:
        self.node_timeout_s = node_timeout_s
        self.window_s = window_s
        self.nodes: dict[str, NodeRecord] = {}
        self.clients: dict[str, ClientRecord] = {}

    # -- nodes -----------------------------------------------------------------------
    def register_node(self, msg: Register, now: float, conn: int = 0) -> NodeRecord:
        old = self.nodes.get(msg.name)
        node = NodeRecord(
            conn=conn,
            name=msg.name,
            location=msg.location,
            url=msg.url,
            capacity=msg.capacity,
            cost=msg.cost,
            registered_at=now,
            last_seen=now,
        )
        if old is not None:
            node.reservations = old.reservations  # commands in flight still count
        self.nodes[msg.name] = node
        return node

    def node_status(self, name: str, msg: NodeStatus, now: float) -> None:
        self.nodes[name].apply_status(msg, now)

    def node_gone(self, name: str, conn: int = 0) -> None:
        """The node's connection ``conn`` closed (a newer one may have replaced it)."""
        node = self.nodes.get(name)
        if node is not None and node.conn == conn:
            node.connected = False

    def alive(self, name: str, now: float) -> NodeRecord | None:
        node = self.nodes.get(name)
        if node is None or not node.alive(now, self.node_timeout_s):
            return None
        return node

    def alive_nodes(self, now: float) -> list[NodeRecord]:
        return [n for n in self.nodes.values() if n.alive(now, self.node_timeout_s)]

    # -- clients ---------------------------------------------------------------------
    def register_client(self, msg: Register, now: float, conn: int = 0) -> ClientRecord:
        c = self.clients.get(msg.name)
        if c is None:
            c = ClientRecord(
                name=msg.name, smoother=TelemetrySmoother(self.window_s), registered_at=now
            )
            self.clients[msg.name] = c
        c.can_local = msg.can_local
        c.can_remote = msg.can_remote
        c.bitrate_bps = msg.bitrate_bps
        c.conn = conn
        c.connected = True
        c.disconnected_at = None
        c.smoother.new_connection()
        return c

    def client_gone(self, name: str, now: float, conn: int = 0) -> None:
        c = self.clients.get(name)
        if c is not None and c.conn == conn:
            c.connected = False
            c.disconnected_at = now

    # -- housekeeping ----------------------------------------------------------------
    def forget(self, now: float, after_s: float) -> None:
        """Drop peers that left more than ``after_s`` ago."""
        for name, c in list(self.clients.items()):
            gone_at = c.disconnected_at
            if not c.connected and gone_at is not None and now - gone_at > after_s:
                del self.clients[name]
        for name, n in list(self.nodes.items()):
            if not n.alive(now, self.node_timeout_s) and now - n.last_seen > after_s:
                del self.nodes[name]

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "nodes": [n.snapshot(now, self.node_timeout_s) for n in self.nodes.values()],
            "clients": [c.snapshot(now) for c in self.clients.values()],
        }
