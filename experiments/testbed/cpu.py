"""CPU limits for a process: a cgroup with a CFS bandwidth quota.

Device profiles make a client's CPU slower than the machine's by giving it a
*share*: CPUs' worth of time per period (``0.25`` = a quarter of one core,
``1.5`` = one and a half cores). The kernel enforces it with the CFS
bandwidth controller: cgroup v2 ``cpu.max`` or cgroup v1
``cpu.cfs_quota_us``/``cpu.cfs_period_us``, whichever this machine offers
(v2 preferred). `detect` finds it; if neither works `CpuLimitUnavailable`
says what was found and why it cannot be used.

The period is 10 ms, not the kernel's 100 ms default: with 100 ms a 25 %
client would run 25 ms then freeze 75 ms, a stutter no slower CPU has; a
short period spreads the same share finely.

    with CpuLimit(0.25) as limit:       # or: limit = limit_cpu(pid, 0.25)
        limit.add(client.pid)
        ...
        limit.set_share(0.5)            # changes take effect within a period

Closing moves the processes back to the cgroups they came from and removes
ours. Names carry our pid (``sc-<pid>-cpu<n>``), so `cleanup_stale` can remove
what a crashed run left without touching anyone else's.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PERIOD_US = 10_000
MIN_QUOTA_US = 1_000  # the kernel refuses less
_ids = itertools.count(1)
_STALE_RE = re.compile(r"^sc-(\d+)-cpu\d+$")


class CpuLimitUnavailable(RuntimeError):
    """Neither cgroup v2 ``cpu.max`` nor cgroup v1 CFS quota can be used here."""


@dataclass(frozen=True)
class CgroupBackend:
    version: int  # 1 or 2
    parent: Path  # where our cgroups are created
    hierarchy: str  # v1: controller list as in /proc/PID/cgroup ("cpu"); v2: ""

    def describe(self) -> str:
        return f"cgroup v{self.version} at {self.parent}"


def _mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[tuple[str, str, list[str]]]:
    """(fstype, mount point, super options) of every cgroup mount."""
    found = []
    with contextlib.suppress(OSError):
        for line in mountinfo.read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) >= 5 and len(rfields) >= 3 and rfields[0] in ("cgroup", "cgroup2"):
                found.append((rfields[0], fields[4], rfields[2].split(",")))
    return found


def _writable_dir(path: Path) -> str | None:
    """None if we can create a child cgroup under ``path``, else why not."""
    probe = path / f"sc-{os.getpid()}-probe"
    try:
        probe.mkdir()
    except OSError as exc:
        return f"cannot create a cgroup in {path}: {exc.strerror}"
    with contextlib.suppress(OSError):
        probe.rmdir()
    return None


def _try_v2(mount: Path) -> tuple[CgroupBackend | None, str]:
    controllers = (mount / "cgroup.controllers").read_text().split()
    if "cpu" not in controllers:
        return None, f"cgroup v2 at {mount} has no cpu controller (it is bound to v1)"
    subtree = (mount / "cgroup.subtree_control").read_text().split()
    if "cpu" not in subtree:
        try:
            (mount / "cgroup.subtree_control").write_text("+cpu")
        except OSError as exc:
            return None, f"cannot enable the cpu controller in {mount}: {exc.strerror}"
    if why := _writable_dir(mount):
        return None, why
    return CgroupBackend(2, mount, ""), ""


def _try_v1(mount: Path, options: list[str]) -> tuple[CgroupBackend | None, str]:
    if not (mount / "cpu.cfs_quota_us").exists():
        return None, f"cgroup v1 cpu at {mount} has no CFS bandwidth control (cpu.cfs_quota_us)"
    if why := _writable_dir(mount):
        return None, why
    hierarchy = ",".join(o for o in options if o in ("cpu", "cpuacct"))
    return CgroupBackend(1, mount, hierarchy), ""


def detect(mountinfo: Path = Path("/proc/self/mountinfo")) -> CgroupBackend:
    """The cgroup CPU controller this machine lets us use, or `CpuLimitUnavailable`."""
    reasons = []
    mounts = _mounts(mountinfo)
    for fstype, point, _ in mounts:
        if fstype == "cgroup2":
            try:
                backend, why = _try_v2(Path(point))
            except OSError as exc:
                backend, why = None, f"cgroup v2 at {point}: {exc}"
            if backend:
                return backend
            reasons.append(why)
    for fstype, point, options in mounts:
        if fstype == "cgroup" and "cpu" in options:
            try:
                backend, why = _try_v1(Path(point), options)
            except OSError as exc:
                backend, why = None, f"cgroup v1 at {point}: {exc}"
            if backend:
                return backend
            reasons.append(why)
    if not mounts:
        reasons.append("no cgroup filesystem is mounted")
    elif not reasons:
        reasons.append("no cgroup mount offers the cpu controller")
    raise CpuLimitUnavailable(
        "CPU limits need cgroup v2 with the cpu controller or cgroup v1's cpu controller, "
        "writable (root): " + "; ".join(reasons)
    )


def _cgroup_of(pid: int, backend: CgroupBackend) -> Path:
    """Where ``pid`` sits now in the backend's hierarchy (to move it back later)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            ours = controllers == "" if backend.version == 2 else "cpu" in controllers.split(",")
            if ours:
                candidate = backend.parent / path.lstrip("/")
                if candidate.is_dir():
                    return candidate
    return backend.parent


