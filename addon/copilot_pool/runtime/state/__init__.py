"""Where the pool's state lives (option `pool_state`): a SQLite file (the default), a Redis server several proxies
share, or this process's memory only. `keeper.py` moves the state between the pool and the store."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .memory import MemoryStore
from .redis import RedisStore, check_url
from .sqlite import SqliteStore

DEFAULT = "sqlite"  # the file under the user's data directory (default_path)


def default_path() -> Path:
    """$XDG_DATA_HOME/copilot-pool/state.sqlite3, else ~/.local/share/copilot-pool/state.sqlite3."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "copilot-pool" / "state.sqlite3"


def proxy_id() -> str:
    """This proxy among those sharing a store: its host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_shared(value: str) -> bool:
    """Whether `value` names a store several proxies share (Redis): only those share heartbeats and tokens."""
    return value.startswith(("redis://", "rediss://"))


def check(value: str) -> None:
    """Raise ValueError, saying what is wrong, unless `value` names a store."""
    if value in ("memory", "sqlite"):
        return
    if value.startswith("sqlite:"):
        if not value.removeprefix("sqlite:").strip():
            raise ValueError("sqlite: needs a path (sqlite:/path/to/state.sqlite3), or just `sqlite` for the default")
        return
    if is_shared(value):
        check_url(value)
        return
    raise ValueError(f"expected sqlite, sqlite:PATH, redis://HOST:PORT/DB, rediss://... or memory; got {value!r}")


def open_store(value: str) -> MemoryStore | RedisStore | SqliteStore:
    """The store `value` names (checked by `check`); nothing is opened yet."""
    if value == "memory":
        return MemoryStore()
    if is_shared(value):
        return RedisStore(value, proxy_id())
    path = default_path() if value == "sqlite" else Path(value.removeprefix("sqlite:")).expanduser()
    return SqliteStore(path)
