"""``shiftcraft scheduler``: run the policy scheduler (the control plane).

Prints exactly one line on stdout once the port is bound —
``listening on ws://HOST:PORT`` — so scripts and tests can start it with
``--port 0`` and read the real port. Logs go to stderr. SIGINT and SIGTERM
stop it cleanly (connections closed with 1001, decision log flushed, exit 0).

``--replay TRACE`` runs no service: it replays a telemetry trace through the
chosen policy offline and prints a JSON summary (see `scheduler.replay`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from scheduler.config import SchedulerConfig, build_config, load_config_file
from scheduler.service import SchedulerService
from shiftcraft.serve import configure_logging, serve_until_signalled


def build_parser() -> argparse.ArgumentParser:
    d = SchedulerConfig()
    p = argparse.ArgumentParser(
        prog="shiftcraft scheduler",
        description="run the policy scheduler: node registry, telemetry, decisions, migrations",
    )
    p.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=d.port, help="port; 0 = any free port")
    p.add_argument(
        "--policy",
        default=None,
        help="static-local | static:NODE | threshold | battery | score "
        f"(default: the config file's, else {d.policy})",
    )
    p.add_argument("--config", default=None, help="YAML/JSON file: engine and policy parameters")
    p.add_argument("--log", default=None, help="append the decision log (JSONL) to this file")
    p.add_argument(
        "--auth",
        default=d.auth,
        help="who may register: open | file:PATH | secret:SECRET (as the sim's --auth)",
    )
    p.add_argument("--admin-token", default="", help="GET /migrate requires &token= when set")
    p.add_argument("--replay", metavar="TRACE", default=None, help="replay a trace offline")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    return p


def config_from_args(args: argparse.Namespace) -> SchedulerConfig:
    data = load_config_file(args.config) if args.config else {}
    return build_config(
        data,
        host=args.host,
        port=args.port,
        policy=args.policy,
        log_path=args.log,
        auth=args.auth,
        admin_token=args.admin_token,
    )


async def serve(config: SchedulerConfig) -> None:
    await serve_until_signalled(SchedulerService(config), "scheduler")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, quiet=("shiftcraft.scheduler.ws",))
    try:
        config = config_from_args(args)
        if args.replay:
            from scheduler.decisions import DecisionLog
            from scheduler.replay import replay

            with DecisionLog(config.log_path) as log:
                result = replay(args.replay, config.policy_spec(), config.engine, log)
            print(json.dumps(result.summary(), indent=2))
            return 0
        asyncio.run(serve(config))
    except (ValueError, OSError) as exc:
        print(f"shiftcraft scheduler: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print("shiftcraft scheduler: interrupted", file=sys.stderr)
        return 130
    return 0