class CpuLimit:
    """One cgroup with a CPU share; processes added to it (and their future children)."""

    def __init__(
        self,
        share: float | None = None,
        *,
        backend: CgroupBackend | None = None,
        period_us: int = DEFAULT_PERIOD_US,
    ) -> None:
        self.backend = backend or detect()
        self.period_us = period_us
        self.path = self.backend.parent / f"sc-{os.getpid()}-cpu{next(_ids)}"
        self.share: float | None = None
        self._origins: dict[int, Path] = {}
        self.path.mkdir()
        try:
            self.set_share(share)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> CpuLimit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_share(self, share: float | None) -> None:
        """CPUs' worth of time (0.25 = a quarter core); None removes the limit."""
        if share is not None and (isinstance(share, bool) or not share > 0):
            raise ValueError(f"CPU share must be a positive number of CPUs, got {share!r}")
        quota = None if share is None else max(MIN_QUOTA_US, round(share * self.period_us))
        if self.backend.version == 2:
            value = f"{quota if quota is not None else 'max'} {self.period_us}"
            (self.path / "cpu.max").write_text(value)
        else:
            # Order matters: the kernel checks quota against the current period.
            (self.path / "cpu.cfs_quota_us").write_text("-1")
            (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota if quota is not None else -1))
        self.share = share

    def add(self, pid: int, children: bool = True) -> None:
        """Move ``pid`` (all its threads, and its current children) into this cgroup."""
        pids = [pid]
        if children:
            with contextlib.suppress(Exception):
                import psutil

                pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        for p in pids:
            self._origins.setdefault(p, _cgroup_of(p, self.backend))
            try:
                (self.path / "cgroup.procs").write_text(str(p))
            except ProcessLookupError:
                if p == pid:
                    raise
            except OSError as exc:
                if exc.errno != errno.ESRCH or p == pid:
                    raise

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        return []

    def stat(self) -> dict[str, int]:
        """``cpu.stat`` (throttling counters; v2 also usage_usec)."""
        out = {}
        with contextlib.suppress(OSError):
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if value.strip().isdigit():
                    out[key] = int(value)
        return out

    def close(self) -> None:
        """Move every member back where it came from and remove the cgroup (idempotent)."""
        close_cgroup(self.path, self.backend, self._origins)


def close_cgroup(path: Path, backend: CgroupBackend, origins: dict[int, Path]) -> None:
    for _ in range(50):  # bounded: members may be forking or exiting meanwhile
        if not path.exists():
            return
        try:
            members = [int(x) for x in (path / "cgroup.procs").read_text().split()]
        except OSError:
            members = []
        for pid in members:
            target = origins.get(pid, backend.parent)
            with contextlib.suppress(OSError):
                (target / "cgroup.procs").write_text(str(pid))
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    raise OSError(f"could not remove cgroup {path}: it stays busy")


def limit_cpu(pid: int, share: float | None, backend: CgroupBackend | None = None) -> CpuLimit:
    """Limit ``pid`` to ``share`` CPUs now; the caller closes (or uses ``with``)."""
    limit = CpuLimit(share, backend=backend)
    try:
        limit.add(pid)
    except BaseException:
        limit.close()
        raise
    return limit


def cleanup_stale(backend: CgroupBackend | None = None) -> list[Path]:
    """Remove ``sc-<pid>-cpu<n>`` cgroups whose owner pid is gone."""
    backend = backend or detect()
    removed = []
    for child in backend.parent.iterdir():
        m = _STALE_RE.match(child.name)
        if not m or not child.is_dir():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # owner alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, someone else's
        with contextlib.suppress(OSError):
            close_cgroup(child, backend, {})
            removed.append(child)
    return removed
