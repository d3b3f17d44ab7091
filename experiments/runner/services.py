"""Start Shiftcraft services on testbed hosts, watch their output, stop them.

Each service is a real ``python -m shiftcraft <command>`` process spawned on
its `Host` (inside its namespace when emulated). Services that listen are
started with ``--port 0`` on the host's own address and print
``listening on ws://HOST:PORT``; we wait for that line rather than guessing
ports, so loopback runs (all hosts on 127.0.0.1) never collide. stdout and
stderr go to ``logs/<node>.log`` (stdout lines prefixed ``out:``) so a failed
run can be diagnosed from its folder alone.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from experiments.bots.launch import LISTENING_RE, REPO, Child
from experiments.testbed.cpu import CpuLimit
from experiments.testbed.topology import Host


class ServiceError(RuntimeError):
    """A service did not start (exited, or never said it listens); has its log tail."""


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (for services that cannot take ``--port 0``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """One running node of the experiment: its process (a `launch.Child`) and log."""

    name: str  # node name in tables and events: sim, scheduler, edge-1, alice, bots:walkers
    kind: str  # sim | render | scheduler | client | bots
    host: Host
    log_path: Path
    url: str = ""  # ws://ADDRESS:PORT peers use ("" if it does not listen)
    port: int = 0
    metrics_url: str = ""  # http://127.0.0.1:PORT/metrics as the runner reaches it
    cpu: CpuLimit | None = None
    stdout_lines: list[str] = field(default_factory=list)  # kept for bots' JSON summary
    listening: asyncio.Future[str] | None = None
    child: Child = field(init=False, repr=False)
    _log: IO[str] | None = field(default=None, repr=False)
    killed: bool = False  # by a `kill` action: its exit is expected

    @property
    def proc(self) -> asyncio.subprocess.Process:
        return self.child.proc

    @property
    def running(self) -> bool:
        return self.child.running

    @property
    def pid(self) -> int:
        return self.child.pid

    def tail_text(self) -> str:
        return self.child.tail_text()

    def _on_line(self, which: str, line: str) -> None:
        """Every line into the log; stdout kept, and watched for ``listening on``."""
        assert self._log is not None
        self._log.write(("out: " if which == "stdout" else "") + line + "\n")
        self._log.flush()
        if which == "stdout":
            self.stdout_lines.append(line)
            m = LISTENING_RE.search(line)
            if m and self.listening is not None and not self.listening.done():
                self.listening.set_result(m.group(1))

    async def wait_listening(self, timeout: float) -> str:
        """The ``ws://`` URL it printed; `ServiceError` if it exits or stays silent."""
        assert self.listening is not None
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait({self.listening, exited}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise ServiceError(
                f"{self.name} did not print 'listening on' within {timeout:g} s; log tail:\n"
                + self.tail_text()
            ) from None
        finally:
            exited.cancel()
        if not self.listening.done():
            await self.child.output_read()
            raise ServiceError(
                f"{self.name} exited with code {self.proc.returncode} before listening"
                f" ({self.log_path}); log tail:\n{self.tail_text()}"
            )
        return self.listening.result()

    def send(self, sig: int) -> None:
        """Signal the service's process group (it leads one: spawned in its own session)."""
        self.child.send_signal(sig, group=True)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Ask politely, wait, then SIGKILL the group; drain the output, close the log."""
        code = await self.child.stop(sig, timeout, group=True)
        if self._log is not None and not self._log.closed:
            self._log.close()
        return code


async def spawn_service(
    name: str,
    kind: str,
    host: Host,
    argv: Sequence[str],
    log_dir: Path,
    *,
    listens: bool,
    env: dict[str, str] | None = None,
) -> Service:
    """Start ``argv`` on ``host``; output goes to ``log_dir/<name>.log``."""
    log_path = log_dir / f"{name.replace(':', '-')}.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed by Service.stop)
    log.write(f"# {' '.join(host.command(argv))}\n")
    log.flush()
    full_env = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), **(env or {})}
    try:
        proc = await host.spawn(
            list(argv),
            env=full_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(REPO),
        )
    except BaseException:
        log.close()
        raise
    svc = Service(name, kind, host, log_path, _log=log)
    if listens:
        svc.listening = asyncio.get_running_loop().create_future()
    svc.child = Child.attach(name, proc, svc._on_line)
    return svc
