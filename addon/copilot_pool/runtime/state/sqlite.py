"""`pool_state=sqlite:PATH` (the default): the pool's state in one SQLite file, kept across restarts.

stdlib sqlite3 in WAL mode, on one thread of its own (the event loop never waits on the file; sqlite3
connections belong to the thread that made them). The file is created owner-only (0600). Its schema version is
`PRAGMA user_version`; an older file is migrated in place, a newer one is refused. A file that is not a database
(or fails its quick check) is moved aside and a fresh one started, which the log says; a file another process
keeps locked stops the start-up with its name.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from ...core.kept import Cooled, Counters
from .store import Batch, Loaded, StoreDown, StoreError

SCHEMA_VERSION = 2
BUSY_TIMEOUT = 2.0  # seconds a write waits for another process's lock before it counts as an outage
AFFINITY_KEPT = 7 * 86400.0  # seconds: the longest pool_affinity_ttl; older conversations are dropped

# Version 1 counted per account only; version 2 counts per owner ("account:NAME", "user:NAME": proxy users)
# and keeps auto-model session bindings.
SCHEMA = {
    1: [
        "CREATE TABLE cooldowns (owner TEXT NOT NULL, model TEXT NOT NULL, until REAL NOT NULL, reason TEXT NOT NULL,"
        " PRIMARY KEY (owner, model))",
        "CREATE TABLE facts (owner TEXT PRIMARY KEY, record TEXT NOT NULL)",
        "CREATE TABLE counters (account TEXT NOT NULL, counter TEXT NOT NULL, value INTEGER NOT NULL,"
        " PRIMARY KEY (account, counter))",
        "CREATE TABLE affinity (key TEXT PRIMARY KEY, account TEXT NOT NULL, seen REAL NOT NULL)",
    ],
    2: [
        "ALTER TABLE counters RENAME TO counters_v1",
        "CREATE TABLE counters (owner TEXT NOT NULL, counter TEXT NOT NULL, value INTEGER NOT NULL,"
        " PRIMARY KEY (owner, counter))",
        "INSERT INTO counters SELECT 'account:' || account, counter, value FROM counters_v1",
        "DROP TABLE counters_v1",
        "CREATE TABLE sessions (digest TEXT PRIMARY KEY, account TEXT NOT NULL, expires REAL NOT NULL)",
    ],
}

T = TypeVar("T")


class SqliteStore:
    backend = "sqlite"
    shared = False

    def __init__(self, path: Path, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self.where = str(path)
        self.wall = wall
        self.replaced: str | None = None  # a broken file moved aside at open: where it went, and why
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copilot-pool-sqlite")

    async def connect(self) -> None:
        if self._db is None:
            await self._run(self._open)

    async def load(self) -> Loaded:
        return await self._run(self._load)

    async def write(self, batch: Batch) -> dict[str, Counters]:
        return await self._run(lambda: self._write(batch))

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close)
        self._thread.shutdown(wait=False)

    async def _run(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, work)
        except sqlite3.Error as e:
            raise StoreDown(f"{type(e).__name__}: {e}") from None

    # -- on the store's thread ----------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._db = self._connect()
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise StoreError(
                    f"state file {self.path} is locked by another process ({e}); stop it, or give this proxy a "
                    "file of its own (pool_state=sqlite:PATH)"
                ) from None
            raise StoreError(f"state file {self.path}: {e}") from None
        except sqlite3.DatabaseError as e:  # not a database, or damaged: keep it for a person, start afresh
            aside = self.path.with_name(f"{self.path.name}.broken-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
            for suffix in ("", "-wal", "-shm"):
                if (broken := Path(f"{self.path}{suffix}")).exists():
                    os.replace(broken, f"{aside}{suffix}")
            self.replaced = f"{aside} ({e})"
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        elif self.path.stat().st_mode & 0o077:
            self.path.chmod(0o600)  # it names accounts, users and conversations: the owner's only
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            if (check := db.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")  # a write lock now: a file someone else holds locked is found at start
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.execute("ROLLBACK")
                raise StoreError(
                    f"state file {self.path} has schema version {version}, written by a newer copilot-pool (this "
                    f"one knows up to {SCHEMA_VERSION}); use that version, or another file (pool_state=sqlite:PATH)"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in SCHEMA[step]:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    def _load(self) -> Loaded:
        db = self._ready()
        now = self.wall()
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM cooldowns WHERE until <= ?", (now,))
        db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
        db.execute("DELETE FROM affinity WHERE seen <= ?", (now - AFFINITY_KEPT,))
        db.execute("COMMIT")
        loaded = Loaded()
        for owner, model, until, reason in db.execute("SELECT owner, model, until, reason FROM cooldowns"):
            loaded.cooldowns.append(Cooled(owner, model or None, until, reason))
        for owner, record in db.execute("SELECT owner, record FROM facts"):
            try:
                loaded.facts[owner] = json.loads(record)
            except ValueError:
                continue  # one damaged record costs only itself
        for owner, counter, value in db.execute("SELECT owner, counter, value FROM counters"):
            loaded.counters.setdefault(owner, {})[counter] = value
        loaded.affinity = {key: (account, seen) for key, account, seen in db.execute("SELECT * FROM affinity")}
        loaded.sessions = {key: (account, until) for key, account, until in db.execute("SELECT * FROM sessions")}
        return loaded

    def _write(self, batch: Batch) -> dict[str, Counters]:
        db = self._ready()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO cooldowns VALUES (?1, ?2, ?3, ?4) ON CONFLICT (owner, model) DO UPDATE"
                " SET until = excluded.until, reason = excluded.reason WHERE ?5 OR excluded.until > cooldowns.until",
                [(c.owner, c.model or "", c.until, c.reason, c.exact) for c in batch.cooldowns],
            )
            db.executemany(
                "INSERT OR REPLACE INTO facts VALUES (?, ?)",
                [(owner, json.dumps(facts)) for owner, facts in batch.facts.items()],
            )
            db.executemany(
                "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (owner, counter) DO UPDATE"
                " SET value = value + excluded.value",
                [(owner, k, v) for owner, growth in batch.counters.items() for k, v in growth.items()],
            )
            db.executemany(
                "INSERT INTO affinity VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
                " SET account = excluded.account, seen = excluded.seen WHERE excluded.seen >= affinity.seen",
                [(key, account, seen) for key, (account, seen) in batch.affinity.items()],
            )
            db.executemany(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)",
                [(key, account, until) for key, (account, until) in batch.sessions.items()],
            )
            totals = {
                owner: dict(db.execute("SELECT counter, value FROM counters WHERE owner = ?", (owner,)).fetchall())
                for owner in batch.counters
            }
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return totals

    def _ready(self) -> sqlite3.Connection:
        if self._db is None:
            self._open()
        assert self._db is not None
        return self._db
