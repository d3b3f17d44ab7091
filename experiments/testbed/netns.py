"""Network namespaces: create, run processes inside, reach into, delete.

Thin wrappers over iproute2 (``ip netns``, ``ip -n``) so every step is one a
person can retype by hand, plus two things ``ip`` cannot do for us:

* `socket_in_netns` creates a socket *inside* a namespace from this process
  (a short-lived thread ``setns``-es in, creates it, and exits). The socket
  stays in that namespace, so the scenario runner in the root namespace can
  scrape ``/metrics`` of a node that is only reachable inside the testbed;
* `cleanup_stale` deletes namespaces a crashed run left behind. Names carry
  the owner's pid (``sc-<pid>-...``), so a namespace is stale only when that
  pid is gone, and parallel runs never touch each other's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")
PREFIX = "sc-"
_STALE_RE = re.compile(r"^sc-(\d+)-")


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message carries its stderr."""


def ip(*args: str, check: bool = True, timeout: float = 10.0) -> str:
    """Run ``ip ARGS`` (synchronously: also usable from ``finally`` and atexit)."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc.stdout


async def aip(*args: str, check: bool = True, stdin: str | None = None) -> str:
    """Run ``ip ARGS`` without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(
        "ip",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {err.decode().strip()}")
    return out.decode()


def emulation_support() -> tuple[bool, str]:
    """(True, "") when namespaces and TUN devices can be used here, else (False, why)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False, "not root: network namespaces and TUN devices need root"
    if shutil.which("ip") is None:
        return False, "iproute2 (`ip`) is not installed"
    if not os.path.exists("/dev/net/tun"):
        return False, "/dev/net/tun is missing (no TUN support)"
    return True, ""


@dataclass
class NetNS:
    """One named network namespace (``ip netns add NAME``)."""

    name: str

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.name)

    async def create(self) -> None:
        await aip("netns", "add", self.name)
        await aip("-n", self.name, "link", "set", "lo", "up")

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so it runs inside this namespace.

        ``ip netns exec`` exec()s the command, so the pid we get is the
        command's own (CPU limits and signals reach the right process).
        """
        return ["ip", "netns", "exec", self.name, *argv]

    def pids(self) -> list[int]:
        out = ip("netns", "pids", self.name, check=False)
        return [int(x) for x in out.split() if x.isdigit()]

    def kill_all(self, timeout: float = 3.0) -> None:
        """SIGKILL every process still inside (children of our children included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def delete(self) -> None:
        """Kill what is left inside and delete the namespace (idempotent)."""
        if not os.path.exists(self.path):
            return
        self.kill_all()
        ip("netns", "del", self.name, check=False)

    def exists(self) -> bool:
        return os.path.exists(self.path)


async def add_veth(a: NetNS, b: NetNS, addr_a: str, addr_b: str, ifname: str = "scv") -> None:
    """A plain veth pair between two namespaces (the kernel's own fast path).

    Not shaped: the bench uses it as the baseline the emulator is compared to.
    ``addr_*`` are CIDR strings (``10.78.0.1/30``). Both ends are created in
    the namespaces, so nothing appears in the root namespace.
    """
    await aip("-n", a.name, "link", "add", f"{ifname}0", "type", "veth", "peer", "name",
              f"{ifname}1", "netns", b.name)  # fmt: skip
    await aip("-n", a.name, "addr", "add", addr_a, "dev", f"{ifname}0")
    await aip("-n", b.name, "addr", "add", addr_b, "dev", f"{ifname}1")
    await aip("-n", a.name, "link", "set", f"{ifname}0", "up")
    await aip("-n", b.name, "link", "set", f"{ifname}1", "up")


def socket_in_netns(
    netns: NetNS, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM
) -> socket.socket:
    """A socket that lives in ``netns`` (created by a thread that setns-es there).

    Only that thread changes namespace, and it exits right after, so the rest
    of this process (the event loop included) stays where it was.
    """
    result: dict[str, object] = {}

    def worker() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns.path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result["sock"] = socket.socket(family, type)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=worker, name=f"setns-{netns.name}")
    thread.start()
    thread.join()
    if "error" in result:
        raise NetnsError(f"cannot create a socket in {netns.name}: {result['error']}")
    return result["sock"]  # type: ignore[return-value]


def list_netns(prefix: str = PREFIX) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Delete ``sc-<pid>-*`` namespaces whose owner pid no longer exists."""
    removed = []
    for name in list_netns():
        m = _STALE_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            NetNS(name).delete()
            removed.append(name)
    return removed
