"""``shiftcraft server``: run the authoritative simulation server.

Prints exactly one line on stdout once the port is bound —
``listening on ws://HOST:PORT`` — so scripts and tests can start it with
``--port 0`` and read the real port. Logs go to stderr. SIGINT and SIGTERM
stop it cleanly: connections are closed (1001), a final group commit is
made, the store is closed, and the exit status is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from server.config import GENERATORS, ServerConfig
from server.service import SimServer
from shiftcraft.serve import configure_logging, serve_until_signalled
from world.store import StoreError


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig()
    p = argparse.ArgumentParser(
        prog="shiftcraft server", description="run the authoritative simulation server"
    )
    p.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="port; 0 = any free port")
    p.add_argument("--db", default=d.db, help="SQLite world file (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="world seed (default: the db's, or 1)")
    p.add_argument("--generator", choices=GENERATORS, default=d.generator, help="terrain")
    p.add_argument(
        "--view-distance", type=int, default=d.view_distance, help="blocks (default %(default)s)"
    )
    p.add_argument(
        "--auth",
        default=d.auth,
        help="open | file:PATH (tokens, one per line) | secret:SECRET (HMAC tokens)",
    )
    p.add_argument("--tps", type=int, default=d.tps, help="ticks per second")
    p.add_argument(
        "--durable", action="store_true", help="fsync every commit (survives power loss)"
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        db=args.db,
        seed=args.seed,
        generator=args.generator,
        view_distance=args.view_distance,
        max_view_distance=max(ServerConfig().max_view_distance, args.view_distance),
        auth=args.auth,
        tps=args.tps,
        durable=args.durable,
    )


async def serve(config: ServerConfig) -> None:
    await serve_until_signalled(SimServer(config), "sim server")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, quiet=("shiftcraft.server.ws",))
    try:
        config = config_from_args(args)
        config.validate()
        asyncio.run(serve(config))
    except (ValueError, OSError, StoreError) as exc:
        print(f"shiftcraft server: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second ^C while shutting down
        with contextlib.suppress(Exception):
            print("shiftcraft server: interrupted", file=sys.stderr)
        return 130
    return 0
