"""A minimal async client of the sim protocol for the server tests.

Deliberately small and independent of `client/connection.py` (the real
client), so the server is tested against the wire format itself: it sends
raw bytes when asked to, decodes every frame with `shiftcraft.protocol`, and
keeps a replica of the sections and block deltas it receives so tests can
ask "what block does this client see at (x, y, z)?".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from shiftcraft import protocol as P
from world.codec import decode_section
from world.coords import SectionKey


def raw_frame(msg: P.Message, **override: Any) -> bytes:
    """Encode ``msg`` with some wire fields replaced (or added), unvalidated."""
    wire = msg.to_wire()
    wire.update(override)
    return msgpack.packb(wire, use_bin_type=True)


def type_key() -> str:
    """The wire key that names a message's type (whatever the protocol calls it)."""
    return next(k for k, v in P.Ping(id=0).to_wire().items() if v == "ping")


@dataclass
class TestClient:
    __test__ = False  # not a pytest class

    ws: ClientConnection
    name: str
    welcome: P.Welcome | None = None
    updates: list[P.Update] = field(default_factory=list)
    errors: list[P.Error] = field(default_factory=list)
    others: list[P.Message] = field(default_factory=list)
    sections: dict[SectionKey, np.ndarray] = field(default_factory=dict)
    section_order: list[SectionKey] = field(default_factory=list)  # arrival order
    unloaded: list[SectionKey] = field(default_factory=list)
    edit_results: dict[int, tuple] = field(default_factory=dict)  # seq -> result
    entities: dict[int, list] = field(default_factory=dict)  # id -> [name, x, y, z]
    seq: int = 0

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        *,
        role: str = "bot",
        token: str = "",
        version: int = P.PROTOCOL_VERSION,
        welcome: bool = True,
        timeout: float = 10.0,
    ) -> TestClient:
        ws = await connect(url, max_size=None, compression=None, open_timeout=timeout)
        client = cls(ws, name)
        await client.send(P.Hello(version=version, role=role, name=name, token=token))
        if welcome:
            msg = await client.recv(timeout)
            assert isinstance(msg, P.Welcome), f"expected welcome, got {msg!r}"
            client.welcome = msg
        return client

    # -- sending --------------------------------------------------------------
    async def send(self, msg: P.Message) -> None:
        await self.ws.send(P.encode(msg))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def move(self, frames: list[list]) -> None:
        await self.send(P.Input(frames=frames))

    async def edit(self, action: str, x: int, y: int, z: int, block: int = 0) -> int:
        self.seq += 1
        await self.send(P.Edit(seq=self.seq, action=action, x=x, y=y, z=z, block=block))
        return self.seq

    # -- receiving --------------------------------------------------------------
    async def recv(self, timeout: float = 10.0) -> P.Message:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        msg = P.decode(data, P.MAX_SERVER_FRAME_BYTES)
        self._apply(msg)
        return msg

    def _apply(self, msg: P.Message) -> None:
        if isinstance(msg, P.Update):
            self.updates.append(msg)
            for sx, sy, sz, data in msg.sections:
                key = (sx, sy, sz)
                self.sections[key] = decode_section(data).copy()
                self.section_order.append(key)
            for key in msg.unload:
                self.sections.pop(tuple(key), None)
                self.unloaded.append(tuple(key))
            for x, y, z, block in msg.blocks:
                arr = self.sections.get((x >> 4, y >> 4, z >> 4))
                assert arr is not None, f"delta for a section this client does not hold: {x, y, z}"
                arr[y & 15, z & 15, x & 15] = block
            for result in msg.edits:
                self.edit_results[result[0]] = tuple(result)
            for eid, name, x, y, z, _yaw, _pitch in msg.spawn:
                self.entities[eid] = [name, x, y, z]
            for eid, x, y, z, _yaw, _pitch in msg.entities:
                assert eid in self.entities, f"move of an entity never spawned: {eid}"
                self.entities[eid][1:] = [x, y, z]
            for eid in msg.gone:
                self.entities.pop(eid, None)
        elif isinstance(msg, P.Error):
            self.errors.append(msg)
        else:
            self.others.append(msg)

    async def until(self, pred: Callable[[P.Message], bool], timeout: float = 10.0) -> P.Message:
        """Receive until a message satisfies ``pred``; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: condition not met within {timeout} s")
            msg = await self.recv(left)
            if pred(msg):
                return msg

    async def pump(self, seconds: float) -> None:
        """Receive (and apply) everything for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                await self.recv(left)
            except TimeoutError:
                return

    async def error(self, timeout: float = 10.0) -> P.Error:
        msg = await self.until(lambda m: isinstance(m, P.Error), timeout)
        assert isinstance(msg, P.Error)
        return msg

    async def result(self, seq: int, timeout: float = 10.0) -> tuple:
        """The edit result for ``seq``."""
        if seq not in self.edit_results:
            await self.until(lambda m: seq in self.edit_results, timeout)
        return self.edit_results[seq]

    async def closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Read until the server closes; returns (close code, reason)."""
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                await self.recv(left)
            raise TimeoutError(f"{self.name}: server did not close within {timeout} s")
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")

    def block(self, x: int, y: int, z: int) -> int | None:
        arr = self.sections.get((x >> 4, y >> 4, z >> 4))
        return None if arr is None else int(arr[y & 15, z & 15, x & 15])

    @property
    def pos(self) -> tuple[float, float, float]:
        for u in reversed(self.updates):
            if u.ack >= 0 or u.pos != (0.0, 0.0, 0.0):
                return u.pos
        assert self.welcome is not None
        return self.welcome.pos

    async def close(self) -> None:
        await self.ws.close()


def frame(seq: int, dt: float = 0.05, forward: float = 0.0, strafe: float = 0.0,
          yaw: float = 0.0, pitch: float = 0.0, flags: int = 0) -> list:  # fmt: skip
    return [seq, dt, forward, strafe, yaw, pitch, flags]


async def walk(
    client: TestClient,
    seconds: float,
    *,
    forward: float = 1.0,
    yaw: float = 0.0,
    flags: int = 0,
    first_seq: int = 1,
) -> int:
    """Send one input frame per ~50 ms for ``seconds``, paced like a real client
    (dt = the time that really passed), applying whatever arrives meanwhile.
    Returns the next free seq."""
    seq = first_seq
    last = time.monotonic()
    end = last + seconds
    while time.monotonic() < end:
        await client.pump(0.05)
        now = time.monotonic()
        dt = min(now - last, P.MAX_DT)
        last = now
        await client.move([frame(seq, dt, forward, 0.0, yaw, 0.0, flags)])
        seq += 1
    return seq
