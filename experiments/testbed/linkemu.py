"""The user-space link emulator: IP packets between namespaces through TUN devices.

This kernel has no netem, so delay, jitter and loss are applied here, in one
dedicated process (its own GIL, its own CPU accounting). Design:

* every host namespace gets one TUN device, ``sc0``, carrying the host's
  address and the route to the whole testbed subnet. The emulator opens the
  TUN *from inside* that namespace (``setns``) and keeps the file
  descriptor, so one process holds one fd per host;
* a packet read from host A's fd is looked up by destination IPv4 address,
  passed through the *pipe* for (A's location -> B's location) and written
  to B's fd, where B's kernel receives it as if it came off a wire. TCP, UDP
  and ICMP cross alike: the emulator never looks past the IP header;
* a pipe applies, in order: loss (Bernoulli or Gilbert-Elliott), rate
  (serialisation time behind earlier packets, bounded drop-tail queue),
  delay and jitter (FIFO unless ``reorder``). Each packet's delivery time is
  computed once, on arrival, so changing a pipe affects only packets that
  arrive afterwards;
* one thread, ``select`` (microsecond timeouts; epoll's are milliseconds),
  a heap of pending deliveries. Packets due now skip the heap, so an ideal
  link adds only the read+write of one process wake-up.

Control: JSON lines on stdin, one JSON reply line on stdout per request
(``attach``, ``detach``, ``set``, ``stats``, ``quit``). EOF on stdin means
the owner is gone: the emulator exits and its TUN devices vanish with it.
`EmulatorProcess` is the asyncio client the `Testbed` uses.

Run by hand (root): ``python -m experiments.testbed.linkemu --seed 1`` and
type e.g. ``{"op": "stats"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import heapq
import itertools
import json
import os
import random
import select
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from typing import Any

from experiments.testbed.links import IDEAL, LinkConditions

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PR_SET_TIMERSLACK = 29
PR_SET_PDEATHSIG = 1
TUN_NAME = "sc0"
READ_BATCH = 64  # packets read from one fd before looking at the others
# Timer wake-ups come late (~0.1 ms here, more under load). We sleep `lead`
# less than asked and deliver what is due within `lead`, where `lead` tracks
# the observed lateness, so delays are right on average instead of always long.
INITIAL_LEAD_S = 50e-6
MAX_LEAD_S = 1e-3
REPO_ROOT = Path(__file__).resolve().parents[2]


class Pipe:
    """One direction between two locations: loss, rate queue, delay line.

    Pure (time is passed in), so its statistics are tested without packets.
    """

    __slots__ = (
        "_bad",
        "_bad_to_good",
        "_busy_until",
        "_delay_s",
        "_departures",
        "_good_to_bad",
        "_jitter_s",
        "_last_due",
        "_rate_bps",
        "bytes_delivered",
        "bytes_in",
        "conditions",
        "delivered",
        "dst",
        "lost",
        "packets_in",
        "queue_drops",
        "rng",
        "src",
        "write_drops",
    )

    def __init__(self, src: str, dst: str, conditions: LinkConditions, rng: random.Random) -> None:
        self.src, self.dst, self.rng = src, dst, rng
        self._busy_until = 0.0  # when the rate limiter finishes the last queued packet
        self._departures: deque[float] = deque()  # serialisation end of queued packets
        self._last_due = 0.0  # FIFO: nobody is delivered before the packet ahead
        self._bad = False  # Gilbert-Elliott state
        self.packets_in = self.bytes_in = self.delivered = self.bytes_delivered = 0
        self.lost = self.queue_drops = self.write_drops = 0
        self.configure(conditions)

    def configure(self, conditions: LinkConditions) -> None:
        self.conditions = c = conditions
        self._delay_s = c.delay_ms / 1000.0
        self._jitter_s = c.jitter_ms / 1000.0
        self._rate_bps = c.rate_mbit * 1e6 if c.rate_mbit is not None else 0.0
        if not self._rate_bps:
            self._departures.clear()
        if c.loss_burst > 1 and 0 < c.loss < 1:
            self._bad_to_good = 1.0 / c.loss_burst
            self._good_to_bad = min(1.0, c.loss / (1 - c.loss) * self._bad_to_good)
        else:
            self._bad_to_good = self._good_to_bad = 0.0
            self._bad = False

    def _drop_by_loss(self) -> bool:
        loss = self.conditions.loss
        if loss <= 0:
            return False
        if loss >= 1:
            return True
        if not self._bad_to_good:  # independent loss
            return self.rng.random() < loss
        # Gilbert-Elliott: the current state decides this packet, then we move.
        lost = self._bad
        if self._bad:
            self._bad = self.rng.random() >= self._bad_to_good
        else:
            self._bad = self.rng.random() < self._good_to_bad
        return lost

    def admit(self, size: int, now: float) -> float | None:
        """A packet of ``size`` bytes arrives at ``now``: its delivery time, or None if dropped."""
        self.packets_in += 1
        self.bytes_in += size
        if self._drop_by_loss():
            self.lost += 1
            return None
        due = now
        if self._rate_bps:
            queue = self._departures
            while queue and queue[0] <= now:
                queue.popleft()
            if len(queue) >= self.conditions.queue_packets:
                self.queue_drops += 1
                return None
            start = self._busy_until if self._busy_until > now else now
            due = self._busy_until = start + size * 8 / self._rate_bps
            queue.append(due)
        if self._delay_s or self._jitter_s:
            delay = self._delay_s
            if self._jitter_s:
                delay += self.rng.uniform(-self._jitter_s, self._jitter_s)
                delay = max(delay, 0.0)
            due += delay
        if due < self._last_due and not self.conditions.reorder:
            due = self._last_due
        self._last_due = due
        return due

    @property
    def queued(self) -> int:
        return len(self._departures)

    def stats(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "dst": self.dst,
            "conditions": self.conditions.to_dict(),
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "delivered": self.delivered,
            "bytes_delivered": self.bytes_delivered,
            "lost": self.lost,
            "queue_drops": self.queue_drops,
            "write_drops": self.write_drops,
        }


@dataclass
class Port:
    """One host's TUN fd, as the emulator sees it."""

    name: str
    location: str
    address: str
    fd: int  # -1 once detached: pending packets for it are dropped


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def open_tun_in_netns(netns_path: str, ifname: str = TUN_NAME) -> int:
    """Open a TUN device created inside the namespace at ``netns_path``.

    The device lives in the namespace of the thread that creates it; the fd
    works from anywhere. We step in, create it, turn off IPv6 there (ICE
    would otherwise gather link-local candidates the emulator drops) and step
    back out.
    """
    libc = _libc()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns_path}): {os.strerror(err)}")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.ioctl(
                    fd, TUNSETIFF, struct.pack("16sH22x", ifname.encode(), IFF_TUN | IFF_NO_PI)
                )
            except OSError:
                os.close(fd)
                raise
            for knob in ("all", "default"):
                with (
                    contextlib.suppress(OSError),
                    open(f"/proc/sys/net/ipv6/conf/{knob}/disable_ipv6", "w") as f,
                ):
                    f.write("1")
            return fd
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:  # pragma: no cover - cannot happen as root
                os._exit(70)  # never keep running in the wrong namespace
    finally:
        os.close(target)
        os.close(home)


