"""End to end, every part a real process: `shiftcraft scheduler`, `shiftcraft server`,
a `shiftcraft render-node --scheduler` and a headless `shiftcraft play --scheduler`
(issue 5).

The scheduler runs the ``static:cloud-1`` policy, so once the client's
telemetry arrives and the node is alive it commands the client to the node;
the client switches make-before-break and reports back with the decision id.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import free_port as _free_port
from procs import get as _get
from procs import scheduler_process
from procs import stop as _stop
from procs import wait_for as _wait
from prometheus_client.parser import text_string_to_metric_families

from renderer.node.launch import NodeProcess, start_node
from shiftcraft import metric_names as m

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(900)  # a renderer compile on 2 busy cores takes minutes
NODE = "cloud-1"
CLIENT = "e2e-tele"


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `shiftcraft scheduler` process; yields its http://HOST:PORT."""
    with scheduler_process(
        tmp_path_factory.mktemp("sched"), f"static:{NODE}", "min_dwell_s: 5\nsettle_s: 1"
    ) as url:
        yield url


@pytest.fixture(scope="module")
def node(module_server, scheduler, tmp_path_factory) -> Iterator[NodeProcess]:
    log = tmp_path_factory.mktemp("node") / "node.log"
    ws = "ws" + scheduler.removeprefix("http")
    proc = start_node(
        module_server.url, "--view-distance", "32", "--name", NODE,
        "--scheduler", ws, "--location", "cloud", "--capacity", "3", log=log, timeout=600,
    )  # fmt: skip
    yield proc
    proc.stop()


def _state(scheduler: str) -> dict:
    return json.loads(_get(scheduler + "/state"))


def _metrics(url: str) -> dict[tuple[str, tuple], float]:
    text = _get(url + "/metrics").decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_render_node_registers_with_its_location(scheduler: str, node: NodeProcess) -> None:
    def registered() -> dict | None:
        nodes = {n["name"]: n for n in _state(scheduler)["nodes"]}
        n = nodes.get(NODE)
        return n if n and n["alive"] and n["last_seen_s"] is not None else None

    n = _wait("the node in /state", registered, 30)
    assert n["location"] == "cloud" and n["capacity"] == 3 and n["sessions"] == 0
    assert n["url"] == node.url + "/session"
    # It keeps pushing its status (a heartbeat): still alive a few seconds later.
    time.sleep(2.5)
    n = {x["name"]: x for x in _state(scheduler)["nodes"]}[NODE]
    assert n["alive"] and n["last_seen_s"] < 2.5


def test_client_telemetry_reaches_the_scheduler_and_it_migrates_the_client(
    module_server, scheduler: str, node: NodeProcess, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "client.log"
    ws = "ws" + scheduler.removeprefix("http")
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shiftcraft", "play", "--server", module_server.url,
             "--name", CLIENT, "--headless", "--res", "160x90", "--max-fps", "30",
             "--view-distance", "32", "--seconds", "300", "--device", "phone",
             "--battery-level", "0.5", "--scheduler", ws, "--metrics-port", str(port),
             "--migration-timeout", "20", "--script", "walk 1; turn 30", "--loop-script",
             "--node", f"{NODE}={node.url}"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    client = f"http://127.0.0.1:{port}"
    try:

        def client_state() -> dict | None:
            assert proc.poll() is None, log.read_text()
            clients = {c["name"]: c for c in _state(scheduler)["clients"]}
            c = clients.get(CLIENT)
            return c if c and c["telemetry"]["samples"] >= 3 else None

        c = _wait("the client's telemetry in /state", client_state, 480)
        t = c["telemetry"]
        assert t["fps_median"] is not None and t["fps_median"] > 0
        assert t["rtt_sim"]["samples"] >= 1
        assert t["rss_bytes"] > 10_000_000
        assert 0.3 < t["battery_level"] <= 0.5 and t["battery_draining"] is True
        assert t["battery_power_w"] > 0 and t["cpu"] is not None
        # Probes: the client timed a handshake with the node it may move to.
        assert t["rtt_nodes"][NODE]["samples"] >= 1

        # static:cloud-1 sends `migrate`; the client switches and reports with its decision.
        def migrated() -> dict | None:
            assert proc.poll() is None, log.read_text()
            s = _state(scheduler)
            c = {x["name"]: x for x in s["clients"]}[CLIENT]
            return s if c["placement"] == NODE and s["totals"]["reports"].get("ok") else None

        s = _wait("the switch to the render node", migrated, 120)
        decisions = [d for d in s["decisions"] if d.get("client") == CLIENT and d.get("decision")]
        assert decisions and decisions[0]["to"] == NODE
        assert s["totals"]["reports"] == {"ok": 1}, s["totals"]

        # The client's own endpoint agrees, and counts the switch as the scheduler's.
        health = json.loads(_get(client + "/health"))
        assert health["mode"] == "remote" and health["node"] == NODE
        assert health["scheduler"] == "registered"
        got = _wait(
            "remote-mode metrics",
            lambda: (ms := _metrics(client)).get((m.CLIENT_RTT_NODE_SECONDS, ())) and ms,
            15,
        )
        assert got[(m.CLIENT_REMOTE, ())] == 1
        assert got[(m.CLIENT_PLACEMENT, (("node", NODE),))] == 1
        key = (m.CLIENT_MIGRATIONS_TOTAL, (("outcome", "ok"), ("trigger", "scheduler")))
        assert got[key] == 1
        assert got[(m.CLIENT_RECEIVED_BYTES_TOTAL, (("link", "stream"),))] > 10_000
        assert got[(m.CLIENT_SCHEDULER_CONNECTED, ())] == 1
        # The node now reports the session to the scheduler.
        n = _wait(
            "the node's session count",
            lambda: [x for x in _state(scheduler)["nodes"] if x["sessions"] == 1],
            10,
        )[0]
        assert CLIENT in n["players"]
    finally:
        rc = _stop(proc, 30)
    assert rc == 0, log.read_text()
    with pytest.raises(OSError):  # its HTTP port is released
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- the render node's side, without processes --------------------------------------------------
def test_render_node_status_and_advertised_url() -> None:
    from renderer.node.service import NodeConfig, RenderNode
    from scheduler.messages import NodeStatus, decode

    with pytest.raises(ValueError, match="location"):
        NodeConfig(sim_url="ws://x:1", location="moon").validate()
    with pytest.raises(ValueError, match="--scheduler"):
        NodeConfig(sim_url="ws://x:1", scheduler_url="http://x:2").validate()
    node = RenderNode(NodeConfig(sim_url="ws://x:1", name="edge-7", max_sessions=5, capacity=2))
    try:
        node.url = "ws://0.0.0.0:8770"
        assert node.signalling_url() == f"ws://{socket.gethostname()}:8770/session"
        node.url = "ws://127.0.0.1:9000"
        assert node.signalling_url() == "ws://127.0.0.1:9000/session"
        node.config.public_url = "ws://render-edge:8770"
        assert node.signalling_url() == "ws://render-edge:8770"
        status = node.node_status()
        assert (status.sessions, status.capacity, status.accepting) == (0, 2, True)
        assert status.encode_ms is None and status.fps is None and status.players == []
        assert decode(status.encode()) == status  # what the scheduler accepts
        node.stop()
        assert node.node_status().accepting is False  # draining: never chosen
        assert isinstance(node.node_status(), NodeStatus)
    finally:
        node.pool.shutdown()
        node.encode_pool.shutdown()
