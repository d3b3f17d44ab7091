"""Plain HTTP on the scheduler's websocket port.

* ``GET /metrics`` — Prometheus text (``shiftcraft_scheduler_*``);
* ``GET /state`` — JSON: policy and parameters, nodes, clients with their
  smoothed telemetry, placement, pending command and recent decisions, the
  last decisions overall, totals;
* ``GET /health`` — ``{"status": "ok", ...}``;
* ``GET /migrate?client=NAME&to=local|NODE[&token=T]`` — a manual migration.
  websockets' `process_request` sees no request body, so this is a GET;
  it changes state, so it is refused without ``token`` when the scheduler
  runs with ``--admin-token``. It goes through the engine's command path:
  same `migrate` message, same decision log (reason ``manual``), same
  metrics; the dwell time does not apply (an operator means it), dead,
  draining and full nodes are refused. Answers 200 with the decision, or
  400/403/404/409/503 with ``{"error": code, "message": ...}``.

Websocket upgrades (any path) pass through to the protocol.
"""

from __future__ import annotations

import hmac
import http
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from scheduler.decisions import dumps
from scheduler.engine import ManualError

if TYPE_CHECKING:
    from scheduler.service import SchedulerService


def _response(status: int, body: bytes, content_type: str) -> Response:
    s = http.HTTPStatus(status)
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(s.value, s.phrase, headers, body)


def _json(status: int, obj: Any) -> Response:
    return _response(status, dumps(obj).encode(), "application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": code, "message": message})


def manual_migrate(service: SchedulerService, query: str) -> Response:
    q = parse_qs(query, keep_blank_values=True)
    client = (q.get("client") or [""])[0]
    target = (q.get("to") or [""])[0]
    token = (q.get("token") or [""])[0]
    admin = service.config.admin_token
    if admin and not hmac.compare_digest(token.encode(), admin.encode()):
        return _error(403, "bad_token", "this scheduler requires ?token= for /migrate")
    if not client or not target:
        return _error(400, "bad_request", "usage: /migrate?client=NAME&to=local|NODE")
    try:
        msg = service.engine.manual(client, target, service.now())
    except ManualError as exc:
        return _error(exc.status, exc.code, exc.message)
    return _json(200, {"decision": msg.decision, "client": client, **msg.to_wire()})


def make_process_request(
    service: SchedulerService,
) -> Callable[[ServerConnection, Request], Response | None]:
    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlsplit(request.path)
        path = url.path
        if path == "/metrics":
            return _response(200, service.exposition(), CONTENT_TYPE_LATEST)
        if path == "/state":
            return _json(200, service.state())
        if path == "/health":
            ok = service.ready.is_set()
            reg = service.engine.registry
            return _json(
                200 if ok else 503,
                {
                    "status": "ok" if ok else "starting",
                    "policy": service.engine.spec.label,
                    "clients": sum(1 for c in reg.clients.values() if c.connected),
                    "nodes": len(reg.alive_nodes(service.now())),
                },
            )
        if path == "/migrate":
            return manual_migrate(service, url.query)
        return _response(
            404,
            b"not found: try /metrics, /state, /health, /migrate?client=NAME&to=local|NODE "
            b"or a websocket upgrade\n",
            "text/plain; charset=utf-8",
        )

    return process_request
