"""Headless bot players: N bots in one asyncio process over the real protocol.

* `behaviours` — what a bot does: the base classes, ``idle``, ``walk``,
  ``walk-modify`` (alias ``build``); `explore`, `follow`, `tnt` and `replay`
  each in their own module (one class per behaviour; imported below so
  every name is registered whatever module a caller imports first);
* `bot` — one bot: a `client.connection.SimConnection` plus its behaviour;
* `replica` — the lazily decoded world a behaviour can read;
* `trace` — input traces: the recorder (bots and the game client) and reader;
* `view` — what a bot renders: nothing, or its own view (``--render local``);
* `runner` — staggered joins, per-bot seeds, the run summary;
* `cli` — ``shiftcraft bots``;
* `launch` — server and bot *processes* for the tick bench, the demo and experiments.
"""

from experiments.bots import explore, follow, replay, tnt  # noqa: F401  (register behaviours)