class Emulator:
    """The packet loop. One instance per process; `run` returns on quit or EOF."""

    def __init__(self, seed: int = 0, control_in: int = 0, control_out: int = 1) -> None:
        self.seed = seed
        self.control_in, self.control_out = control_in, control_out
        self.ports: dict[str, Port] = {}
        self.by_fd: dict[int, Port] = {}
        self.by_addr: dict[bytes, Port] = {}
        self.pipes: dict[tuple[str, str], Pipe] = {}
        self.heap: list[tuple[float, int, Port, bytes, Pipe]] = []
        self._seq = itertools.count()
        self._control_buf = b""
        self.dropped_no_route = 0
        self.dropped_not_ipv4 = 0
        self.running = True
        self.lead = INITIAL_LEAD_S

    # -- control ---------------------------------------------------------

    def pipe(self, src: str, dst: str) -> Pipe:
        pipe = self.pipes.get((src, dst))
        if pipe is None:
            rng = random.Random(f"{self.seed}:{src}:{dst}")  # reproducible per direction
            pipe = self.pipes[(src, dst)] = Pipe(src, dst, IDEAL, rng)
        return pipe

    def attach(self, name: str, netns: str, address: str, location: str) -> dict[str, Any]:
        if name in self.ports:
            raise ValueError(f"host {name!r} is already attached")
        packed = socket.inet_aton(address)
        if packed in self.by_addr:
            raise ValueError(f"address {address} is already attached")
        fd = open_tun_in_netns(netns)
        port = Port(name, location, address, fd)
        self.ports[name] = port
        self.by_fd[fd] = port
        self.by_addr[packed] = port
        return {"ifname": TUN_NAME}

    def detach(self, name: str) -> dict[str, Any]:
        port = self.ports.pop(name)
        del self.by_fd[port.fd]
        del self.by_addr[socket.inet_aton(port.address)]
        os.close(port.fd)
        port.fd = -1
        return {}

    def stats(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "cpu_seconds": time.process_time(),  # ns resolution, unlike os.times()
            "hosts": {
                p.name: {"location": p.location, "address": p.address} for p in self.ports.values()
            },
            "pipes": [p.stats() for p in self.pipes.values()],
            "pending": len(self.heap),
            "timer_lead_ms": self.lead * 1000,
            "dropped_no_route": self.dropped_no_route,
            "dropped_not_ipv4": self.dropped_not_ipv4,
        }

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "attach":
            return self.attach(
                request["name"], request["netns"], request["address"], request["location"]
            )
        if op == "detach":
            return self.detach(request["name"])
        if op == "set":
            conditions = LinkConditions.from_dict(request["conditions"])
            self.pipe(request["src"], request["dst"]).configure(conditions)
            return {}
        if op == "stats":
            return self.stats()
        if op == "ping":
            return {}
        if op == "quit":
            self.running = False
            return {}
        raise ValueError(f"unknown op {op!r}")

    def _on_control(self) -> None:
        data = os.read(self.control_in, 65536)
        if not data:  # owner gone
            self.running = False
            return
        self._control_buf += data
        while b"\n" in self._control_buf:
            line, self._control_buf = self._control_buf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                reply = {"ok": True, **self.handle(json.loads(line))}
            except Exception as exc:  # a bad request must not stop the packets
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            os.write(self.control_out, json.dumps(reply).encode() + b"\n")

    # -- packets ---------------------------------------------------------

    def _forward(self, fd: int) -> None:
        src = self.by_fd.get(fd)
        if src is None:
            return
        by_addr, pipes, heap = self.by_addr, self.pipes, self.heap
        src_loc = src.location
        for _ in range(READ_BATCH):
            try:
                pkt = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                self.dropped_not_ipv4 += 1
                continue
            dst = by_addr.get(pkt[16:20])
            if dst is None:
                self.dropped_no_route += 1
                continue
            pipe = pipes.get((src_loc, dst.location)) or self.pipe(src_loc, dst.location)
            now = monotonic()
            due = pipe.admit(len(pkt), now)
            if due is None:
                continue
            if due <= now:
                self._write(dst, pkt, pipe)
            else:
                heapq.heappush(heap, (due, next(self._seq), dst, pkt, pipe))

    @staticmethod
    def _write(dst: Port, pkt: bytes, pipe: Pipe) -> None:
        try:
            os.write(dst.fd, pkt)
        except OSError:  # detached (fd -1), or the kernel refused it: the wire ate it
            pipe.write_drops += 1
            return
        pipe.delivered += 1
        pipe.bytes_delivered += len(pkt)

    def _deliver_due(self) -> None:
        heap = self.heap
        horizon = monotonic() + self.lead
        while heap and heap[0][0] <= horizon:
            _, _, dst, pkt, pipe = heapq.heappop(heap)
            self._write(dst, pkt, pipe)

    def run(self) -> None:
        heap = self.heap
        while self.running:
            timeout = None
            if heap:
                # Wake `lead` early: the kernel wakes us late by about that much.
                timeout = max(0.0, heap[0][0] - monotonic() - self.lead)
            fds = [self.control_in, *self.by_fd]
            asleep = monotonic()
            readable, _, _ = select.select(fds, [], [], timeout)
            if not readable and timeout:
                # A pure timer wake-up: learn how late it was (EWMA, bounded).
                late = monotonic() - asleep - timeout
                self.lead += 0.1 * (min(max(late, 0.0), MAX_LEAD_S) - self.lead)
            for fd in readable:
                if fd == self.control_in:
                    self._on_control()
                else:
                    self._forward(fd)
            if heap:
                self._deliver_due()
        for port in list(self.ports.values()):
            with contextlib.suppress(OSError):
                os.close(port.fd)


