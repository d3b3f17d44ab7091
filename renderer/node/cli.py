"""``shiftcraft render-node``: render and stream players' views over WebRTC.

Prints exactly one line on stdout once it listens and the sim has welcomed
it — ``listening on ws://HOST:PORT`` — so scripts and tests can start it
with ``--port 0``. Logs go to stderr. SIGINT/SIGTERM end every session
(``bye node_shutdown``) and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from client.connection import ConnectError
from renderer.node.service import NodeConfig, RenderNode
from shiftcraft.serve import configure_logging, serve_until_signalled


def build_parser() -> argparse.ArgumentParser:
    d = NodeConfig(sim_url="ws://127.0.0.1:8765")
    p = argparse.ArgumentParser(
        prog="shiftcraft render-node",
        description="render players' views from one world replica and stream them over WebRTC",
    )
    p.add_argument("--sim", required=True, help="the sim's websocket URL, e.g. ws://127.0.0.1:8765")
    p.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=d.port, help="port; 0 = any free port")
    p.add_argument("--token", default="", help="token for the sim (role render-node)")
    p.add_argument("--name", default=None, help="name at the sim (default: node-<random>)")
    p.add_argument("--session-token", default="", help="token clients must put in their offer")
    p.add_argument("--max-sessions", type=int, default=d.max_sessions)
    p.add_argument("--view-distance", type=int, default=d.max_view_distance,
                   help="largest view distance a session may ask for, blocks")  # fmt: skip
    p.add_argument("--max-bitrate", type=int, default=d.max_bitrate, help="bits/s per session")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="frames rendered at once, for all sessions (0: one per core)")  # fmt: skip
    p.add_argument("--render-threads", type=int, default=None,
                   help="numba threads a frame (default: all cores for one session, "
                        "an equal share once several stream)")  # fmt: skip
    p.add_argument("--no-prefetch-spawn", action="store_true",
                   help="do not keep the spawn area loaded while no one is served")  # fmt: skip
    p.add_argument("--no-proxy", action="store_true",
                   help="refuse to play on the sim for clients (browser sessions)")  # fmt: skip
    g = p.add_argument_group("scheduler (issue 5, docs/scheduler.md)")
    g.add_argument(
        "--scheduler", default=os.environ.get("SC_SCHEDULER_URL", ""), metavar="ws://HOST:PORT",
        help="register with `shiftcraft scheduler` and push load once a second "
        "(env SC_SCHEDULER_URL; default: none)",
    )  # fmt: skip
    g.add_argument(
        "--scheduler-token", default=os.environ.get("SC_SCHEDULER_TOKEN", ""),
        help="token for the scheduler (env SC_SCHEDULER_TOKEN)",
    )  # fmt: skip
    g.add_argument(
        "--location", default=os.environ.get("SC_NODE_LOCATION", "edge"),
        choices=("edge", "cloud"), help="where this node runs (env SC_NODE_LOCATION; default edge)",
    )  # fmt: skip
    g.add_argument(
        "--capacity", type=int, default=None,
        help="sessions offered to the scheduler (default: --max-sessions)",
    )  # fmt: skip
    g.add_argument(
        "--public-url", default=os.environ.get("SC_NODE_PUBLIC_URL", ""), metavar="ws://HOST:PORT",
        help="the URL clients open, as the scheduler hands it out (env SC_NODE_PUBLIC_URL; "
        "default: the bound address; 0.0.0.0 becomes this host's name)",
    )  # fmt: skip
    g.add_argument(
        "--cost", type=float, default=None,
        help="cost of one session for the score policy (default: the location's)",
    )  # fmt: skip
    p.add_argument("--log-level", default="INFO")
    return p


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    cfg = NodeConfig(
        sim_url=args.sim,
        host=args.host,
        port=args.port,
        token=args.token,
        session_token=args.session_token,
        max_sessions=args.max_sessions,
        max_view_distance=args.view_distance,
        max_bitrate=args.max_bitrate,
        workers=args.workers,
        render_threads=args.render_threads,
        prefetch_spawn=not args.no_prefetch_spawn,
        allow_proxy=not args.no_proxy,
        scheduler_url=args.scheduler,
        scheduler_token=args.scheduler_token,
        location=args.location,
        capacity=args.capacity,
        public_url=args.public_url,
        cost=args.cost,
    )
    if args.name:
        cfg.name = args.name
    return cfg


async def serve(config: NodeConfig) -> None:
    import renderer

    # Compile or load the kernel before accepting anyone: a first frame must not wait 30 s.
    await asyncio.to_thread(renderer.warm_up)
    await serve_until_signalled(RenderNode(config), "render node")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, quiet=("aioice", "aiortc", "websockets"))
    try:
        config = config_from_args(args)
        config.validate()
        asyncio.run(serve(config))
    except (ValueError, OSError, ConnectError, TimeoutError) as exc:
        print(f"shiftcraft render-node: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print("shiftcraft render-node: interrupted", file=sys.stderr)
        return 130
    return 0
