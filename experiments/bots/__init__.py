"""Headless bot players: N bots in one asyncio process over the real protocol.

* `behaviours` — what a bot does (``walk``, ``build``; add a class to add one);
* `bot` — one bot: a `client.connection.SimConnection` plus its behaviour;
* `replica` — the lazily decoded world a behaviour can read;
* `runner` — staggered joins, per-bot seeds, the run summary;
* `cli` — ``shiftcraft bots``;
* `launch` — server and bot *processes* for the tick bench, the demo and experiments.
"""
