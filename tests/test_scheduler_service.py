"""The scheduler service over real websockets and HTTP, and the `SchedulerLink` agent.

Everything runs in-process on loopback with a fast engine configuration
(samples every 0.1 s), except the CLI tests, which start the real
``shiftcraft scheduler`` process.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from scheduler.agent import LinkFailed, LinkState, SchedulerLink
from scheduler.config import EngineConfig, SchedulerConfig
from scheduler.decisions import read_log
from scheduler.messages import (
    Error,
    Migrate,
    MigrationReport,
    Register,
    Welcome,
    decode,
    encode,
)
from scheduler.service import SchedulerService, running

REPO = Path(__file__).resolve().parent.parent
EDGE_URL = "ws://127.0.0.1:9/session"  # never dialled: no real render node here
FAST = {
    "eval_interval_s": 0.1,
    "telemetry_interval_s": 0.1,
    "window_s": 0.6,
    "min_samples": 3,
    "stale_s": 1.0,
    "settle_s": 0.3,
    "min_dwell_s": 1.0,
    "node_timeout_s": 2.0,
    "pending_timeout_s": 3.0,
}


def make_config(tmp_path: Path, policy: str = "threshold", **kw: Any) -> SchedulerConfig:
    return SchedulerConfig(
        host="127.0.0.1",
        port=kw.pop("port", 0),
        policy=policy,
        engine=EngineConfig(**FAST),
        log_path=str(tmp_path / "decisions.jsonl"),
        **kw,
    )


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def http_get(svc: SchedulerService, path: str) -> tuple[int, Any]:
    """GET from the service (in a thread: the service runs on this loop)."""
    status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{svc.port}{path}")
    if path.startswith("/metrics"):
        return status, body.decode()
    return status, json.loads(body)


class FakeGame:
    """A game client as the scheduler sees it: samples, and obeys `migrate`.

    It switches 0.2 s after a command (the make-before-break controller is
    someone else's job) and reports the outcome through its link.
    """

    def __init__(self, local_fps: float, remote_fps: float = 30.0) -> None:
        self.placement = "device"
        self.local_fps = local_fps
        self.remote_fps = remote_fps
        self.link: SchedulerLink | None = None
        self.commands: list[Migrate] = []
        self.outcome = "ok"

    def sample(self) -> dict[str, Any]:
        p = self.placement
        fps = self.local_fps if p == "device" else self.remote_fps
        s: dict[str, Any] = {
            "mode": "local" if p == "device" else "remote",
            "node": p,
            "fps": fps,
            "frame_ms": [1000 / fps, 1200 / fps, 1500 / fps],
            "rtt_sim_ms": 4.0,
            "cpu": 0.5,
            "rss_bytes": 1_000_000_000 if p == "device" else 700_000_000,
        }
        if p != "device":
            s["rtt_node_ms"] = 3.0
        return s

    async def on_migrate(self, msg: Migrate) -> None:
        self.commands.append(msg)
        await asyncio.sleep(0.2)
        frm = self.placement
        if self.outcome == "ok":
            self.placement = msg.node
        assert self.link is not None
        self.link.report(
            MigrationReport(
                decision=msg.decision,
                outcome=self.outcome,
                from_node=frm,
                to_node=msg.node,
                gap_ms=11.0,
                duration_ms=200.0,
            )
        )


def node_link(svc: SchedulerService, name: str = "edge-1", capacity: int = 4) -> SchedulerLink:
    return SchedulerLink.node(
        svc.url,
        name,
        location="edge",
        capacity=capacity,
        signalling_url=EDGE_URL,
        sample=lambda: {"sessions": 0, "capacity": capacity, "fps": 30.0, "encode_ms": 4.0},
        backoff_s=(0.05, 0.2),
    )


def client_link(svc: SchedulerService, game: FakeGame, name: str = "alice") -> SchedulerLink:
    link = SchedulerLink.client(
        svc.url, name, sample=game.sample, on_migrate=game.on_migrate, backoff_s=(0.05, 0.2)
    )
    game.link = link
    return link


async def stop_links(*tasks: asyncio.Task) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- end to end ------------------------------------------------------------------------------
async def test_a_bad_fps_client_is_moved_to_the_edge_end_to_end(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as svc:
        node = node_link(svc)
        game = FakeGame(local_fps=12.0)
        link = client_link(svc, game)
        tasks = [asyncio.create_task(node.run()), asyncio.create_task(link.run())]
        try:
            await wait_until(lambda: game.placement == "edge-1", what="the move to the edge")
            cmd = game.commands[0]
            assert (cmd.mode, cmd.node, cmd.url, cmd.location, cmd.reason) == (
                "remote",
                "edge-1",
                EDGE_URL,
                "edge",
                "low_fps",
            )
            # The report arrives, the pending command clears.
            await wait_until(
                lambda: svc.engine.registry.clients["alice"].pending is None, what="the report"
            )
            status, state = await http_get(svc, "/state")
            assert status == 200
            assert state["policy"] == "threshold"
            (c,) = state["clients"]
            assert c["name"] == "alice" and c["placement"] == "edge-1" and c["connected"]
            assert c["telemetry"]["samples"] > 3
            assert [d["event"] for d in c["recent_decisions"]][-2:] == ["migrate", "report"]
            (n,) = state["nodes"]
            assert (n["name"], n["location"], n["alive"], n["capacity"]) == (
                "edge-1",
                "edge",
                True,
                4,
            )
            assert any(d["event"] == "migrate" and d["to"] == "edge-1" for d in state["decisions"])
            assert state["totals"]["reports"] == {"ok": 1}

            status, text = await http_get(svc, "/metrics")
            assert status == 200
            check_metrics(text)
        finally:
            await stop_links(*tasks)
    # The decision log on disk says the same.
    records = read_log(tmp_path / "decisions.jsonl")
    migrate = next(r for r in records if r["event"] == "migrate")
    assert migrate["client"] == "alice" and migrate["reason"] == "low_fps"
    assert migrate["inputs"]["fps_median"] == 12.0
    assert any(r["event"] == "report" and r["reason"] == "ok" for r in records)


def check_metrics(text: str) -> None:
    """Parse /metrics; names, units and the decision counters."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {}
    for f in families.values():
        assert f.name.startswith("shiftcraft_scheduler_"), f.name
        if f.type == "counter":
            for s in f.samples:
                assert s.name.endswith(("_total", "_created")), s.name
        if f.type == "histogram":
            assert f.name.endswith("_seconds"), f.name
        for s in f.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    key = (
        "shiftcraft_scheduler_decisions_total",
        (("from", "device"), ("reason", "low_fps"), ("to", "edge")),
    )
    assert samples[key] == 1.0
    assert samples[("shiftcraft_scheduler_migrations_total", (("outcome", "ok"),))] == 1.0
    assert samples[("shiftcraft_scheduler_migration_gap_seconds_count", ())] == 1.0
    assert samples[("shiftcraft_scheduler_migration_gap_seconds_sum", ())] == pytest.approx(0.011)
    assert samples[("shiftcraft_scheduler_clients", (("mode", "remote"),))] == 1.0
    assert samples[("shiftcraft_scheduler_nodes", (("location", "edge"),))] == 1.0
    assert samples[("shiftcraft_scheduler_node_capacity", (("node", "edge-1"),))] == 4.0
    assert samples[("shiftcraft_scheduler_telemetry_samples_total", ())] > 3
    assert samples[("shiftcraft_scheduler_holds_total", (("reason", "hysteresis"),))] >= 2


async def test_manual_migration_over_http(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, policy="static-local", admin_token="s3cret")
    async with running(cfg) as svc:
        node = node_link(svc)
        game = FakeGame(local_fps=60.0)
        link = client_link(svc, game)
        tasks = [asyncio.create_task(node.run()), asyncio.create_task(link.run())]
        try:
            await wait_until(lambda: link.registered.is_set() and node.registered.is_set())
            await wait_until(lambda: svc.engine.registry.clients["alice"].smoother.samples > 0)
            status, body = await http_get(svc, "/migrate?client=alice&to=edge-1")
            assert status == 403 and body["error"] == "bad_token"
            status, body = await http_get(svc, "/migrate?client=alice&to=edge-1&token=s3cret")
            assert status == 200, body
            assert body["node"] == "edge-1" and body["reason"] == "manual" and body["decision"]
            # A second command while the first is in flight is refused.
            status, body = await http_get(svc, "/migrate?client=alice&to=local&token=s3cret")
            assert status == 409 and body["error"] == "in_flight"
            await wait_until(lambda: game.placement == "edge-1")
            await wait_until(lambda: svc.engine.registry.clients["alice"].pending is None)
            # static-local would bring it back, but not within the dwell time;
            # an operator is not held by the dwell time.
            status, body = await http_get(svc, "/migrate?client=alice&to=local&token=s3cret")
            assert status == 200 and body["node"] == "device" and body["mode"] == "local"
            await wait_until(lambda: game.placement == "device")
            for query, code, error in [
                ("client=bob&to=local", 404, "unknown_client"),
                ("client=alice&to=cloud-9", 404, "target_unavailable"),
                ("client=alice", 400, "bad_request"),
            ]:
                await wait_until(lambda: svc.engine.registry.clients["alice"].pending is None)
                status, body = await http_get(svc, f"/migrate?{query}&token=s3cret")
                assert (status, body["error"]) == (code, error), query
            status, body = await http_get(svc, "/migrate?client=alice&to=local&token=s3cret")
            assert (status, body["error"]) == (409, "already_there")
        finally:
            await stop_links(*tasks)
    manual = [r for r in read_log(tmp_path / "decisions.jsonl") if r["event"] == "migrate"]
    assert [(r["to"], r["reason"]) for r in manual] == [("edge-1", "manual"), ("device", "manual")]


async def test_a_dead_node_is_never_chosen_and_a_fallback_is_learnt(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as svc:
        node = node_link(svc)
        game = FakeGame(local_fps=12.0)
        link = client_link(svc, game)
        node_task = asyncio.create_task(node.run())
        link_task = asyncio.create_task(link.run())
        try:
            await wait_until(lambda: game.placement == "edge-1")
            # The node dies; the client falls back to local rendering on its own.
            await stop_links(node_task)
            game.placement = "device"
            link.report(
                MigrationReport(
                    decision=0,
                    outcome="fallback",
                    from_node="edge-1",
                    to_node="device",
                    reason="no frames for 2 s",
                    gap_ms=180.0,
                )
            )
            await wait_until(lambda: svc.engine.stats.reports["fallback"] == 1)
            await asyncio.sleep(1.5)  # bad FPS again, well past k_leave and the dwell time
            assert len(game.commands) == 1, "no second command: the only node is dead"
            _, state = await http_get(svc, "/state")
            (c,) = state["clients"]
            assert c["placement"] == "device" and "edge-1" in c["penalties"]
            assert state["nodes"][0]["alive"] is False
            assert state["totals"]["holds"].get("no_target", 0) > 0
        finally:
            await stop_links(node_task, link_task)


# -- bad input --------------------------------------------------------------------------------
def reg(**kw: Any) -> bytes:
    return encode(Register(**{"version": 1, "role": "client", "name": "mallory", **kw}))


async def expect_fatal(url: str, frames: list[Any], code: str, close_code: int) -> None:
    async with ws_connect(url) as ws:
        for f in frames:
            await ws.send(f)
        msg = decode(await ws.recv())
        assert isinstance(msg, Error) and msg.code == code and msg.fatal, msg
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == close_code


async def test_bad_registrations_get_a_clear_fatal_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, auth="secret:k3y", hello_timeout_s=0.3)
    async with running(cfg) as svc:
        url = svc.url
        await expect_fatal(url, ["hello"], "malformed", 1007)
        await expect_fatal(url, [b"\xc1garbage"], "malformed", 1007)
        await expect_fatal(url, [reg(version=99)], "bad_version", 1002)
        await expect_fatal(url, [reg(token="wrong")], "bad_token", 1008)
        telemetry = msgpack.packb({"type": "telemetry", "seq": 1})
        await expect_fatal(url, [telemetry], "bad_field", 1002)  # missing fields
        welcome = encode(Welcome(version=1, name="x", role="client"))
        await expect_fatal(url, [welcome], "expected_register", 1002)
        await expect_fatal(url, [], "register_timeout", 1008)
        from server.auth import mint_token

        node = {"role": "render-node", "name": "edge-9", "token": mint_token("k3y", "edge-9")}
        await expect_fatal(url, [reg(**node, url="ws://x/session")], "bad_field", 1002)
        await expect_fatal(url, [reg(**node, location="edge")], "bad_field", 1002)
        dev = {**node, "name": "device", "token": mint_token("k3y", "device")}
        await expect_fatal(url, [reg(**dev, location="edge", url="ws://x/s")], "bad_field", 1002)
        assert svc.metrics.rejected_tally["bad_token"] == 1
        status, health = await http_get(svc, "/health")
        assert status == 200 and health["status"] == "ok"


async def test_bad_messages_after_register_are_answered_not_fatal(tmp_path: Path) -> None:
    async with (
        running(make_config(tmp_path)) as svc,
        ws_connect(svc.url) as ws,
        ws_connect(svc.url) as bystander,
    ):
        await bystander.send(reg(name="bob"))
        assert isinstance(decode(await bystander.recv()), Welcome)
        await ws.send(reg())
        assert isinstance(decode(await ws.recv()), Welcome)
        good = {
            "type": "telemetry",
            "seq": 1,
            "t": 1.0,
            "mode": "local",
            "node": "device",
            "fps": 30.0,
            "frame_ms": [33.0, 40.0, 50.0],
        }
        for frame, code, text in [
            (msgpack.packb({"type": "bogus"}), "unknown_type", "bogus"),
            (msgpack.packb({**good, "cpu": 7}), "bad_field", "'cpu'"),
            (msgpack.packb({**good, "node": "edge-1"}), "bad_field", "mode 'local'"),
            (
                msgpack.packb({"type": "node_status", "t": 1, "sessions": 0, "capacity": 1}),
                "not_allowed",
                "node_status from a client",
            ),
            (reg(), "not_allowed", "already registered"),
        ]:
            await ws.send(frame)
            err = decode(await ws.recv())
            assert isinstance(err, Error) and not err.fatal, err
            assert err.code == code and text in err.message, err
        await ws.send(msgpack.packb(good))
        await wait_until(lambda: svc.engine.stats.samples == 1)
        # A frame over the size limit closes that connection only.
        await ws.send(b"\x00" * 20_000)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1009
        # The bystander is still served.
        await bystander.send(msgpack.packb({**good, "seq": 1}))
        await wait_until(lambda: svc.engine.stats.samples == 2)
        assert ("client", "bob") in svc.peers and ("client", "mallory") not in svc.peers


async def test_flooding_is_rate_limited(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, msg_rate=5.0, msg_burst=5.0)
    async with running(cfg) as svc, ws_connect(svc.url) as ws:
        await ws.send(reg())
        assert isinstance(decode(await ws.recv()), Welcome)
        for seq in range(1, 31):
            frame = {
                "type": "telemetry",
                "seq": seq,
                "t": 1.0,
                "mode": "local",
                "node": "device",
                "fps": 30.0,
                "frame_ms": [33.0, 40.0, 50.0],
            }
            await ws.send(msgpack.packb(frame))
        err = decode(await ws.recv())
        assert isinstance(err, Error) and err.code == "rate_limited" and not err.fatal
        assert svc.engine.stats.samples < 30


# -- the link ---------------------------------------------------------------------------------
async def test_link_refused_for_good_fails_and_a_replaced_link_stops(tmp_path: Path) -> None:
    async with running(make_config(tmp_path, auth="secret:k3y")) as svc:
        bad = SchedulerLink.client(svc.url, "alice", token="nope", backoff_s=(0.05, 0.1))
        with pytest.raises(LinkFailed) as info:
            await asyncio.wait_for(bad.run(), 5)
        assert info.value.code == "bad_token" and bad.state is LinkState.FAILED

    async with running(make_config(tmp_path)) as svc:
        first = SchedulerLink.client(svc.url, "alice", backoff_s=(0.05, 0.1))
        second = SchedulerLink.client(svc.url, "alice", backoff_s=(0.05, 0.1))
        t1 = asyncio.create_task(first.run())
        await asyncio.wait_for(first.registered.wait(), 5)
        t2 = asyncio.create_task(second.run())
        await asyncio.wait_for(second.registered.wait(), 5)
        with pytest.raises(LinkFailed, match="replaced"):
            await asyncio.wait_for(t1, 5)
        assert svc.peers[("client", "alice")] is not None
        second.close()
        await asyncio.wait_for(t2, 5)
        assert second.state is LinkState.CLOSED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_link_reconnects_with_backoff_and_keeps_its_reports(tmp_path: Path) -> None:
    port = free_port()
    game = FakeGame(local_fps=60.0)
    link = SchedulerLink.client(
        f"ws://127.0.0.1:{port}", "alice", sample=game.sample, backoff_s=(0.05, 0.2)
    )
    task = asyncio.create_task(link.run())
    try:
        await asyncio.sleep(0.3)  # no scheduler yet: the link keeps trying
        assert link.state in (LinkState.BACKOFF, LinkState.CONNECTING) and link.attempt >= 1
        async with running(make_config(tmp_path, port=port)) as svc:
            await asyncio.wait_for(link.registered.wait(), 5)
            await wait_until(lambda: svc.engine.stats.samples >= 2)
        await wait_until(lambda: link.state is LinkState.BACKOFF, what="the link to notice")
        # Queued while disconnected: delivered after the reconnect.
        link.report(
            MigrationReport(decision=0, outcome="fallback", from_node="edge-1", to_node="device")
        )
        async with running(make_config(tmp_path, port=port)) as svc:
            await asyncio.wait_for(link.registered.wait(), 5)
            await wait_until(lambda: svc.engine.stats.reports["fallback"] == 1)
            assert link.connects == 2
            await wait_until(lambda: svc.engine.stats.samples >= 2)  # numbered from 1 again
    finally:
        await stop_links(task)
    assert link.state is LinkState.CLOSED


async def test_start_stop_leaks_nothing(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    cfg = make_config(tmp_path)
    svc = SchedulerService(cfg)
    run = asyncio.create_task(svc.run())
    await svc.wait_ready(run)
    port = svc.port
    game = FakeGame(local_fps=60.0)
    link = client_link(svc, game)
    link_task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.registered.wait(), 5)
    raw = await ws_connect(svc.url)  # a connection that never registers
    svc.stop()
    await asyncio.wait_for(run, 10)  # returns with peers still connected
    assert svc.peers == {} or all(not p.open for p in svc.peers.values())
    await stop_links(link_task)
    await raw.close()
    await wait_until(lambda: asyncio.all_tasks() == before, 5, "tasks to finish")
    with pytest.raises(ConnectionRefusedError):  # nobody listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket() as s:  # and the port can be bound again (TIME_WAIT aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    assert svc.log._file is None  # the decision log is closed
    assert link.state is LinkState.CLOSED


# -- the command ------------------------------------------------------------------------------
def start_cli(*args: str, timeout: float = 30.0) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "shiftcraft", "scheduler", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"no listening line: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line += os.read(proc.stdout.fileno(), 1)
    text = line.decode().strip()
    assert text.startswith("listening on ws://127.0.0.1:"), text
    return proc, text.removeprefix("listening on ")


def test_cli_runs_and_stops_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text("engine:\n  min_dwell_s: 30\nscore:\n  rtt_budget_ms: 60\n")
    log = tmp_path / "d.jsonl"
    proc, url = start_cli("--policy", "score", "--config", str(config), "--log", str(log))
    try:
        status, body = _get("http" + url[2:] + "/health")
        assert status == 200 and json.loads(body)["policy"] == "score"
        state = json.loads(_get("http" + url[2:] + "/state")[1])
        assert state["params"]["rtt_budget_ms"] == 60 and state["engine"]["min_dwell_s"] == 30
        status, _ = _get("http" + url[2:] + "/nope")
        assert status == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
    assert rc == 0
    assert log.exists()


def test_cli_refuses_bad_configuration(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("threshold:\n  fps_minimum: 3\n")
    for args, text in [
        (["--config", str(bad)], "unknown parameter(s) fps_minimum"),
        (["--policy", "random"], "unknown policy 'random'"),
        (["--config", str(tmp_path / "missing.yaml")], "No such file"),
    ]:
        cmd = [sys.executable, "-m", "shiftcraft", "scheduler", "--port", "0", *args]
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and text in res.stderr, res.stderr


def test_cli_replays_a_trace() -> None:
    trace = REPO / "tests" / "data" / "traces" / "threshold_low_fps.jsonl"
    cmd = [sys.executable, "-m", "shiftcraft", "scheduler", "--replay", str(trace)]
    res = subprocess.run(
        [*cmd, "--policy", "threshold"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["switches"] == 1 and summary["final"] == {"alice": "edge-1"}
