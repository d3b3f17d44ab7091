"""SQLite storage of modified sections and player data (WAL mode).

Only sections that differ from the generator's output are stored; a world is
its seed plus this file. `commit` writes a batch in one transaction: the
simulation calls it once per tick (group commit) before anything that tick
produced is acknowledged, so a crash loses nothing a client has seen.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack

from world.coords import SectionKey

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sections (
    sx INTEGER NOT NULL, sy INTEGER NOT NULL, sz INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sx, sy, sz)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS players (name TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
"""


class StoreError(RuntimeError):
    """The store file is unusable (wrong seed, newer schema, not a database)."""


class SectionStore:
    """One SQLite file. Durable against process crashes (``synchronous=NORMAL``
    in WAL mode); pass ``durable=True`` for ``FULL`` (survives power loss)."""

    def __init__(self, path: str | Path, *, durable: bool = False) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            version = self.get_meta("schema_version")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable Shiftcraft store ({exc})") from None
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: schema {version} is newer than this build ({SCHEMA_VERSION})"
            )

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def bind_seed(self, seed: int) -> None:
        """Record the world's seed, or refuse a store made for another seed."""
        stored = self.get_meta("seed")
        if stored is None:
            self.set_meta("seed", str(seed))
        elif int(stored) != seed:
            raise StoreError(f"{self.path}: store belongs to seed {stored}, not {seed}")

    # -- sections -----------------------------------------------------------
    def load_section(self, key: SectionKey) -> bytes | None:
        row = self._db.execute(
            "SELECT data FROM sections WHERE sx = ? AND sy = ? AND sz = ?", key
        ).fetchone()
        return None if row is None else bytes(row[0])

    def section_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM sections").fetchone()[0]

    # -- players ------------------------------------------------------------
    def load_player(self, name: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM players WHERE name = ?", (name,)).fetchone()
        return None if row is None else msgpack.unpackb(row[0])

    # -- group commit -------------------------------------------------------
    def commit(
        self,
        sections: Mapping[SectionKey, bytes] | None = None,
        players: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """Write encoded sections and player records in one transaction."""
        if not sections and not players:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if sections:
                db.executemany(
                    "INSERT OR REPLACE INTO sections (sx, sy, sz, data) VALUES (?, ?, ?, ?)",
                    [(*key, data) for key, data in sections.items()],
                )
            if players:
                db.executemany(
                    "INSERT OR REPLACE INTO players (name, data) VALUES (?, ?)",
                    [(name, msgpack.packb(rec)) for name, rec in players.items()],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SectionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
