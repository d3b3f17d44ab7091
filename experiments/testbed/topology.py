"""The testbed topology: hosts in namespaces, links between locations.

    async with Testbed() as tb:                      # emulated if root, else loopback
        sim = await tb.add_host("sim", "cloud")
        phone = await tb.add_host("phone", "home")
        await tb.set_link("home", "cloud", LinkConditions(delay_ms=20, rate_mbit=10))
        server = await sim.spawn(["shiftcraft", "server", "--host", "0.0.0.0"])
        client = await phone.spawn(["shiftcraft", "play", "--headless",
                                    "--server", f"ws://{sim.address}:8765"])
        ...
        await tb.set_link("home", "cloud", LinkConditions(delay_ms=80))  # mid-run

Emulated mode (root): each host is a network namespace ``sc-<pid>-<tb>-h<i>``
whose only route to the others is a TUN device driven by the link-emulator
process (see `linkemu`). Links are per *location pair and direction*: all
traffic from locations A to B shares one pipe (one rate limiter, one delay
line). Hosts in the same location talk through an ideal pipe unless
``set_link(loc, loc, ...)`` says otherwise. A node that needs its own access
link gets its own location.

Loopback mode (not root, or ``emulated=False``): every host is 127.0.0.1,
processes run directly, ``set_link`` is recorded but changes nothing, and
`Testbed.note` says so loudly for the report. Services must then use
distinct ports, since all hosts share one address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.testbed import cpu
from experiments.testbed.forward import Forwarder
from experiments.testbed.linkemu import EmulatorProcess
from experiments.testbed.links import IDEAL, LinkConditions
from experiments.testbed.netns import (
    NetNS,
    aip,
    cleanup_stale,
    emulation_support,
    socket_in_netns,
)
from shiftcraft.process import die_with_parent

LOOPBACK = "127.0.0.1"
_testbed_ids = itertools.count(1)


class TestbedError(RuntimeError):
    """The topology cannot be built as asked (bad name, emulation unavailable...)."""

    __test__ = False  # not a pytest test class despite the name


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signal the process's group if it leads one (spawn's default), else just it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


@dataclass
class Host:
    """One node of the testbed: a namespace (or loopback) and the processes in it."""

    name: str
    location: str
    address: str
    netns: NetNS | None  # None in loopback mode
    testbed: Testbed = field(repr=False)
    processes: list[asyncio.subprocess.Process] = field(default_factory=list, repr=False)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as it must be run to execute inside this host (for other launchers)."""
        return self.netns.exec_argv(argv) if self.netns else list(argv)

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment, plus ``env``, plus where the process runs."""
        merged = dict(os.environ)
        merged.update(
            {
                "SHIFTCRAFT_TESTBED_HOST": self.name,
                "SHIFTCRAFT_TESTBED_ADDRESS": self.address,
                "SHIFTCRAFT_TESTBED_LOCATION": self.location,
                "SHIFTCRAFT_TESTBED_EMULATED": "1" if self.netns else "0",
            }
        )
        merged.update(env or {})
        return merged

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` inside this host; the testbed stops it on close.

        ``env`` is added to this process's environment. Other keyword arguments
        go to `asyncio.create_subprocess_exec` (``stdout=``, ``cwd=``...). The
        child gets its own session (we stop its whole process group) and dies
        with its parent, so even a killed runner leaves no orphans.
        """
        if self.testbed.closed:
            raise TestbedError("the testbed is closed")
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("preexec_fn", die_with_parent)
        proc = await asyncio.create_subprocess_exec(
            *self.command(argv), env=self.environment(env), **kwargs
        )
        self.processes.append(proc)
        return proc

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket of this host (inside its namespace), made from this process."""
        if self.netns is None:
            return socket.socket(family, type)
        return socket_in_netns(self.netns, family, type)

    async def open_connection(
        self, address: str, port: int, timeout: float = 10.0
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection from this host to ``address:port`` (crosses the emulator)."""
        sock = self.socket()
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (address, port)), timeout
            )
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def forward(self, port: int) -> tuple[str, int]:
        """(host, port) on which the root namespace reaches this host's TCP ``port``.

        For the runner's own use (scraping ``/metrics``): the relay does not
        cross the link emulator. In loopback mode it is simply the port.
        """
        if self.netns is None:
            return LOOPBACK, port
        local = await asyncio.to_thread(self.testbed.forwarder.add, self.netns, self.address, port)
        return LOOPBACK, local


