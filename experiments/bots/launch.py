"""Start the sim server and bot processes as real child processes, and stop them.

The tick bench, the demo and (later) experiments run every node as its own
process over real websockets. This module owns that plumbing once:

* children start in their own session (a terminal ^C reaches only us, and we
  stop them in order: bots first, then the server) and, on Linux, with a
  parent-death signal, so even a ``kill -9`` of the parent leaves no orphans;
* their stdout/stderr are read continuously (a full pipe would stall them),
  line by line, into callbacks and a short tail kept for error messages;
* `stop` sends SIGINT, waits, then SIGKILLs the whole process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shiftcraft.process import die_with_parent

REPO = Path(__file__).resolve().parents[2]  # the checkout: children run from it
LISTENING_RE = re.compile(r"listening on (ws://[^\s]+)")
# (stream name, line) -> True when the line was consumed (kept out of the tail).
LineHandler = Callable[[str, str], bool | None]


def python_cmd(*args: str) -> list[str]:
    """``python -m shiftcraft ARGS`` with this interpreter (the venv's)."""
    return [sys.executable, "-m", "shiftcraft", *args]


@dataclass
class Child:
    """A child process whose output lines go to ``on_line`` and a tail."""

    name: str
    proc: asyncio.subprocess.Process
    on_line: LineHandler | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    _readers: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    async def spawn(
        cls,
        name: str,
        cmd: Sequence[str],
        on_line: LineHandler | None = None,
        env: dict[str, str] | None = None,
    ) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        return cls.attach(name, proc, on_line)

    @classmethod
    def attach(cls, name: str, proc: asyncio.subprocess.Process,
               on_line: LineHandler | None = None) -> Child:  # fmt: skip
        """Watch a process started elsewhere (a testbed host) with piped stdout/stderr."""
        child = cls(name, proc, on_line)
        assert proc.stdout is not None and proc.stderr is not None
        child._readers = [
            asyncio.create_task(child._read(proc.stdout, "stdout"), name=f"{name}-stdout"),
            asyncio.create_task(child._read(proc.stderr, "stderr"), name=f"{name}-stderr"),
        ]
        return child

    async def _read(self, stream: asyncio.StreamReader, which: str) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the stream limit: skip it
                continue
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            if self.on_line is None or not self.on_line(which, line):
                self.tail.append(f"{which}: {line}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def tail_text(self) -> str:
        return "\n".join(f"  [{self.name}] {line}" for line in self.tail)

    async def output_read(self) -> None:
        """Returns once both pipes are read to their end (the process has exited)."""
        await asyncio.gather(*self._readers, return_exceptions=True)

    def send_signal(self, sig: int, group: bool = False) -> None:
        """Send ``sig`` to the process, or to its whole group (it leads one)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    async def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0,
                   group: bool = False) -> int:  # fmt: skip
        """Ask politely (``sig`` to the process, or its group), wait, then kill the
        process group; drain the output readers. Returns the exit code."""
        if self.proc.returncode is None:
            self.send_signal(sig, group)
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
            except TimeoutError:
                self.kill_now()
                await self.proc.wait()
        # The pipes close with the process; let the readers drain what is left.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.output_read()
        for task in self._readers:
            task.cancel()
        return self.proc.returncode  # type: ignore[return-value]

    def kill_now(self) -> None:
        """SIGKILL the whole process group, now (also the last resort at shutdown)."""
        if self.proc.returncode is None:
            self.send_signal(signal.SIGKILL, group=True)


async def warm_renderer(
    timeout: float = 1200.0, progress: Callable[[str], None] | None = None
) -> float | None:
    """Compile the renderer's numba kernels into the disk cache, in a child process.

    Clients and render nodes load the cached machine code in under a second,
    but the first start after a change to the renderer compiles for tens of
    seconds (minutes on a loaded 2-core machine, longer still under a
    client's CPU limit) with its event loop blocked. Doing it once, before
    any run, keeps that out of the measurements and the start-up timeouts.
    Returns the seconds it took (None if it failed; each service then
    compiles by itself, still correct, only slower to start). ``progress``
    gets a line before and one after.
    """
    if progress is not None:
        progress("renderer: loading its compiled kernels (compiling if the code changed)...")
    took = await _warm_in_child(timeout)
    if progress is not None:
        progress(
            "renderer ready" + (f" ({took:.1f} s)" if took is not None else " (warm-up failed)")
        )
    return took


async def _warm_in_child(timeout: float) -> float | None:
    code = "from renderer.renderer import warm_up; print(warm_up())"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(sys.exc_info()[1], TimeoutError):
            return None
        raise
    try:
        return float(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


async def start_render_node(
    args: Sequence[str],
    timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
    on_line: LineHandler | None = None,
) -> tuple[Child, str]:
    """`start_service` for ``render-node``, its kernels warmed first
    (`warm_renderer`): a node compiling on its own start can outlast
    ``timeout``, and one killed mid-compile leaves the cache empty for the
    next try."""
    await warm_renderer(progress=progress)
    return await start_service("render-node", args, timeout, on_line)


async def start_service(
    command: str,
    args: Sequence[str],
    timeout: float = 60.0,
    on_line: LineHandler | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Child, str]:
    """Start ``shiftcraft COMMAND ARGS`` (server, scheduler, render-node); return it and
    its URL once it prints ``listening on ws://...``. A clear error if it exits first
    or stays silent for ``timeout`` seconds (its last lines included)."""
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def watch(which: str, line: str) -> bool | None:
        if not found.done():
            m = LISTENING_RE.search(line)
            if m:
                found.set_result(m.group(1))
        return on_line(which, line) if on_line is not None else None

    child = await Child.spawn(command, python_cmd(command, *args), watch, env=env)
    try:
        async with asyncio.timeout(timeout):
            exited = asyncio.ensure_future(child.proc.wait())
            try:
                await asyncio.wait({found, exited}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                exited.cancel()
        if not found.done():
            await child.stop()
            raise RuntimeError(
                f"{command} exited with code {child.proc.returncode} before listening:\n"
                + child.tail_text()
            )
    except TimeoutError:
        await child.stop()
        raise RuntimeError(
            f"{command} did not print 'listening on' within {timeout:g} s:\n" + child.tail_text()
        ) from None
    except BaseException:
        await asyncio.shield(child.stop(timeout=3.0))
        raise
    return child, found.result()


@dataclass
class ServerProcess:
    child: Child
    url: str  # ws://host:port

    @property
    def http_url(self) -> str:
        return "http://" + self.url.removeprefix("ws://").rstrip("/")

    @classmethod
    async def start(
        cls,
        args: Sequence[str],
        timeout: float = 60.0,
        on_line: LineHandler | None = None,
    ) -> ServerProcess:
        """Start ``shiftcraft server ARGS``; returns once it prints ``listening on ws://...``."""
        child, url = await start_service("server", args, timeout, on_line)
        return cls(child, url)

    async def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        return await fetch_json(self.http_url + "/stats", timeout)


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    # No proxies: the server is ours, usually on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


async def fetch_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    return await asyncio.to_thread(_get_json, url, timeout)


@dataclass
class BotsProcess:
    """``shiftcraft bots ... --json``: its progress lines, then its summary."""

    child: Child
    count: int
    progress: dict[str, Any] = field(default_factory=dict)  # latest progress line
    summary: dict[str, Any] | None = None

    @classmethod
    async def start(
        cls,
        url: str,
        count: int,
        *,
        behaviour: str = "walk",
        name_prefix: str = "bot",
        join_rate: float = 20.0,
        seed: int = 0,
        seconds: float = 0.0,
        progress_every: float = 1.0,
        extra: Sequence[str] = (),
        name: str = "bots",
    ) -> BotsProcess:
        holder: list[BotsProcess] = []

        def on_line(which: str, line: str) -> bool:
            if not line.startswith("{") or not holder:
                return False
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            if which == "stderr" and obj.get("event") == "progress":
                holder[0].progress = obj
                return True
            if which == "stdout":
                holder[0].summary = obj
            return False

        cmd = python_cmd(
            "bots",
            "--server",
            url,
            "--count",
            str(count),
            "--behaviour",
            behaviour,
            "--seconds",
            str(seconds),
            "--name-prefix",
            name_prefix,
            "--join-rate",
            str(join_rate),
            "--seed",
            str(seed),
            "--progress-every",
            str(progress_every),
            "--json",
            *extra,
        )
        child = await Child.spawn(name, cmd, on_line)
        bots = cls(child, count)
        holder.append(bots)
        return bots

    def get(self, key: str) -> int:
        return int(self.progress.get(key, 0))

    async def stop(self, timeout: float = 15.0) -> dict[str, Any] | None:
        """SIGINT: the bots leave cleanly and print their summary, which is returned."""
        await self.child.stop(signal.SIGINT, timeout)
        return self.summary
