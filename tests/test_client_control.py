"""The client's HTTP endpoint and agent: /metrics, /health, /state, POST /control (issue 5).

A real `Game` (not running: no sim needed) with its `ClientAgent`, over a
real socket; the migration requests land in the real `MigrationController`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from client.agent import ClientAgent
from client.config import ClientConfig
from client.display import HeadlessDisplay
from client.game import Game
from client.migration import LOCAL
from scheduler.messages import Migrate, MigrationReport, decode
from shiftcraft import metric_names as m

pytest.importorskip("pygame")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _request(
    port: int, method: str, path: str, body: bytes | None = None, raw: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if raw is None:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        raw = (head + "\r\n").encode() + (body or b"")
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, payload


async def _post(port: int, obj: object) -> tuple[int, dict]:
    status, _, body = await _request(port, "POST", "/control", json.dumps(obj).encode())
    return status, json.loads(body)


def _game(**kw) -> Game:
    config = ClientConfig(
        name="ctl", width=64, height=36, headless=True, metrics_port=_free_port(),
        nodes={"edge-1": "ws://127.0.0.1:9"}, **kw,
    )  # fmt: skip
    config.validate()
    return Game(config, HeadlessDisplay(64, 36), log=lambda line: None)


@pytest.fixture
async def agent() -> AsyncIterator[ClientAgent]:
    game = _game(device="phone", battery_level=0.5)
    async with ClientAgent(game) as a:
        yield a
    game.display.close()


async def test_metrics_parse_and_carry_client_names(agent: ClientAgent) -> None:
    agent.collector.collect()  # the agent's loop does this every second
    status, headers, body = await _request(agent.http.port, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in (m.CLIENT_FPS, m.CLIENT_FRAME_INTERVAL_SECONDS, m.CLIENT_BATTERY_LEVEL_RATIO,
                 m.CLIENT_RESIDENT_MEMORY_BYTES, m.CLIENT_PLACEMENT, m.CLIENT_REMOTE):  # fmt: skip
        assert name in families, name
    assert families[m.CLIENT_FRAME_INTERVAL_SECONDS].type == "histogram"
    # Counter families are named without _total by the parser.
    assert families[m.CLIENT_CPU_SECONDS_TOTAL.removesuffix("_total")].type == "counter"
    level = families[m.CLIENT_BATTERY_LEVEL_RATIO].samples[0].value
    assert level == pytest.approx(0.5, abs=1e-3)
    assert all(f.name.startswith("shiftcraft_client_") for f in families.values())


async def test_health_and_state(agent: ClientAgent) -> None:
    status, _, body = await _request(agent.http.port, "GET", "/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok"
    assert health["mode"] == "local" and health["node"] == "device" and health["name"] == "ctl"
    status, _, body = await _request(agent.http.port, "GET", "/state")
    state = json.loads(body)
    assert state["nodes"] == {"edge-1": "ws://127.0.0.1:9"}
    assert state["battery"]["source"] == "model" and state["battery"]["level"] == 0.5


async def test_control_changes_the_battery_and_metrics_show_it_at_once(
    agent: ClientAgent,
) -> None:
    agent.collector.collect()
    status, out = await _post(agent.http.port, {"battery_level": 0.1, "charger": True})
    assert status == 200, out
    assert out["battery"]["level"] == 0.1 and out["battery"]["charging"] is True
    assert agent.battery.level == 0.1 and agent.battery.charging
    _, _, body = await _request(agent.http.port, "GET", "/metrics")
    samples = {
        s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples
    }
    assert samples[m.CLIENT_BATTERY_LEVEL_RATIO] == pytest.approx(0.1)
    assert samples[m.CLIENT_BATTERY_CHARGING] == 1.0
    # ... and so does the snapshot the scheduler's next sample is made from.
    assert agent.collector.latest.battery.level == pytest.approx(0.1)


async def test_control_migrate_requests_a_switch(agent: ClientAgent) -> None:
    ctl = agent.controller
    status, out = await _post(agent.http.port, {"migrate": "edge-1"})
    assert status == 200, out
    assert out["migrate"] == {
        "requested": "edge-1", "already_there": False, "url": "ws://127.0.0.1:9"
    }  # fmt: skip
    assert ctl._pending == [("edge-1", "control")]
    # A URL gets a name (telemetry and reports need one) and is remembered.
    status, out = await _post(agent.http.port, {"migrate": "ws://10.0.0.7:8770"})
    assert status == 200, out
    name = out["migrate"]["requested"]
    assert ctl.nodes[name] == "ws://10.0.0.7:8770" and ctl._pending[-1] == (name, "control")
    # "local" while local with nothing queued is a no-op; "device" is the same place.
    ctl._pending.clear()
    for target in ("local", "device"):
        status, out = await _post(agent.http.port, {"migrate": target})
        assert status == 200 and out["migrate"]["already_there"] is True
    assert ctl._pending == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_json"),
        (b"[1, 2]", 400, "bad_request"),
        (b"", 400, "bad_request"),
        (b"{}", 400, "empty"),
        (b'{"battery": 0.1}', 400, "unknown_key"),
        (b'{"battery_level": 1.5}', 400, "bad_value"),
        (b'{"battery_level": "low"}', 400, "bad_value"),
        (b'{"battery_level": true}', 400, "bad_value"),
        (b'{"battery_level": NaN}', 400, "bad_value"),
        (b'{"charger": "yes"}', 400, "bad_value"),
        (b'{"migrate": 3}', 400, "bad_value"),
        (b'{"migrate": ""}', 400, "bad_value"),
        (b'{"migrate": "mars-1"}', 400, "unknown_node"),
        (b'{"migrate": "mars-1", "battery_level": 0.2}', 400, "unknown_node"),
        (b"\xff\xfe", 400, "bad_json"),
    ],
)
async def test_bad_control_bodies_get_400_and_change_nothing(
    agent: ClientAgent, body: bytes, status: int, code: str
) -> None:
    got, _, payload = await _request(agent.http.port, "POST", "/control", body)
    out = json.loads(payload)
    assert (got, out["error"]) == (status, code), out
    assert out["message"]
    assert agent.battery.level == 0.5  # all-or-nothing
    assert agent.controller._pending == []
    # The endpoint is still there.
    assert (await _request(agent.http.port, "GET", "/health"))[0] == 200


async def test_http_errors_are_clear(agent: ClientAgent) -> None:
    port = agent.http.port
    assert (await _request(port, "GET", "/nope"))[0] == 404
    status, headers, _ = await _request(port, "GET", "/control")
    assert status == 405 and headers["allow"] == "POST"
    assert (await _request(port, "POST", "/metrics", b"{}"))[0] == 405
    big = b"POST /control HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"
    assert (await _request(port, "POST", "/control", raw=big))[0] == 413
    chunked = b"POST /control HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert (await _request(port, "POST", "/control", raw=chunked))[0] == 411
    assert (await _request(port, "GET", "/", raw=b"garbage\r\n\r\n"))[0] == 400


async def test_battery_control_without_a_model_is_409() -> None:
    game = _game()
    game.config.device = None
    async with ClientAgent(game) as a:
        if a.battery is not None:  # this machine has a real battery: also 409
            assert a.battery.source == "real"
        status, out = await _post(a.http.port, {"charger": True})
        assert status == 409 and out["error"] == "no_battery_model"
        status, out = await _post(a.http.port, {"migrate": "edge-1"})
        assert status == 200
    game.display.close()


async def test_stop_releases_the_port() -> None:
    game = _game(device="phone")
    port = game.config.metrics_port
    agent = ClientAgent(game)
    await agent.start()
    assert (await _request(port, "GET", "/health"))[0] == 200
    before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert any(t.get_name() == "telemetry" for t in before)
    await agent.stop()
    left = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert not any(t.get_name() == "telemetry" for t in left)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    with socket.socket() as s:  # bindable again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    game.display.close()


async def test_port_taken_is_an_oserror_and_nothing_leaks() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        game = _game(device="phone")
        game.config.metrics_port = s.getsockname()[1]
        agent = ClientAgent(game)
        with pytest.raises(OSError):
            await agent.start()
        await agent.stop()
        assert not any(t.get_name() == "telemetry" for t in asyncio.all_tasks())
    game.display.close()


# -- the scheduler side of the agent (no socket: the link's queue is inspected) -------------
def _queued(agent: ClientAgent) -> list[MigrationReport]:
    return list(agent.link._reports)  # type: ignore[union-attr]


async def test_migrate_commands_and_reports_keep_the_decision_id() -> None:
    game = _game(scheduler="ws://127.0.0.1:9")
    game.config.metrics_port = 0
    agent = ClientAgent(game)
    ctl = agent.controller
    # A node the client was not told of: added from the command's URL.
    agent.on_migrate(
        Migrate(decision=41, mode="remote", node="cloud-1", url="ws://10.1.1.1:8770/session",
                location="cloud", reason="fps_low")
    )  # fmt: skip
    assert ctl.nodes["cloud-1"] == "ws://10.1.1.1:8770/session"
    assert ctl._pending == [("cloud-1", "scheduler:41")]
    # The controller's report for that switch goes back with decision 41.
    ctl.on_report(
        {"from": LOCAL, "to": "cloud-1", "target": "cloud-1", "trigger": "scheduler:41",
         "outcome": "ok", "reason": "", "gap_ms": 14.5, "duration_ms": 900.0}
    )  # fmt: skip
    # A rollback of a key press: decision 0, from/to in the scheduler's names.
    ctl.on_report(
        {"from": LOCAL, "to": LOCAL, "target": "edge-1", "trigger": "key",
         "outcome": "rollback", "reason": "no frame within 3.0 s", "gap_ms": 20.0,
         "duration_ms": 3000.0}
    )  # fmt: skip
    # Already local: answered at once, so the scheduler is not left waiting.
    ctl._pending.clear()
    agent.on_migrate(Migrate(decision=42, mode="local", node="device"))
    assert ctl._pending == []
    # Unknown node without a URL: failed.
    agent.on_migrate(Migrate(decision=43, mode="remote", node="ghost", location="edge"))
    reports = _queued(agent)
    assert [(r.decision, r.outcome, r.from_node, r.to_node) for r in reports] == [
        (41, "ok", "device", "cloud-1"),
        (0, "rollback", "device", "edge-1"),
        (42, "ok", "device", "device"),
        (43, "failed", "device", "ghost"),
    ]
    assert reports[0].gap_ms == 14.5 and reports[0].duration_ms == 900.0
    for r in reports:
        assert decode(r.encode()) == r  # each passes the scheduler's wire checks
    game.display.close()


# -- wiring in the game and the command line ----------------------------------------------------
async def test_f6_cycles_and_the_hud_names_the_node() -> None:
    game = _game()
    game.config.metrics_port = 0
    agent = ClientAgent(game)
    ctl = agent.controller
    assert game.migration is ctl
    game.controls.switch_render = True  # what the F6 key sets
    game._pump_input(0.0)
    assert game.controls.switch_render is False
    assert ctl._pending == [("edge-1", "key")]
    assert game.hud_state(0.0).node == ""  # local
    ctl.node = "edge-1"
    assert game.hud_state(0.0).node == "edge-1"
    game.display.close()


async def test_migrate_at_requests_on_time() -> None:
    game = _game(migrate_at=[(0.3, "edge-1"), (0.1, "local")])
    game.config.metrics_port = 0
    async with ClientAgent(game) as agent:
        ctl = agent.controller
        await asyncio.sleep(0.2)
        assert ctl._pending == []  # the game loop has not started: the clock has not either
        game.started_at = game.clock()
        game.frames = 1
        await asyncio.sleep(0.2)
        assert ctl._pending == [("local", "script")]
        await asyncio.sleep(0.3)
        assert ctl._pending == [("local", "script"), ("edge-1", "script")]
    game.display.close()


def test_command_line_flags_fill_the_config() -> None:
    from client.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        ["--headless", "--node", "edge-1=ws://10.0.0.2:8770", "--node", "cloud-1=ws://c:8770",
         "--render-node", "ws://r:8770", "--migrate-at", "5:edge-1",
         "--migrate-at", "9.5:ws://10.0.0.9:8770", "--scheduler", "ws://s:8780/",
         "--scheduler-token", "t", "--device", "vr-headset", "--battery-level", "0.2",
         "--no-charging", "--metrics-port", "9400", "--metrics-host", "0.0.0.0"]
    )  # fmt: skip
    cfg = config_from_args(args)
    cfg.validate()
    assert cfg.nodes == {
        "edge-1": "ws://10.0.0.2:8770", "cloud-1": "ws://c:8770", "node": "ws://r:8770"
    }  # fmt: skip
    assert cfg.migrate_at == [(5.0, "edge-1"), (9.5, "ws://10.0.0.9:8770")]
    assert (cfg.scheduler, cfg.scheduler_token) == ("ws://s:8780/", "t")
    assert (cfg.device, cfg.battery_level, cfg.charging) == ("vr-headset", 0.2, False)
    assert (cfg.width, cfg.height) == (832, 464)  # the profile's, without --res
    assert (cfg.metrics_host, cfg.metrics_port) == ("0.0.0.0", 9400)
    for bad in (["--node", "x"], ["--migrate-at", "soon:local"], ["--migrate-at", "5"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(bad)
