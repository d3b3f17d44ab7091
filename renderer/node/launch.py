"""Start a ``shiftcraft render-node`` process (tests, benchmarks, experiments).

`start_node` runs ``python -m shiftcraft render-node --port 0 ...``, waits
for its ``listening on ws://HOST:PORT`` line and returns a `NodeProcess`.
The node prints that line only once it listens *and* the sim welcomed it.
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
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class NodeProcess:
    proc: subprocess.Popen
    url: str  # ws://127.0.0.1:PORT
    log: Path

    @property
    def http_url(self) -> str:
        return "http" + self.url[2:]

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        with urllib.request.urlopen(self.http_url + path, timeout=timeout) as resp:
            return resp.read()

    def stats(self) -> dict:
        return json.loads(self.get("/stats"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_node(
    sim_url: str, *args: str, log: Path, timeout: float = 120.0, env: dict | None = None
) -> NodeProcess:
    cmd = [
        sys.executable, "-m", "shiftcraft", "render-node",
        "--sim", sim_url, "--host", "127.0.0.1", "--port", "0", *args,
    ]  # fmt: skip
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
            env=full_env,
        )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"render node did not start (rc={proc.returncode}):\n"
                f"{log.read_text(errors='replace')}"
            )
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 1)
            if chunk:
                line += chunk
    text = line.decode().strip()
    if not text.startswith("listening on ws://"):
        proc.kill()
        raise RuntimeError(f"unexpected first line from the render node: {text!r}")
    return NodeProcess(proc, text.removeprefix("listening on "), log)