@dataclass
class LinkEvent:
    """A link change, for the events file: when, which direction, what, applied or not."""

    time: float  # time.time()
    src: str
    dst: str
    conditions: LinkConditions
    applied: bool


class Testbed:
    """Hosts, links and the link emulator, as an async context manager.

    ``emulated``: True requires emulation (clear error if unavailable), False
    forces loopback, None (default) picks emulation when this machine offers
    it. ``emulated`` is the mode in use and ``note`` the line a report prints.
    ``seed`` makes loss and jitter reproducible; ``emulator_priority`` is the
    emulator's scheduling ('nice:-10' default, 'rr:1' real-time, 'none').
    """

    __test__ = False

    def __init__(
        self,
        emulated: bool | None = None,
        *,
        subnet: str = "10.77.0.0/16",
        seed: int = 0,
        python: str = sys.executable,
        emulator_priority: str = "nice:-10",
    ) -> None:
        supported, why = emulation_support()
        if emulated and not supported:
            raise TestbedError(f"network emulation requested but unavailable: {why}")
        self.emulated: bool = supported if emulated is None else emulated
        if self.emulated:
            self.note = "network emulation: namespaces + user-space link emulator (TUN)"
        else:
            reason = why if emulated is None else "loopback mode requested"
            self.note = f"NO NETWORK EMULATION: all hosts on loopback ({reason})"
        self.subnet = ipaddress.IPv4Network(subnet)
        self.seed = seed
        self.id = f"sc-{os.getpid()}-{next(_testbed_ids)}"
        self.hosts: dict[str, Host] = {}
        self.links: dict[tuple[str, str], LinkConditions] = {}
        self.events: list[LinkEvent] = []
        self.emulator: EmulatorProcess | None = (
            EmulatorProcess(seed=seed, python=python, priority=emulator_priority)
            if self.emulated
            else None
        )
        self.forwarder = Forwarder()
        self.cpu_limits: list[cpu.CpuLimit] = []
        self._addresses = (str(a) for a in itertools.islice(self.subnet.hosts(), 1, None))
        self.started = False
        self.closed = False

    # -- lifecycle -------------------------------------------------------

    async def __aenter__(self) -> Testbed:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        if self.emulator is not None:
            try:
                await asyncio.to_thread(cleanup_stale)  # namespaces of crashed runs
                with contextlib.suppress(cpu.CpuLimitUnavailable, OSError):
                    await asyncio.to_thread(cpu.cleanup_stale)  # and their cgroups
                await self.emulator.start()
            except BaseException:
                await self.close()
                raise

    async def close(self, grace: float = 3.0) -> None:
        """Stop every process, the emulator and the relays; delete every namespace.

        Each step runs even if an earlier one failed; the first error is raised
        at the end.
        """
        if self.closed:
            return
        self.closed = True
        errors: list[BaseException] = []
        with contextlib.suppress(Exception):
            self.forwarder.close()
        try:
            await self._stop_processes(grace)
        except BaseException as exc:
            errors.append(exc)
        for limit in self.cpu_limits:
            try:
                limit.close()
            except BaseException as exc:
                errors.append(exc)
        if self.emulator is not None:
            try:
                await self.emulator.close()
            except BaseException as exc:
                errors.append(exc)
        for host in self.hosts.values():
            if host.netns is not None:
                try:
                    host.netns.delete()  # synchronous: must finish even when cancelled
                except BaseException as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]

    async def _stop_processes(self, grace: float) -> None:
        procs = [p for h in self.hosts.values() for p in h.processes if p.returncode is None]
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        if procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), grace)
        for proc in procs:
            if proc.returncode is None:
                _signal_group(proc, signal.SIGKILL)
                await proc.wait()

    # -- topology --------------------------------------------------------

    async def add_host(self, name: str, location: str) -> Host:
        """A new host at ``location``; in emulated mode, its namespace and TUN are ready."""
        if not self.started:
            await self.start()
        if self.closed:
            raise TestbedError("the testbed is closed")
        if not name or not location:
            raise TestbedError("a host needs a name and a location")
        if name in self.hosts:
            raise TestbedError(f"host {name!r} already exists")
        if not self.emulated:
            host = Host(name, location, LOOPBACK, None, self)
            self.hosts[name] = host
            return host
        try:
            address = next(self._addresses)
        except StopIteration:
            raise TestbedError(f"subnet {self.subnet} has no address left") from None
        netns = NetNS(f"{self.id}-h{len(self.hosts)}")
        host = Host(name, location, address, netns, self)
        self.hosts[name] = host  # registered first, so close() deletes a half-built one
        await netns.create()
        assert self.emulator is not None
        ifname = await self.emulator.attach(name, netns.path, address, location)
        batch = f"addr add {address}/{self.subnet.prefixlen} dev {ifname}\nlink set {ifname} up\n"
        await aip("-n", netns.name, "-batch", "-", stdin=batch)
        return host

    @property
    def locations(self) -> list[str]:
        return sorted({h.location for h in self.hosts.values()})

    def link(self, src: str, dst: str) -> LinkConditions:
        """The conditions currently set from location ``src`` to ``dst``."""
        return self.links.get((src, dst), IDEAL)

    async def set_link(
        self,
        a: str,
        b: str,
        conditions: LinkConditions,
        reverse: LinkConditions | None = None,
    ) -> None:
        """Set the link between locations ``a`` and ``b``; takes effect for the next packet.

        ``conditions`` apply from a to b and, unless ``reverse`` is given, also
        from b to a (so ``delay_ms=20`` gives a 40 ms RTT). Locations need no
        hosts yet. In loopback mode the change is recorded, not applied.
        """
        await self.set_link_oneway(a, b, conditions)
        if a != b or reverse is not None:
            await self.set_link_oneway(b, a, reverse if reverse is not None else conditions)

    async def set_link_oneway(self, src: str, dst: str, conditions: LinkConditions) -> None:
        if not isinstance(conditions, LinkConditions):
            raise TypeError("conditions must be a LinkConditions")
        if self.closed:
            raise TestbedError("the testbed is closed")
        if not self.started:
            await self.start()
        if self.emulator is not None:
            await self.emulator.set(src, dst, conditions)
        self.links[(src, dst)] = conditions
        self.events.append(LinkEvent(time.time(), src, dst, conditions, self.emulated))

    def limit_cpu(self, pid: int, share: float | None) -> cpu.CpuLimit:
        """Limit a process (and its future children) to ``share`` CPUs; removed on close.

        Change it later with ``limit.set_share(x)``. Works in both modes (it is
        a cgroup, not a namespace); raises `cpu.CpuLimitUnavailable`, with the
        reason, where this machine offers no usable cgroup CPU controller.
        """
        limit = cpu.limit_cpu(pid, share)
        self.cpu_limits.append(limit)
        return limit

    async def stats(self) -> dict[str, Any]:
        """Emulator counters per pipe (packets, drops) and its CPU time; {} on loopback."""
        if self.emulator is None:
            return {}
        return await self.emulator.stats()

    def describe(self) -> dict[str, Any]:
        """What the report needs: mode, note, hosts, links."""
        return {
            "emulated": self.emulated,
            "note": self.note,
            "hosts": {
                h.name: {"location": h.location, "address": h.address} for h in self.hosts.values()
            },
            "links": [
                {"src": s, "dst": d, **c.to_dict()} for (s, d), c in sorted(self.links.items())
            ],
        }
