"""``shiftcraft bench stream-capacity``: see `shiftcraft.bench.stream` (same machinery)."""

from shiftcraft.bench.stream import add_capacity_arguments as add_arguments
from shiftcraft.bench.stream import run_capacity as run

__all__ = ["add_arguments", "run"]
