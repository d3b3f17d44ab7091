"""The run manifest (``manifest.json``): what ran, where, with which software."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

PACKAGES = (
    "shiftcraft",
    "numpy",
    "numba",
    "websockets",
    "aiortc",
    "prometheus-client",
    "matplotlib",
)


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def host_facts() -> dict[str, Any]:
    """The machine the run measured: CPUs, memory, kernel, load when it started."""
    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "euid": os.geteuid() if hasattr(os, "geteuid") else None,
    }
    with contextlib.suppress(OSError):
        facts["loadavg"] = list(os.getloadavg())
    try:
        import psutil

        facts["memory_bytes"] = psutil.virtual_memory().total
    except Exception:  # psutil is a dependency, but a manifest must never fail a run
        pass
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu_model"] = line.split(":", 1)[1].strip()
                break
    facts["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return facts
