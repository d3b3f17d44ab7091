"""The renderer: (world view, camera) -> RGB frame, shared by client and render nodes.

Importing the package points numba's on-disk cache at a per-user folder
(``$XDG_CACHE_HOME/shiftcraft/numba``, unless ``NUMBA_CACHE_DIR`` is set)
before numba is imported, so the compiled kernel survives restarts even when
the package itself is installed read-only.
"""

from __future__ import annotations

import os
from pathlib import Path


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "shiftcraft" / "numba")


os.environ.setdefault("NUMBA_CACHE_DIR", _default_cache_dir())

from renderer.camera import Camera  # noqa: E402
from renderer.renderer import (  # noqa: E402
    Avatar,
    Renderer,
    RenderSettings,
    kernel_threadsafe,
    warm_up,
)
from renderer.view import WorldView  # noqa: E402

__all__ = [
    "Avatar",
    "Camera",
    "RenderSettings",
    "Renderer",
    "WorldView",
    "kernel_threadsafe",
    "warm_up",
]
