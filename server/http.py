"""Plain HTTP on the websocket port: ``/metrics``, ``/health``, ``/stats``.

websockets calls `process_request` with every opening request; returning a
response answers it as HTTP instead of upgrading, so operators and the tick
benchmark need no second port. Websocket upgrades (any path) pass through.
"""

from __future__ import annotations

import http
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

if TYPE_CHECKING:
    from server.service import SimServer

STALLED_S = 2.0  # /health fails when no tick finished for this long


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def _json(status: http.HTTPStatus, obj: Any) -> Response:
    return _response(status, json.dumps(obj).encode(), "application/json")


def stats_document(server: SimServer) -> dict[str, Any]:
    """The /stats JSON: what the tick benchmark and dashboards read."""
    stats = server.stats
    clock = server.clock
    return {
        "tick": stats.tick,
        "tps": round(clock.tps(), 3),
        # Durations of the most recent ticks, oldest first; the last is tick `tick`.
        "tick_ms": [round(d * 1000.0, 3) for d in clock.durations],
        "ticks_skipped": stats.ticks_skipped,
        "players": server.player_count(),
        "players_by_role": dict(server.players_by_role()),
        "bytes_out_total": stats.bytes_out,
        "bytes_in_total": stats.bytes_in,
        "messages_out_total": stats.messages_out,
        "messages_in": dict(stats.messages_in),
        "messages_rejected": dict(stats.rejected),
        "sections_sent_total": stats.sections_sent,
        "block_deltas_sent_total": stats.block_deltas_sent,
        "edits_applied": dict(stats.edits_applied),
        "edits_rejected": dict(stats.edits_rejected),
        "input_frames_total": stats.input_frames,
        "input_frames_dropped_total": stats.input_frames_dropped,
        "input_frames_duplicate_total": stats.input_frames_duplicate,
        "input_frames_missing_total": stats.input_frames_missing,
        "commit_failures_total": stats.commit_failures,
        "disconnects": dict(stats.disconnects),
    }


def make_process_request(
    server: SimServer,
) -> Callable[[ServerConnection, Request], Response | None]:
    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # a client: go on with the websocket handshake
        path = urlsplit(request.path).path
        if path == "/metrics":
            return _response(http.HTTPStatus.OK, server.exposition(), CONTENT_TYPE_LATEST)
        if path == "/stats":
            return _json(http.HTTPStatus.OK, stats_document(server))
        if path == "/health":
            age = time.monotonic() - server.last_tick_at if server.last_tick_at else None
            ok = server.ready.is_set() and (age is None or age < STALLED_S)
            return _json(
                http.HTTPStatus.OK if ok else http.HTTPStatus.SERVICE_UNAVAILABLE,
                {
                    "status": "ok" if ok else "stalled",
                    "tick": server.stats.tick,
                    "players": server.player_count(),
                },
            )
        return _response(
            http.HTTPStatus.NOT_FOUND,
            b"not found: try /metrics, /stats, /health or a websocket upgrade\n",
            "text/plain; charset=utf-8",
        )

    return process_request
