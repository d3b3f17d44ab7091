"""The ``shiftcraft`` command: one entry point, a subcommand per service.

Subcommands are imported lazily so ``shiftcraft bench worldgen`` does not pay
for aiortc or pygame imports.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, help). Each module has ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "server": ("server.cli", "run the authoritative simulation server"),
    "play": ("client.cli", "play the game in a window (or --headless)"),
    "bots": ("experiments.bots.cli", "run headless bot players against a server"),
    "bench": ("shiftcraft.bench", "run a benchmark; --json prints one JSON object"),
    "token": ("server.auth", "mint a player token from a shared secret"),
    "demo": ("shiftcraft.demo", "start the whole stack on embedded defaults"),
    "render-node": ("renderer.node.cli", "render players' views and stream them over WebRTC"),
    "scheduler": ("scheduler.cli", "run the policy scheduler"),
    "experiment": ("experiments.cli", "run, report and validate experiment scenarios"),
}


def usage() -> str:
    lines = ["usage: shiftcraft <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"shiftcraft: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
