"""Child-process helpers shared by everything that starts services."""

from __future__ import annotations

import contextlib
import ctypes
import signal


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux).

    Meant as ``preexec_fn`` (it runs in the child between fork and exec), so
    a killed benchmark or testbed leaves no services behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
