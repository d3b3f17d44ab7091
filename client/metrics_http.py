"""The client's own small HTTP endpoint: metrics for Prometheus, control for experiments.

``shiftcraft play --metrics-port PORT [--metrics-host HOST]`` serves:

* ``GET /metrics`` — Prometheus text (``shiftcraft_client_*``, see
  `client.telemetry.ClientMetrics`);
* ``GET /health`` — ``{"status": "ok", "name", "mode", "node", ...}``;
* ``GET /state`` — the newest telemetry snapshot, known nodes, the
  migration state and recent switch reports (JSON);
* ``POST /control`` — a JSON object with any of
  ``{"battery_level": 0.1}`` (0..1), ``{"charger": true}`` and
  ``{"migrate": "edge-1" | "local" | "device" | "ws://..."}``. All keys are
  checked before any is applied. 200 with what was done, or
  ``{"error": code, "message": ...}`` with 400 (bad JSON, unknown key, bad
  value, unknown node), 409 (no modelled battery to change), 404, 405,
  411, 413.

A deliberately small HTTP/1.1 server on asyncio streams (one request per
connection, ``Connection: close``): websockets' `process_request`, which
the services use, never sees a request body, and a POST needs one. It runs
in the game's event loop, so handlers read and change the game directly,
never from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger("shiftcraft.client.http")

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
READ_TIMEOUT_S = 5.0


class ControlError(Exception):
    """A request the endpoint refuses: sent back as ``{"error": code, "message": ...}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(slots=True)
class Handlers:
    """What the endpoint serves; each is called in the event loop."""

    metrics: Callable[[], bytes]
    health: Callable[[], dict[str, Any]]
    state: Callable[[], dict[str, Any]]
    control: Callable[[dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]


ROUTES: dict[str, tuple[str, ...]] = {
    "/metrics": ("GET",),
    "/health": ("GET",),
    "/state": ("GET",),
    "/control": ("POST",),
}


class MetricsServer:
    """``async with MetricsServer(handlers, host, port) as srv:`` — ``srv.port`` once bound."""

    def __init__(self, handlers: Handlers, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handlers = handlers
        self.host = host
        self.port = port
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind (raises OSError when the port is taken) and serve in the background."""
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=MAX_HEAD_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, end connections in progress, release the port."""
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- one connection -------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            status, body, ctype, extra = await self._respond(reader)
            self.requests += 1
            await _write(writer, status, body, ctype, extra)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the peer went away or stalled: nothing to answer
        except Exception:  # a bug in a handler must not take the client down
            log.exception("client HTTP request failed")
            with contextlib.suppress(Exception):
                await _write(writer, 500, _error_body("internal", "the client failed"), _JSON, {})
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._conns.discard(task)

    async def _respond(
        self, reader: asyncio.StreamReader
    ) -> tuple[int, bytes, str, dict[str, str]]:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _err(431, "headers_too_large", f"request head over {MAX_HEAD_BYTES} bytes")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _err(400, "bad_request", "malformed request line")
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                return _err(400, "bad_request", f"malformed header line {line[:40]!r}")
            headers[name.strip().lower()] = value.strip()
        path = urlsplit(target).path
        allowed = ROUTES.get(path)
        if allowed is None:
            return _err(404, "not_found", f"no {path}; try {', '.join(ROUTES)}")
        if method not in allowed:
            status, body, ctype, _ = _err(
                405, "method_not_allowed", f"{path} takes {' or '.join(allowed)}, not {method}"
            )
            return status, body, ctype, {"Allow": ", ".join(allowed)}
        body = b""
        if method == "POST":
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return _err(411, "length_required", "send a Content-Length, not chunked data")
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                return _err(400, "bad_request", "Content-Length is not a number")
            if length < 0:
                return _err(400, "bad_request", "negative Content-Length")
            if length > MAX_BODY_BYTES:
                return _err(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
            async with asyncio.timeout(READ_TIMEOUT_S):
                body = await reader.readexactly(length)
        h = self.handlers
        if path == "/metrics":
            return 200, h.metrics(), CONTENT_TYPE_LATEST, {}
        if path == "/health":
            return 200, _dumps(h.health()), _JSON, {}
        if path == "/state":
            return 200, _dumps(h.state()), _JSON, {}
        return await self._control(body)

    async def _control(self, body: bytes) -> tuple[int, bytes, str, dict[str, str]]:
        try:
            obj = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _err(400, "bad_json", f"body is not JSON: {exc}")
        if not isinstance(obj, dict):
            return _err(400, "bad_request", 'body must be a JSON object, e.g. {"charger": true}')
        try:
            result = self.handlers.control(obj)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except ControlError as exc:
            return _err(exc.status, exc.code, exc.message)
        return 200, _dumps(result), _JSON, {}


_JSON = "application/json"


def _dumps(obj: Any) -> bytes:
    # allow_nan=False: a NaN would make the body invalid JSON for strict readers.
    return json.dumps(obj, allow_nan=False, default=str).encode()


def _error_body(code: str, message: str) -> bytes:
    return _dumps({"error": code, "message": message})


def _err(status: int, code: str, message: str) -> tuple[int, bytes, str, dict[str, str]]:
    return status, _error_body(code, message), _JSON, {}


async def _write(
    writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str, extra: dict[str, str]
) -> None:
    phrase = http.HTTPStatus(status).phrase
    head = [
        f"HTTP/1.1 {status} {phrase}",
        f"Content-Type: {ctype}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
