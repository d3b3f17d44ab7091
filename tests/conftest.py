"""Shared fixtures: a real `shiftcraft server` process on a free port.

``server_factory`` starts ``python -m shiftcraft server --port 0 ...`` with a
temporary SQLite file (or the one given), waits for its ``listening on
ws://HOST:PORT`` line and returns a `ServerProcess`; every process it started
is stopped at teardown (SIGTERM, then SIGKILL). ``sim_server`` is one such
server with the cheap flat generator. ``module_server`` is shared by the tests
of one module (they use distinct player names). Bots, benchmarks and any
other test can reuse them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from machine import REQUIREMENTS

REPO = Path(__file__).resolve().parent.parent


# What some tests need from the machine (`machine.REQUIREMENTS`). Tests say
# ``@pytest.mark.requires("root")`` (or a module's ``pytestmark``); this is the
# one place that decides. A missing requirement fails the test, naming the
# install step (`.ci/run` installs everything and runs as root): a skip would
# hide a missing step. Without root or Chromium, deselect those tests
# yourself: ``pytest -m "not requires"``.


def pytest_configure(config: pytest.Config) -> None:
    names = ", ".join(REQUIREMENTS)
    config.addinivalue_line("markers", f"requires(name): needs one of: {names} (conftest)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        met, reason = REQUIREMENTS[mark.args[0]]
        if not met():
            pytest.fail(f"{reason} (or deselect: pytest -m 'not requires')")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile (or load) the ray-caster once, before any test: on a fresh clone
    every client and render node a test starts would otherwise compile it at the
    same time, under the per-test timeouts. Cached: a fraction of a second."""
    # A shell runs background jobs with SIGINT ignored, and an ignored signal
    # stays ignored in every child: the Ctrl-C tests would then interrupt
    # nothing. A handler here is reset to the default in each child at exec.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    import renderer

    renderer.warm_up(lambda line: print(line, file=sys.stderr, flush=True))


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str  # ws://127.0.0.1:PORT
    db: Path
    log: Path  # the server's stderr

    @property
    def http_url(self) -> str:
        return "http" + self.url[2:]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        with urllib.request.urlopen(self.http_url + path, timeout=timeout) as resp:
            return resp.read()

    def stats(self) -> dict:
        return json.loads(self.get("/stats"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the server and wait for it; SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_server(
    db: Path, *args: str, log: Path | None = None, timeout: float = 60.0
) -> ServerProcess:
    """Start ``shiftcraft server`` on a free port; returns once it listens."""
    log = log or db.with_suffix(f".{time.monotonic_ns()}.log")
    cmd = [
        sys.executable,
        "-m",
        "shiftcraft",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        str(db),
        *args,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env
        )
    deadline = time.monotonic() + timeout
    line = b""
    assert proc.stdout is not None
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"server did not start (rc={proc.returncode}):\n{log.read_text(errors='replace')}"
            )
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                continue
            line += chunk
    text = line.decode().strip()
    assert text.startswith("listening on ws://"), text
    return ServerProcess(proc, text.removeprefix("listening on "), db, log)


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """``start(*args, db=None)`` -> a running server; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str, db: Path | None = None) -> ServerProcess:
        server = start_server(db or tmp_path / "world.sqlite3", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(timeout=10.0)


@pytest.fixture
def sim_server(server_factory: ServerFactory) -> ServerProcess:
    """A fresh flat-world server of its own."""
    return server_factory("--generator", "flat")


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A flat-world server shared by one test module (use distinct player names)."""
    db = tmp_path_factory.mktemp("sim") / "world.sqlite3"
    server = start_server(db, "--generator", "flat", "--view-distance", "32")
    yield server
    server.stop(timeout=10.0)
