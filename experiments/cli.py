"""``shiftcraft experiment run|report|validate``: run scenarios, build their reports.

    shiftcraft experiment validate smoke                    # check a scenario file
    shiftcraft experiment run smoke --out results/smoke    # run it, then build the report
    shiftcraft experiment run policy-comparison --quick    # one short repeat of each variant
    shiftcraft experiment report results/smoke             # (re)build report.md + plots/

Exit status: 0 ok; 1 a run failed or the report could not be built; 2 usage
or an invalid scenario; 130 interrupted (everything started was stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

USAGE = """usage: shiftcraft experiment <run|report|validate> ...

  run FILE [--out DIR] [--repeats N] [--quick] [--loopback|--emulated]
  report DIR
  validate [FILE...]
"""


def run_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="shiftcraft experiment run",
        description="run every variant x repeat of a scenario into a results folder, then report",
    )
    p.add_argument("file", help="scenario file, or a shipped scenario's name (smoke)")
    p.add_argument("--out", type=Path, help="results folder (default results/NAME-YYYYmmdd-HHMMSS)")
    p.add_argument("--repeats", type=int, help="runs per variant (overrides the file's)")
    p.add_argument(
        "--quick", action="store_true",
        help="one repeat, <= 5 s warm-up + 20 s a run, actions scaled in time (a check, not data)",
    )  # fmt: skip
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--loopback", action="store_true", help="no network emulation, even as root")
    mode.add_argument("--emulated", action="store_true", help="fail unless emulation is available")
    p.add_argument("--start-timeout", type=float, default=180.0, help="seconds per service")
    p.add_argument(
        "--migration-timeout", type=float, metavar="S",
        help="clients abandon a switch without a frame after S seconds (default: the client's)",
    )  # fmt: skip
    p.add_argument("--no-report", action="store_true", help="do not build the report afterwards")
    p.add_argument("-q", "--quiet", action="store_true", help="only phase changes on stderr")
    args = p.parse_args(argv)

    from experiments.runner.run import RunnerOptions, quicken, run_scenario, with_repeats
    from experiments.scenarios import ScenarioError, find, load

    try:
        scenario = load(find(args.file), on_warning=lambda w: print(w, file=sys.stderr))
    except ScenarioError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"shiftcraft experiment run: {exc}", file=sys.stderr)
        return 2
    if args.repeats is not None:
        if args.repeats < 1:
            print("shiftcraft experiment run: --repeats must be >= 1", file=sys.stderr)
            return 2
        scenario = with_repeats(scenario, args.repeats)
    if args.quick:
        scenario = quicken(scenario)
    out = args.out or Path("results") / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    emulated = False if args.loopback else (True if args.emulated else None)
    opts = RunnerOptions(
        out,
        emulated,
        start_timeout=args.start_timeout,
        quiet=args.quiet,
        migration_timeout=args.migration_timeout,
    )
    print(f"shiftcraft experiment: {scenario.name}: {len(scenario.runs())} run(s) into {out}",
          file=sys.stderr)  # fmt: skip

    async def amain() -> list:
        # SIGTERM like ^C: cancel the run so the testbed stops every process it started.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_scenario(scenario, opts, quick=args.quick)

    try:
        results = asyncio.run(amain())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"\nshiftcraft experiment: interrupted; partial results in {out}", file=sys.stderr)
        return 130
    except Exception as exc:  # a service that did not start: its log tail is in the message
        print(f"shiftcraft experiment: run failed: {exc}", file=sys.stderr)
        print(f"partial results (logs) in {out}", file=sys.stderr)
        if not args.no_report:
            _partial_report(out)
        return 1
    failed = [r for r in results if not r.ok]
    for r in results:
        state = "ok" if r.ok else f"FAILED ({r.error})"
        print(f"  {r.label}: {state}, {r.rows} metric rows, {r.events} events", file=sys.stderr)
    if not args.no_report:
        from experiments.report.build import build_report

        path = build_report(out)
        print(f"report: {path}", file=sys.stderr)
    return 1 if failed else 0


def _partial_report(out: Path) -> None:
    """The report of the runs a failed experiment did finish (their data is still data)."""
    from experiments.report.build import ReportError, build_report

    try:
        print(f"report of what ran: {build_report(out)}", file=sys.stderr)
    except (ReportError, OSError, ValueError) as exc:
        print(f"no report: {exc}", file=sys.stderr)


def report_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="shiftcraft experiment report",
        description="(re)build report.md and plots/ of a results folder from its files alone",
    )
    p.add_argument("dir", type=Path, help="a results folder written by `experiment run`")
    args = p.parse_args(argv)
    from experiments.report.build import ReportError, build_report

    try:
        path = build_report(args.dir)
    except ReportError as exc:
        print(f"shiftcraft experiment report: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.rstrip())
        return 0
    sub, rest = argv[0], argv[1:]
    if sub == "run":
        return run_main(rest)
    if sub == "report":
        return report_main(rest)
    if sub == "validate":
        from experiments.scenarios.cli import validate_main

        return validate_main(rest)
    print(f"shiftcraft experiment: unknown subcommand {sub!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
