"""Small UDP/TCP measuring tools that run as processes inside testbed hosts.

The tests and the ``link-emulator`` bench measure links the way any node
would see them: a real process in each namespace, real sockets. Each tool is
bounded in time and count, prints ``ready`` once its socket is bound (servers)
and one JSON line with its result on stdout before exiting.

    python -m experiments.testbed.probe udp-echo --port 9000 --duration 10
    python -m experiments.testbed.probe udp-ping --target 10.77.0.3 --port 9000 --count 50
    python -m experiments.testbed.probe udp-sink --port 9001 --duration 5
    python -m experiments.testbed.probe udp-blast --target 10.77.0.3 --port 9001 --rate-mbit 12
    python -m experiments.testbed.probe tcp-sink --port 9002 --duration 5
    python -m experiments.testbed.probe tcp-send --target 10.77.0.3 --port 9002 --duration 3
    python -m experiments.testbed.probe tcp-echo --port 9003 --duration 10

`start_server` and `run_client` run them on a `Host` from asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experiments.testbed.topology import Host

REPO_ROOT = Path(__file__).resolve().parents[2]
UDP_IP_OVERHEAD = 28  # IPv4 (20) + UDP (8) header bytes per datagram
HEADER = struct.Struct("!Id")  # sequence number, sender's perf_counter


def _ready() -> None:
    print("ready", flush=True)


def _result(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


def udp_echo(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    _ready()
    deadline = time.monotonic() + args.duration
    echoed = 0
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], min(left, 0.5))[0]:
            continue
        data, peer = sock.recvfrom(65536)
        sock.sendto(data, peer)
        echoed += 1
    _result({"echoed": echoed})


def udp_ping(args: argparse.Namespace) -> None:
    """Stop-and-wait pings, round-robin over the targets; RTT per ping (None = lost)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    targets = [(t, args.port) for t in args.target]
    rtts: dict[str, list[float | None]] = {t: [] for t in args.target}
    sent_at: dict[str, list[float]] = {t: [] for t in args.target}
    pad = b"\0" * max(0, args.size - HEADER.size)
    start = time.perf_counter()
    seq = 0
    for i in range(args.count):
        for target in targets:
            seq += 1
            t0 = time.perf_counter()
            sock.sendto(HEADER.pack(seq, t0) + pad, target)
            rtt = None
            deadline = t0 + args.timeout
            while (left := deadline - time.perf_counter()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data = sock.recv(65536)
                got_seq, _ = HEADER.unpack_from(data)
                if got_seq == seq:
                    rtt = (time.perf_counter() - t0) * 1000
                    break
            rtts[target[0]].append(rtt)
            sent_at[target[0]].append(t0 - start)
        next_round = start + (i + 1) * args.interval
        time.sleep(max(0.0, next_round - time.perf_counter()))
    _result({"rtt_ms": rtts, "sent_at_s": sent_at})


def udp_sink(args: argparse.Namespace) -> None:
    """Count datagrams; keep sequence numbers (loss bursts) and arrival times."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("0.0.0.0", args.port))
    _ready()
    deadline = time.monotonic() + args.duration
    seqs: list[int] = []
    arrivals: list[float] = []
    wire_bytes = 0
    idle_after_first = args.idle_exit
    last = None
    while (left := deadline - time.monotonic()) > 0:
        wait = min(left, 0.2)
        if not select.select([sock], [], [], wait)[0]:
            if last is not None and time.monotonic() - last > idle_after_first:
                break  # the sender is done
            continue
        data = sock.recv(65536)
        last = time.monotonic()
        if len(data) >= HEADER.size:
            seqs.append(HEADER.unpack_from(data)[0])
        arrivals.append(time.perf_counter())
        wire_bytes += len(data) + UDP_IP_OVERHEAD
    result: dict[str, Any] = {"received": len(seqs), "wire_bytes": wire_bytes, "seqs": seqs}
    if len(arrivals) >= 2:
        span = arrivals[-1] - arrivals[0]
        first_size = wire_bytes / len(arrivals)  # all datagrams have the same size here
        result["span_s"] = span
        result["wire_mbps"] = (wire_bytes - first_size) * 8 / span / 1e6 if span > 0 else None
    _result(result)


def udp_blast(args: argparse.Namespace) -> None:
    """Paced datagrams of ``--size`` payload bytes at ``--rate-mbit`` (IP level)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    target = (args.target, args.port)
    size = max(args.size, HEADER.size)
    pad = b"\0" * (size - HEADER.size)
    gap = (size + UDP_IP_OVERHEAD) * 8 / (args.rate_mbit * 1e6)
    count = args.count if args.count else int(args.duration / gap)
    start = time.perf_counter()
    sent = 0
    hard_deadline = start + args.duration + 5.0
    for seq in range(count):
        due = start + seq * gap
        now = time.perf_counter()
        if now > hard_deadline:
            break
        if due > now + 0.0005:  # sleep only when well ahead; otherwise send (catch up)
            time.sleep(due - now)
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            sock.sendto(HEADER.pack(seq, time.perf_counter()) + pad, target)
            sent += 1
    elapsed = time.perf_counter() - start
    _result({"sent": sent, "elapsed_s": elapsed, "payload_bytes": size})


def tcp_sink(args: argparse.Namespace) -> None:
    """Accept one connection; bytes received per 100 ms bin until EOF or the deadline."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", args.port))
    server.listen(1)
    _ready()
    deadline = time.monotonic() + args.duration
    if not select.select([server], [], [], args.duration)[0]:
        _result({"bytes": 0, "bins": []})
        return
    conn, _ = server.accept()
    bins: list[int] = []
    total = 0
    start = None
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([conn], [], [], min(left, 0.2))[0]:
            continue
        data = conn.recv(1 << 20)
        if not data:
            break
        now = time.perf_counter()
        if start is None:
            start = now
        index = int((now - start) / 0.1)
        bins.extend([0] * (index + 1 - len(bins)))
        bins[index] += len(data)
        total += len(data)
    conn.close()
    _result({"bytes": total, "bin_s": 0.1, "bins": bins})


def tcp_send(args: argparse.Namespace) -> None:
    sock = socket.create_connection((args.target, args.port), timeout=10)
    chunk = b"\0" * 65536
    sent = 0
    deadline = time.monotonic() + args.duration
    sock.settimeout(1.0)
    with contextlib.suppress(OSError):
        while time.monotonic() < deadline:
            sent += sock.send(chunk)
    sock.close()
    _result({"sent": sent})


def tcp_echo(args: argparse.Namespace) -> None:
    """Echo every connection's bytes back (one connection at a time)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", args.port))
    server.listen(4)
    _ready()
    deadline = time.monotonic() + args.duration
    echoed = 0
    conns: list[socket.socket] = []
    while (left := deadline - time.monotonic()) > 0:
        readable = select.select([server, *conns], [], [], min(left, 0.5))[0]
        for s in readable:
            if s is server:
                conns.append(server.accept()[0])
                continue
            data = s.recv(65536)
            if not data:
                conns.remove(s)
                s.close()
                continue
            s.sendall(data)
            echoed += len(data)
    _result({"echoed_bytes": echoed})


TOOLS = {
    "udp-echo": udp_echo,
    "udp-ping": udp_ping,
    "udp-sink": udp_sink,
    "udp-blast": udp_blast,
    "tcp-sink": tcp_sink,
    "tcp-send": tcp_send,
    "tcp-echo": tcp_echo,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probe")
    parser.add_argument("tool", choices=sorted(TOOLS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", action="append", default=[])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds, upper bound")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.01, help="ping interval, seconds")
    parser.add_argument("--timeout", type=float, default=1.0, help="ping timeout, seconds")
    parser.add_argument("--size", type=int, default=64, help="datagram payload bytes")
    parser.add_argument("--rate-mbit", type=float, default=10.0)
    parser.add_argument("--idle-exit", type=float, default=1.0, help="sink: stop when idle")
    args = parser.parse_args(argv)
    if args.tool in ("udp-ping", "udp-blast", "tcp-send") and not args.target:
        parser.error(f"{args.tool} needs --target")
    if args.tool == "udp-ping" and not args.count:
        args.count = 20
    if args.tool in ("udp-blast", "tcp-send"):
        args.target = args.target[0]
    TOOLS[args.tool](args)
    return 0


# -- running them on hosts -------------------------------------------------


def probe_argv(tool: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.testbed.probe", tool, *args]


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)}


async def start_server(
    host: Host, tool: str, *args: str, timeout: float = 20.0
) -> asyncio.subprocess.Process:
    """Start a server tool on ``host``; returns once it printed ``ready``."""
    proc = await host.spawn(probe_argv(tool, *args), env=_env(), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if line.strip() != b"ready":
        raise RuntimeError(f"probe {tool} on {host.name} did not start: {line!r}")
    return proc


async def result_of(proc: asyncio.subprocess.Process, timeout: float = 30.0) -> dict[str, Any]:
    """Wait for a tool to finish and return its JSON result."""
    assert proc.stdout is not None
    out = await asyncio.wait_for(proc.stdout.read(), timeout)
    await asyncio.wait_for(proc.wait(), timeout)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"probe exited with status {proc.returncode} and no result")
    return json.loads(lines[-1])


async def run_client(host: Host, tool: str, *args: str, timeout: float = 30.0) -> dict[str, Any]:
    """Run a client tool on ``host`` to completion; its JSON result."""
    proc = await host.spawn(probe_argv(tool, *args), env=_env(), stdout=asyncio.subprocess.PIPE)
    return await result_of(proc, timeout)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        raise ValueError("median of nothing")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of nothing")
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def loss_bursts(seqs: Sequence[int], sent: int) -> list[int]:
    """Lengths of runs of missing sequence numbers in 0..sent-1."""
    got = set(seqs)
    bursts, run = [], 0
    for seq in range(sent):
        if seq in got:
            if run:
                bursts.append(run)
            run = 0
        else:
            run += 1
    if run:
        bursts.append(run)
    return bursts


if __name__ == "__main__":
    sys.exit(main())
