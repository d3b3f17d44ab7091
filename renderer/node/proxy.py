"""Playing on the sim for a client that cannot: the browser page.

A game client in remote mode talks to the sim itself (authoritative
movement and edits) and to the node (the camera). A browser tab speaks only
WebRTC and JSON, so for an offer with ``proxy: true`` the node joins the
sim as that player (role ``player``, the offer's ``sim_token``) and
forwards what the page sends: input frames from the data channel, edits from
the signalling websocket. The sim's updates then drive the camera exactly
as a forwarding client's ``state`` messages would (`CameraDriver.on_state`).

Input frames are batched to the sim at `SEND_HZ`, in sequence order; a
frame that arrives after a newer one was already forwarded is dropped for
the sim (it rejects seq <= the last consumed anyway), as an unreliable
channel allows. The proxy's connection skips every world list: the node's
own replica already has the world.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from client.connection import SimConnection
from renderer.node.camera import CameraDriver
from shiftcraft.protocol import Error, Message, Update

log = logging.getLogger("shiftcraft.render.proxy")

SEND_HZ = 30
SKIP = ("sections", "unload", "blocks", "spawn", "entities", "gone")


class PlayerProxy:
    def __init__(
        self,
        sim_url: str,
        name: str,
        token: str,
        camera: CameraDriver,
        on_lost: Callable[[str], None],
    ) -> None:
        self.sim_url = sim_url
        self.name = name
        self.token = token
        self.camera = camera
        self.on_lost = on_lost
        self.conn: SimConnection | None = None
        self._queue: list[Sequence] = []
        self._last_sent = -1
        self.frames_forwarded = 0
        self.edits_forwarded = 0
        self.last_error: Error | None = None

    async def connect(self, timeout: float = 10.0) -> None:
        """Join the sim as the player. Raises `ConnectError` (bad token, sim down...)."""
        self.conn = await SimConnection.connect(
            self.sim_url,
            self.name,
            role="player",
            token=self.token,
            timeout=timeout,
            lazy=True,
            skip=SKIP,
            on_message=self._on_message,
        )
        w = self.conn.welcome
        self.camera.teleport(w.pos)
        if self.camera.newest_seq < 0:
            self.camera.look(w.yaw, w.pitch)

    def _on_message(self, msg: Message) -> None:
        if isinstance(msg, Update):
            if msg.ack >= 0:
                self.camera.on_state(msg.ack, msg.pos, msg.vel, msg.on_ground, msg.flying)
        elif isinstance(msg, Error):
            self.last_error = msg
            log.info("sim error for %s: %s %s", self.name, msg.code, msg.message)

    def queue_inputs(self, frames: Sequence[Sequence]) -> None:
        self._queue.extend(f for f in frames if int(f[0]) > self._last_sent)

    async def edit(self, action: str, x: int, y: int, z: int, block: int) -> None:
        if self.conn is not None and not self.conn.closed:
            await self.conn.send_edit(action, x, y, z, block)
            self.edits_forwarded += 1

    async def run(self) -> None:
        """Forward input until the sim connection ends (then report why)."""
        conn = self.conn
        assert conn is not None
        period = 1.0 / SEND_HZ
        try:
            while not conn.closed:
                await asyncio.sleep(period)
                if not self._queue:
                    continue
                frames = sorted(self._queue, key=lambda f: f[0])
                self._queue = []
                fresh = []
                for f in frames:
                    if int(f[0]) > self._last_sent:
                        fresh.append(list(f))
                        self._last_sent = int(f[0])
                await conn.send_inputs(fresh)
                self.frames_forwarded += len(fresh)
        except Exception as exc:  # the connection's own exceptions: it closed
            log.info("proxy for %s stopped: %s", self.name, exc)
        why = conn.close_exception
        self.on_lost(f"the sim connection for {self.name} ended: {why}")

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
