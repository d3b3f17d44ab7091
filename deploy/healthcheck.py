#!/usr/bin/env python3
"""Container healthcheck: ``healthcheck.py URL`` exits 0 when URL answers 2xx.

The python:3.11-slim image has no curl or wget; this is their one use here.
Every Shiftcraft service serves ``/health`` on its own port (503 while it is
not ready: the sim stalled, a render node without its sim connection).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def check(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read(200).decode(errors="replace").strip()
            return 200 <= resp.status < 300, f"{resp.status} {body}"
    except urllib.error.HTTPError as exc:  # 503 and friends
        return False, f"{exc.code} {exc.read(200).decode(errors='replace').strip()}"
    except (OSError, ValueError) as exc:  # refused, timeout, bad URL
        return False, str(exc)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: healthcheck.py URL", file=sys.stderr)
        return 2
    ok, detail = check(argv[0])
    print(f"{argv[0]}: {detail}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
