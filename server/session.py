"""One client connection: its state machine, its limits and its outbox.

States::

    CONNECTING --hello ok, joined by the tick--> WELCOMED --> CLOSING --> CLOSED
         \\___________ bad hello / timeout ______________/

The connection handler (service.py) owns the socket and feeds decoded
messages in; the tick (simulation.py) reads the queued intents and puts
encoded frames in the outbox. A writer task drains the outbox to the socket,
so a client that reads slowly only fills its own bounded queue; when the
queue is full the client is cut off instead of ever blocking the tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server.interest import SectionInterest
from server.metrics import ServerStats
from server.ratelimit import TokenBucket
from shiftcraft.protocol import Edit, Error, encode
from world.physics import PlayerBody

log = logging.getLogger("shiftcraft.server")

# Close codes (RFC 6455 section 7.4.1) for each fatal error code.
CLOSE_CODES: dict[str, int] = {
    "malformed": 1007,  # invalid payload data
    "too_large": 1009,  # message too big
    "bad_version": 1002,  # protocol error
    "expected_hello": 1002,
    "bad_field": 1002,
    "unknown_type": 1002,
    "bad_token": 1008,  # policy violation
    "hello_timeout": 1008,
    "rate_limited": 1008,
    "slow_consumer": 1008,
    "replaced": 1000,
    "shutdown": 1001,
    "internal": 1011,
}


class SessionState(enum.Enum):
    CONNECTING = "connecting"
    WELCOMED = "welcomed"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class _Close:
    """Outbox marker: close the socket once everything before it is sent."""

    code: int
    reason: str


@dataclass(eq=False, slots=True)
class Session:
    ws: ServerConnection
    stats: ServerStats
    out_limit: int
    msg_bucket: TokenBucket
    flood_bucket: TokenBucket
    state: SessionState = SessionState.CONNECTING
    player_id: int = 0
    name: str = ""
    role: str = ""
    remote: str = ""

    # Player state (players and bots; render nodes have no body).
    body: PlayerBody | None = None
    yaw: float = 0.0
    pitch: float = 0.0
    inputs: list = field(default_factory=list)  # frames waiting for the tick
    last_seq: int = -1  # last input seq consumed (the ack)
    ack_dirty: bool = False
    input_credit: TokenBucket | None = None  # seconds of movement the client may still send
    edit_bucket: TokenBucket | None = None
    saved_at: float = 0.0  # monotonic time of the last persisted record
    saved_state: tuple = ()  # what that record held

    # Interest.
    view_centres: list[tuple[float, float, float]] = field(default_factory=list)
    view_distance: int = 0
    interest: SectionInterest = field(default_factory=SectionInterest)
    visible: set[int] = field(default_factory=set)  # entity ids the client knows
    edit_results: list = field(default_factory=list)  # waiting for the commit
    last_sent_tick: int = 0

    # Outbox.
    outbox: asyncio.Queue = field(init=False)
    close_code: int | None = None
    close_error: str = ""  # the error code that closed it ("" = the peer closed)
    close_reason: str = ""
    _last_rate_error: float = -1e9
    _abort_timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.outbox = asyncio.Queue(self.out_limit + 2)  # + room for error & close

    @property
    def is_player(self) -> bool:
        return self.body is not None

    @property
    def open(self) -> bool:
        return self.state in (SessionState.CONNECTING, SessionState.WELCOMED)

    # -- sending --------------------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Queue one encoded frame; a full queue cuts the client off (never blocks)."""
        if not self.open:
            return False
        if self.outbox.qsize() >= self.out_limit:
            self.cut_off()
            return False
        self.outbox.put_nowait(data)
        self.stats.bytes_out += len(data)
        self.stats.messages_out += 1
        return True

    def error(self, code: str, message: str, *, fatal: bool = False) -> None:
        """Tell the client about an error; a fatal one closes the connection after it."""
        if not self.open:
            return
        data = encode(Error(code=code, message=message[:1024], fatal=fatal))
        if fatal:
            # `send` stops at out_limit, so the error and the close marker always fit.
            self.outbox.put_nowait(data)
            self.stats.bytes_out += len(data)
            self.stats.messages_out += 1
            self.close(code, message)
        else:
            self.send(data)

    def rate_error_due(self, now: float) -> bool:
        """At most one `rate_limited` error a second, so the answer is no flood itself."""
        if now - self._last_rate_error >= 1.0:
            self._last_rate_error = now
            return True
        return False

    def close(self, code: str, reason: str) -> None:
        """Start closing: the writer sends what is queued, then closes the socket."""
        if not self.open:
            return
        self.state = SessionState.CLOSING
        self.close_code = CLOSE_CODES.get(code, 1008)
        self.close_error = code
        self.close_reason = reason
        self.outbox.put_nowait(_Close(self.close_code, _close_reason(code, reason)))

    def cut_off(self) -> None:
        """Disconnect a client that cannot keep up: drop its backlog, close, and
        abort the TCP connection if even the close does not get through soon."""
        if not self.open:
            return
        while not self.outbox.empty():
            self.outbox.get_nowait()
        self.close("slow_consumer", "client does not read fast enough")
        loop = asyncio.get_running_loop()
        self._abort_timer = loop.call_later(2.0, self.ws.transport.abort)

    def finished(self) -> None:
        """The connection is over: no more sends, no pending timers."""
        self.state = SessionState.CLOSED
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None

    async def write_loop(self) -> None:
        """Drain the outbox to the socket until closed (runs as its own task)."""
        ws = self.ws
        try:
            while True:
                item = await self.outbox.get()
                if isinstance(item, _Close):
                    await ws.close(item.code, item.reason)
                    return
                await ws.send(item)
        except ConnectionClosed:
            pass
        except Exception:  # never let one client's socket trouble escape
            log.exception("writer of %s failed", self.name or self.remote)
            with contextlib.suppress(Exception):
                ws.transport.abort()


def _close_reason(code: str, reason: str) -> str:
    """A close reason fits in 123 bytes of UTF-8 (RFC 6455)."""
    text = f"{code}: {reason}"
    raw = text.encode()
    return text if len(raw) <= 123 else raw[:120].decode(errors="ignore") + "..."


PendingEdit = tuple[Session, Edit]
