#!/usr/bin/env python3
"""Container entrypoint: apply link conditions with ``tc netem``, then exec the service.

Usage (the image's ENTRYPOINT; compose's ``command`` becomes COMMAND)::

    entrypoint.py [--dry-run | --no-links | --links-only] [--] COMMAND [ARG...]

Link conditions come from the environment (unset or empty = not applied):

    SC_LINK_IFACE       interface to shape (default eth0)
    SC_LINK_DELAY_MS    added delay, milliseconds (>= 0)
    SC_LINK_JITTER_MS   ± variation of that delay, milliseconds (<= the delay)
    SC_LINK_LOSS_PCT    random loss, percent (0-100)
    SC_LINK_RATE_MBIT   rate limit, Mbit/s (> 0)
    SC_LINK_STRICT      1: a link that cannot be shaped is fatal (default 0: log and go on)
    SC_RUN_AS           user to become before exec when started as root (the image sets it)

netem shapes *egress* only: every packet this container sends is delayed,
so the round trip to it grows by the configured delay (see docs/deploy.md).

Shaping needs CAP_NET_ADMIN, which a process only holds as root (compose:
``user: root`` and ``cap_add: [NET_ADMIN]``). After shaping the entrypoint
drops to ``SC_RUN_AS``, so the service itself never runs as root. Without the
capability it logs one line saying that no link conditions were applied and
goes on (unless SC_LINK_STRICT=1): a deployment must say what it emulates.

Modes:
  --dry-run     print the tc command lines and the command, run nothing
  --no-links    log the tc command lines without running them, then exec
                (the tests start the compose services as plain processes this way)
  --links-only  apply the link conditions and exit (re-shape a running container:
                ``docker-compose exec -u root -e SC_LINK_DELAY_MS=200 render-cloud
                python /opt/shiftcraft/deploy/entrypoint.py --links-only``)

Standard library only: it runs before anything else, in any Python >= 3.11.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

PREFIX = "shiftcraft-entrypoint"
CAP_NET_ADMIN = 12  # bit in /proc/self/status CapEff (linux/capability.h)
# Linux interface names: at most 15 bytes, no '/', whitespace or ':' trickery.
IFACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")

# Bounds: wide enough for any real link (a geostationary hop is ~300 ms each
# way), tight enough that a unit mix-up (seconds for ms, bit/s for Mbit/s)
# is caught instead of silently applied.
MAX_DELAY_MS = 60_000.0
MIN_RATE_MBIT = 0.01  # 10 kbit/s
MAX_RATE_MBIT = 100_000.0  # 100 Gbit/s


class LinkConfigError(ValueError):
    """A link variable has a value tc would reject or that makes no sense."""


@dataclass(frozen=True, slots=True)
class LinkConfig:
    iface: str = "eth0"
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rate_mbit: float | None = None  # None: no rate limit

    @property
    def empty(self) -> bool:
        return not (self.delay_ms or self.jitter_ms or self.loss_pct or self.rate_mbit)


# -- environment -> config ---------------------------------------------------------------


def _number(env: Mapping[str, str], name: str, unit: str) -> float | None:
    """The variable as a finite float, None when unset or empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        # "45ms" or "7mbit": the unit is in the variable's name, say so.
        raise LinkConfigError(
            f"{name}={raw!r}: expected a plain number of {unit} (the unit is in the name), "
            f"e.g. {name}=45"
        ) from None
    if not math.isfinite(value):
        raise LinkConfigError(f"{name}={raw!r}: expected a finite number of {unit}")
    return value


def link_config_from_env(env: Mapping[str, str]) -> LinkConfig:
    """Parse and validate the SC_LINK_* variables; raises LinkConfigError naming the variable."""
    iface = env.get("SC_LINK_IFACE", "").strip() or "eth0"
    if not IFACE_RE.fullmatch(iface):
        raise LinkConfigError(
            f"SC_LINK_IFACE={iface!r}: expected an interface name (1-15 of A-Z a-z 0-9 _ . -)"
        )
    delay = _number(env, "SC_LINK_DELAY_MS", "milliseconds") or 0.0
    jitter = _number(env, "SC_LINK_JITTER_MS", "milliseconds") or 0.0
    loss = _number(env, "SC_LINK_LOSS_PCT", "percent") or 0.0
    rate = _number(env, "SC_LINK_RATE_MBIT", "Mbit/s")

    if not 0 <= delay <= MAX_DELAY_MS:
        raise LinkConfigError(f"SC_LINK_DELAY_MS={delay:g}: must be within 0..{MAX_DELAY_MS:g}")
    if jitter < 0:
        raise LinkConfigError(f"SC_LINK_JITTER_MS={jitter:g}: must be >= 0")
    if jitter > delay:
        # netem would draw negative delays and clamp them to 0: the configured
        # distribution would silently not be the one applied.
        raise LinkConfigError(
            f"SC_LINK_JITTER_MS={jitter:g} exceeds SC_LINK_DELAY_MS={delay:g}: "
            "jitter is ± around the delay and must not exceed it"
        )
    if not 0 <= loss <= 100:
        raise LinkConfigError(f"SC_LINK_LOSS_PCT={loss:g}: must be a percentage within 0..100")
    if rate is not None and not MIN_RATE_MBIT <= rate <= MAX_RATE_MBIT:
        hint = " (leave it unset for no rate limit)" if rate == 0 else ""
        raise LinkConfigError(
            f"SC_LINK_RATE_MBIT={rate:g}: must be within {MIN_RATE_MBIT:g}..{MAX_RATE_MBIT:g} "
            f"Mbit/s{hint}"
        )
    return LinkConfig(iface=iface, delay_ms=delay, jitter_ms=jitter, loss_pct=loss, rate_mbit=rate)


