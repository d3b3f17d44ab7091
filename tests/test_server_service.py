"""`SimServer` in-process: lifecycle, HTTP endpoints, tick clock, slow consumers, auth."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from server_client import TestClient
from websockets.asyncio.client import connect

from server.auth import SecretAuth, TokenFileAuth, mint_token, parse_auth
from server.config import ServerConfig
from server.ratelimit import TokenBucket
from server.service import SimServer, running
from shiftcraft import metric_names
from shiftcraft import protocol as P


def config(tmp_path, **kw) -> ServerConfig:
    return ServerConfig(db=tmp_path / "world.sqlite3", generator="flat", gc_freeze=False, **kw)


def port_is_free(port: int) -> bool:
    """Nothing listens there (connections in TIME_WAIT are fine, as for any server)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def http_get(url: str) -> tuple[int, str, bytes]:
    """GET in a thread: the server runs on this very event loop."""

    def get() -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, r.headers["Content-Type"], r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], e.read()

    return await asyncio.to_thread(get)


async def test_start_stop_leaks_no_task_thread_or_port(tmp_path):
    tasks_before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    async with running(config(tmp_path)) as server:
        port = server.port
        assert port > 0 and not port_is_free(port)
        c = await TestClient.connect(server.url, "leaky")
        await c.until(lambda m: isinstance(m, P.Update) and bool(m.sections))
        # The client stays connected: shutting down must close it.
    code, _ = await c.closed()
    assert code == 1001
    await c.ws.wait_closed()
    assert asyncio.all_tasks() == tasks_before
    assert set(threading.enumerate()) == threads_before
    assert port_is_free(port)


async def test_cancelling_run_shuts_down_cleanly(tmp_path):
    tasks_before = asyncio.all_tasks()
    server = SimServer(config(tmp_path))
    task = asyncio.create_task(server.run())
    await server.wait_ready(task)
    c = await TestClient.connect(server.url, "cancelled")
    s = await c.edit("place", 2, 64, 2, block=11)
    assert (await c.result(s))[1]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await c.closed())[0] == 1001
    await c.ws.wait_closed()
    assert asyncio.all_tasks() == tasks_before
    assert port_is_free(server.port)
    # The final commit happened: the edit is there for the next run.
    async with running(config(tmp_path)) as again:
        c = await TestClient.connect(again.url, "cancelled")
        await c.until(lambda m: c.block(2, 64, 2) is not None)
        assert c.block(2, 64, 2) == 11


async def test_port_in_use_fails_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = SimServer(config(tmp_path, port=taken.getsockname()[1]))
        task = asyncio.create_task(server.run())
        with pytest.raises(OSError):
            await server.wait_ready(task)


