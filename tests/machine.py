"""What some tests need from the machine (`tests/conftest.py` gates on it).

A test says ``@pytest.mark.requires("root")``; the conftest checks the
requirement here before the test runs.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Callable
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# name -> (is it met here?, why a test needs it and where it comes from)
REQUIREMENTS: dict[str, tuple[Callable[[], bool], str]] = {
    "root": (
        lambda: os.geteuid() == 0,
        "needs root: network namespaces, TUN devices, cgroups (CI runs as root)",
    ),
    "nobody": (
        lambda: _has_user("nobody"),
        "needs a user `nobody` to drop privileges to (every Debian system has one)",
    ),
    "chromium": (
        lambda: Path(CHROMIUM).exists(),
        "needs Debian's chromium (.ci/run: apt-get install chromium)",
    ),
}


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