def _set_priority(spec: str) -> None:
    """The network must not slow down when the hosts' CPUs are busy: run ahead of them.

    The emulator is event driven and cheap per packet, so a higher priority
    costs others little; without it a loaded machine adds milliseconds of
    wake-up delay to every hop. Failure (not permitted) is reported, not fatal.
    """
    kind, _, value = spec.partition(":")
    try:
        if kind == "nice":
            os.setpriority(os.PRIO_PROCESS, 0, int(value))
        elif kind == "rr":
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(int(value or 1)))
        elif kind != "none":
            raise ValueError(f"unknown priority {spec!r}")
    except OSError as exc:
        print(f"linkemu: cannot set priority {spec}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linkemu", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed for loss and jitter")
    parser.add_argument(
        "--priority",
        default="nice:-10",
        help="scheduling: 'nice:N', 'rr:N' (SCHED_RR, real-time) or 'none'",
    )
    args = parser.parse_args(argv)
    _set_priority(args.priority)
    libc = _libc()
    # Tight timer slack: the default 50 us would show up as added latency.
    libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, 15, 0, 0, 0)
    emulator = Emulator(seed=args.seed)
    os.write(1, json.dumps({"ok": True, "ready": True, "pid": os.getpid()}).encode() + b"\n")
    with contextlib.suppress(KeyboardInterrupt):
        emulator.run()
    return 0