# -- config -> tc command lines --------------------------------------------------------------


def _fmt(value: float) -> str:
    """A number as tc reads it: no exponent, no trailing zeros (7.21, 45, 0.5)."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def tc_commands(cfg: LinkConfig) -> list[list[str]]:
    """The tc command lines that apply ``cfg`` (none when nothing is configured).

    ``replace`` rather than ``add``: the same line works on a fresh interface
    and on one shaped before (``--links-only`` while the service runs).
    One netem qdisc carries delay, loss and rate: netem's own rate limiter
    queues packets behind each other, so no tbf child is needed.
    """
    if cfg.empty:
        return []
    netem: list[str] = []
    if cfg.delay_ms:
        netem += ["delay", f"{_fmt(cfg.delay_ms)}ms"]
        if cfg.jitter_ms:
            netem.append(f"{_fmt(cfg.jitter_ms)}ms")
    if cfg.loss_pct:
        netem += ["loss", "random", f"{_fmt(cfg.loss_pct)}%"]
    if cfg.rate_mbit:
        netem += ["rate", f"{_fmt(cfg.rate_mbit)}mbit"]
    return [["tc", "qdisc", "replace", "dev", cfg.iface, "root", "netem", *netem]]


# -- applying ------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


def has_net_admin(status_path: str = "/proc/self/status") -> bool:
    """Whether this process holds CAP_NET_ADMIN in its effective set."""
    try:
        with open(status_path, encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=10, check=False)


def apply_links(
    commands: list[list[str]],
    *,
    net_admin: bool,
    tc_path: str | None,
    run: Runner = _run,
) -> str | None:
    """Run the tc commands. Returns None when applied (or nothing to apply),
    else the reason they were not, for the caller to log or treat as fatal."""
    if not commands:
        return None
    if not net_admin:
        return (
            "no CAP_NET_ADMIN: link conditions NOT applied "
            "(start the container as root with cap_add: [NET_ADMIN])"
        )
    if tc_path is None:
        return "no tc binary: link conditions NOT applied (install iproute2 in the image)"
    for cmd in commands:
        result = run([tc_path, *cmd[1:]])
        if result.returncode != 0:
            err = (result.stderr or result.stdout or "").strip()
            hint = ""
            if "qdisc kind is unknown" in err or "Unknown qdisc" in err:
                hint = " (the host kernel lacks sch_netem: modprobe sch_netem on the Docker host)"
            return f"{shlex.join(cmd)} failed (rc={result.returncode}): {err}{hint}"
    return None


def drop_privileges(user: str) -> None:
    """Become ``user`` (and its groups); a no-op unless we are root.

    setuid from root to another user clears every capability, so the service
    never holds NET_ADMIN even in a container that was granted it."""
    import grp
    import pwd

    if os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise SystemExit(f"{PREFIX}: SC_RUN_AS={user!r}: no such user") from None
    os.setgroups([g.gr_gid for g in grp.getgrall() if user in g.gr_mem] + [pw.pw_gid])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.environ.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)


# -- main ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="entrypoint.py",
        description="apply SC_LINK_* link conditions with tc netem, then exec COMMAND",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    mode.add_argument("--no-links", action="store_true", help="do not shape; exec COMMAND")
    mode.add_argument("--links-only", action="store_true", help="shape, then exit")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the service command line")
    return p


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command and not args.links_only:
        log("no command given (compose: set `command:`; see docs/deploy.md)")
        return 2

    try:
        cfg = link_config_from_env(env)
    except LinkConfigError as exc:
        log(f"bad link configuration: {exc}")
        return 2
    commands = tc_commands(cfg)
    strict = env.get("SC_LINK_STRICT", "").strip().lower() in ("1", "true", "yes")

    if args.dry_run:
        for cmd in commands:
            print(shlex.join(cmd))
        if command:
            print("exec " + shlex.join(command))
        return 0

    if not commands:
        log("no link conditions set (SC_LINK_*): interface left as is")
    elif args.no_links:
        for cmd in commands:
            log(f"--no-links: NOT running: {shlex.join(cmd)}")
    else:
        problem = apply_links(commands, net_admin=has_net_admin(), tc_path=shutil.which("tc"))
        if problem is None:
            for cmd in commands:
                log(f"applied: {shlex.join(cmd)}")
        elif strict or args.links_only:
            log(f"error: {problem}")
            return 1
        else:
            log(f"warning: {problem}")

    if args.links_only:
        return 0
    if run_as := env.get("SC_RUN_AS", "").strip():
        drop_privileges(run_as)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        log(f"cannot exec {command[0]!r}: {exc}")
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
