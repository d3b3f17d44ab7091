"""A bot's lazy view of the world: sections kept compressed until read.

The implementation is shared with the game client and lives in
`client.replica` (`LazyReplica`); this module keeps the bots' import path.
"""

from __future__ import annotations

from client.replica import LazyReplica

__all__ = ["LazyReplica"]