# -- the asyncio client --------------------------------------------------


class EmulatorError(RuntimeError):
    """The emulator process refused a request or died."""


class EmulatorProcess:
    """Start the emulator process and talk to it (one request at a time)."""

    def __init__(
        self, seed: int = 0, python: str = sys.executable, priority: str = "nice:-10"
    ) -> None:
        self.seed = seed
        self.python = python
        self.priority = priority
        self.proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self.proc = await asyncio.create_subprocess_exec(
            self.python,
            "-c",  # not -m: the package __init__ already imports this module
            "import sys; from experiments.testbed.linkemu import main; sys.exit(main())",
            "--seed",
            str(self.seed),
            "--priority",
            self.priority,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        hello = await self._read_reply(timeout)
        if not hello.get("ready"):
            raise EmulatorError(f"link emulator did not start: {hello}")

    async def _read_reply(self, timeout: float) -> dict[str, Any]:
        assert self.proc and self.proc.stdout
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise EmulatorError(f"link emulator did not answer within {timeout:g} s") from None
        if not line:
            code = await self.proc.wait()
            raise EmulatorError(f"link emulator exited (status {code})")
        return json.loads(line)

    async def request(self, op: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        if self.proc is None or self.proc.returncode is not None:
            raise EmulatorError("link emulator is not running")
        assert self.proc.stdin
        async with self._lock:
            self.proc.stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            await self.proc.stdin.drain()
            reply = await self._read_reply(timeout)
        if not reply.pop("ok", False):
            raise EmulatorError(f"link emulator refused {op}: {reply.get('error')}")
        return reply

    async def attach(self, name: str, netns_path: str, address: str, location: str) -> str:
        reply = await self.request(
            "attach", name=name, netns=netns_path, address=address, location=location
        )
        return reply["ifname"]

    async def set(self, src: str, dst: str, conditions: LinkConditions) -> None:
        await self.request("set", src=src, dst=dst, conditions=conditions.to_dict())

    async def stats(self) -> dict[str, Any]:
        return await self.request("stats")

    async def close(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.request("quit", timeout=timeout)
        if proc.stdin:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


if __name__ == "__main__":
    sys.exit(main())
