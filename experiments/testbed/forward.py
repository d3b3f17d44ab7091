"""Reach a TCP port inside a namespace from the root namespace via 127.0.0.1.

The scenario runner lives in the root namespace; the nodes' ``/metrics``
endpoints live in theirs. `Forwarder` listens on ``127.0.0.1:<ephemeral>``
and relays each connection to ``address:port`` inside a namespace, over a
socket created there (`socket_in_netns`). The relay runs its own event loop
in a background thread, so a caller using blocking ``urllib`` from its event
loop thread cannot deadlock it. Management traffic does not cross the link
emulator, so scraping never disturbs the emulated links.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

from experiments.testbed.netns import NetNS, socket_in_netns

CHUNK = 65536


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


class Forwarder:
    """Local TCP listeners relaying into namespaces; `close` stops them all."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task] = set()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="testbed-forward", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def add(self, netns: NetNS, address: str, port: int, timeout: float = 10.0) -> int:
        """Start relaying 127.0.0.1:<returned port> to ``address:port`` in ``netns``."""
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._listen(netns, address, port), loop)
        return future.result(timeout)

    async def _listen(self, netns: NetNS, address: str, port: int) -> int:
        loop = asyncio.get_running_loop()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            upstream_writer = None
            try:
                sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await asyncio.wait_for(loop.sock_connect(sock, (address, port)), 10.0)
                except BaseException:
                    sock.close()
                    raise
                up_reader, upstream_writer = await asyncio.open_connection(sock=sock)
                await asyncio.gather(_pump(reader, upstream_writer), _pump(up_reader, writer))
            except (OSError, TimeoutError):
                pass  # the client sees the connection close, as with a refused port
            finally:
                for w in (writer, upstream_writer):
                    if w is not None:
                        w.close()
                self._tasks.discard(task)

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5.0)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5.0)
        if not loop.is_running():
            loop.close()
        self._loop = self._thread = None
        self._servers.clear()