async def test_http_endpoints(tmp_path):
    async with running(config(tmp_path)) as server:
        base = "http" + server.url[2:]
        c = await TestClient.connect(server.url, "observed", role="player")
        await c.until(lambda m: isinstance(m, P.Update) and bool(m.sections))
        bad = await TestClient.connect(server.url, "rude")
        await bad.send_raw(b"\x81")  # malformed: counted by reason, closes only `bad`
        await bad.closed()
        await asyncio.sleep(0.3)

        status, ctype, body = await http_get(base + "/metrics")
        text = body.decode()
        assert status == 200 and ctype.startswith("text/plain")
        for name in (
            metric_names.SERVER_TICK_DURATION_SECONDS + "_bucket",
            metric_names.SERVER_SECTIONS_SENT_TOTAL,
            metric_names.SERVER_SENT_BYTES_TOTAL,
            metric_names.SERVER_RECEIVED_BYTES_TOTAL,
            metric_names.SERVER_MESSAGES_RECEIVED_TOTAL,
        ):
            assert name in text, name
        assert f'{metric_names.SERVER_PLAYERS}{{role="player"}} 1.0' in text
        assert f'{metric_names.SERVER_MESSAGES_REJECTED_TOTAL}{{reason="malformed"}} 1.0' in text

        status, ctype, body = await http_get(base + "/stats")
        stats = json.loads(body)
        assert status == 200 and ctype == "application/json"
        assert stats["tick"] > 0 and 0 < len(stats["tick_ms"]) <= 2000
        assert stats["players"] == 1 and stats["players_by_role"] == {"player": 1}
        assert stats["bytes_out_total"] > 0 and stats["bytes_in_total"] > 0
        assert stats["messages_rejected"] == {"malformed": 1}
        await asyncio.sleep(0.5)
        stats = json.loads((await http_get(base + "/stats"))[2])
        assert 15 < stats["tps"] <= 21

        status, _, body = await http_get(base + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, _, _ = await http_get(base + "/nope")
        assert status == 404


async def test_late_ticks_catch_up_then_resynchronise(tmp_path):
    async with running(config(tmp_path)) as server:
        await asyncio.sleep(0.3)
        # Block the loop for 3 ticks: they are caught up, none is skipped.
        t0, c0 = server.stats.tick, time.monotonic()
        time.sleep(0.15)
        await asyncio.sleep(0.6)
        done = server.stats.tick - t0
        expected = (time.monotonic() - c0) * 20
        assert server.stats.ticks_skipped == 0
        assert expected - 4 <= done <= expected + 1
        # Block it for 20 ticks: at most 5 are caught up, the rest skipped.
        t1 = server.stats.tick
        time.sleep(1.0)
        await asyncio.sleep(0.02)
        assert server.stats.tick - t1 <= 6
        assert server.stats.ticks_skipped >= 14
        # ... and the clock runs on at 20 TPS from there.
        t2, c2 = server.stats.tick, time.monotonic()
        await asyncio.sleep(0.5)
        assert abs((server.stats.tick - t2) - (time.monotonic() - c2) * 20) <= 3


async def test_hello_timeout(tmp_path):
    async with running(config(tmp_path, hello_timeout_s=0.3)) as server:
        ws = await connect(server.url)
        c = TestClient(ws, "silent")
        err = await c.error()
        assert (err.code, err.fatal) == ("hello_timeout", True)
        assert (await c.closed())[0] == 1008


async def test_slow_consumer_is_cut_off_without_blocking_the_tick(tmp_path):
    cfg = config(tmp_path, out_queue=8, sections_per_tick=5000, max_view_distance=192)
    async with running(cfg) as server:
        good = await TestClient.connect(server.url, "keeps_up")
        # A render node that stops reading: a tiny receive buffer, reading paused.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        ws = await connect(server.url, sock=sock, max_size=None)
        slow = TestClient(ws, "slow_node")
        await slow.send(P.Hello(version=P.PROTOCOL_VERSION, role="render-node", name="slow_node"))
        await slow.recv()  # welcome
        ws.transport.pause_reading()
        # Flip its view between two far places: thousands of sections every tick.
        deadline = time.monotonic() + 30
        flip = 0
        while server.stats.disconnects["slow_consumer"] == 0:
            assert time.monotonic() < deadline, "the slow consumer was never cut off"
            x = 5000.0 * (flip % 2)
            await slow.send(P.View(centers=[(x, 64.0, 0.0)], distance=192))
            flip += 1
            await good.pump(0.05)
        # The tick kept its rate and the other client was served throughout.
        t0 = good.updates[-1].tick
        await good.until(lambda m: isinstance(m, P.Update) and m.tick >= t0 + 5)
        assert server.stats.ticks_skipped < 10  # (0 on an idle machine)
        ws.transport.abort()


def test_token_bucket():
    b = TokenBucket(rate=2.0, burst=3.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.5) and not b.take(0.5)  # one token back after 0.5 s
    assert b.refill(100.0) == 3.0  # never above the burst


def test_auth_modes(tmp_path):
    assert parse_auth("open").check("anyone", "")
    secret = parse_auth("secret:k")
    assert isinstance(secret, SecretAuth)
    assert secret.check("ann", mint_token("k", "ann"))
    assert not secret.check("bob", mint_token("k", "ann"))
    path = tmp_path / "tokens"
    path.write_text("one\n")
    auth = parse_auth(f"file:{path}")
    assert isinstance(auth, TokenFileAuth)
    assert auth.check("x", "one") and not auth.check("x", "two") and not auth.check("x", "")
    time.sleep(0.01)
    path.write_text("two\n# one was revoked\n")
    import os

    os.utime(path, (time.time() + 5, time.time() + 5))  # a visible mtime change
    assert auth.check("x", "two") and not auth.check("x", "one")
    for bad in ("", "file:", "secret:", "ldap:x"):
        with pytest.raises(ValueError):
            parse_auth(bad)
