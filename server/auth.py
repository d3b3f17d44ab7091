"""Who may join: open mode, a token file, or a shared secret.

``--auth open`` accepts anyone (local play, tests). ``--auth file:PATH``
accepts the tokens listed in PATH, one per line (``#`` comments and blank
lines ignored; the file is re-read when it changes, so tokens can be added or
revoked without a restart). ``--auth secret:SECRET`` accepts a name's token
when it is ``HMAC-SHA256(SECRET, name)`` in hex — deployments mint tokens
with ``shiftcraft token --secret SECRET NAME`` and never store a list.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shiftcraft.protocol import NAME_RE


class Authenticator(Protocol):
    mode: str

    def check(self, name: str, token: str) -> bool: ...


@dataclass(slots=True)
class OpenAuth:
    mode: str = "open"

    def check(self, name: str, token: str) -> bool:
        return True


@dataclass(slots=True)
class TokenFileAuth:
    path: Path
    mode: str = "file"
    _mtime: float = -1.0
    _tokens: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self._reload()  # a missing file is an error at start-up, not at first hello

    def _reload(self) -> None:
        stat = os.stat(self.path)
        if stat.st_mtime != self._mtime:
            lines = self.path.read_text().splitlines()
            self._tokens = frozenset(
                s for s in (line.strip() for line in lines) if s and not s.startswith("#")
            )
            self._mtime = stat.st_mtime

    def check(self, name: str, token: str) -> bool:
        with contextlib.suppress(OSError):  # keep the last good list if the file is missing
            self._reload()
        return bool(token) and any(hmac.compare_digest(token, t) for t in self._tokens)


def mint_token(secret: str, name: str) -> str:
    """The token of ``name`` under ``secret``: HMAC-SHA256 hex."""
    return hmac.new(secret.encode(), name.encode(), hashlib.sha256).hexdigest()


@dataclass(slots=True)
class SecretAuth:
    secret: str
    mode: str = "secret"

    def check(self, name: str, token: str) -> bool:
        return hmac.compare_digest(token, mint_token(self.secret, name))


def parse_auth(spec: str) -> Authenticator:
    """``open`` | ``file:PATH`` | ``secret:SECRET`` -> an authenticator."""
    if spec == "open":
        return OpenAuth()
    kind, sep, arg = spec.partition(":")
    if sep and arg:
        if kind == "file":
            return TokenFileAuth(Path(arg))
        if kind == "secret":
            return SecretAuth(arg)
    raise ValueError(f"--auth {spec!r}: expected open, file:PATH or secret:SECRET")


def main(argv: list[str]) -> int:
    """``shiftcraft token --secret SECRET NAME``: print NAME's token."""
    parser = argparse.ArgumentParser(
        prog="shiftcraft token", description="mint a player token from a shared secret"
    )
    parser.add_argument("--secret", required=True, help="the server's --auth secret:SECRET")
    parser.add_argument("name", help="player name")
    args = parser.parse_args(argv)
    if not NAME_RE.match(args.name):
        parser.error(f"name {args.name!r} does not match {NAME_RE.pattern}")
    print(mint_token(args.secret, args.name))
    return 0
