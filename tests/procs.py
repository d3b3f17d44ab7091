"""Helpers for tests that run Shiftcraft services as real processes."""

from __future__ import annotations

import contextlib
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def get_json(url: str, timeout: float = 5.0) -> Any:
    return json.loads(get(url, timeout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, fn: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Poll ``fn`` until it returns something true; its last answer in the error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM, wait, then kill: the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def start_listening(
    args: list[str], log: Path, timeout: float = 60.0
) -> tuple[subprocess.Popen, str]:
    """``python -m shiftcraft ARGS`` until it prints ``listening on ws://...``; the
    process and that URL (stderr goes to ``log``)."""
    err = open(log, "wb")  # noqa: SIM115 - the child holds it; closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "shiftcraft", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    err.close()
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        if time.monotonic() > deadline or proc.poll() is not None:
            stop(proc)
            raise AssertionError(f"{args[0]} did not start: {log.read_text()[-3000:]}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line += os.read(proc.stdout.fileno(), 1)
    text = line.decode().strip()
    assert text.startswith("listening on ws://"), text
    return proc, text.removeprefix("listening on ")


@contextlib.contextmanager
def scheduler_process(tmp: Path, policy: str, engine: str) -> Iterator[str]:
    """A `shiftcraft scheduler` process with ``policy`` and the ``engine:`` settings
    (YAML lines), its log and decision log in ``tmp``; yields its http://HOST:PORT."""
    cfg = tmp / "policy.yaml"
    cfg.write_text("engine:\n" + "".join(f"  {line}\n" for line in engine.splitlines()))
    proc, url = start_listening(
        ["scheduler", "--host", "127.0.0.1", "--port", "0", "--policy", policy,
         "--config", str(cfg), "--log", str(tmp / "decisions.jsonl")],
        tmp / "scheduler.log",
    )  # fmt: skip
    try:
        yield "http" + url.removeprefix("ws")
    finally:
        assert stop(proc) in (0, -signal.SIGKILL)
