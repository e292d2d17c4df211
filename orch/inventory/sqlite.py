"""The SQLite inventory store: the embedded default, one file, nothing to run.

``store: sqlite:///var/lib/orch/inventory.db`` (three slashes and an absolute path, or two
and a path relative to the working directory). The file is opened in WAL mode so the
registry can write while clients read; a writer waiting on a lock gives up after
:data:`BUSY_TIMEOUT` seconds rather than hang.
"""

from __future__ import annotations

import os
import sqlite3

from orch.core.config import Settings
from orch.core.errors import ConfigError
from orch.inventory.sqlstore import SQLStore

#: Seconds a statement waits for another connection's lock before failing.
BUSY_TIMEOUT = 5.0


def sqlite_path(url: str) -> str:
    """The file a ``sqlite://`` URL names (ConfigError when it names none)."""
    path = url.split("://", 1)[1] if "://" in url else ""
    if not path:
        raise ConfigError(f"inventory store {url!r} names no file; "
                          "write sqlite:///absolute/path.db")
    return path


class SQLiteStore(SQLStore):
    marker = "?"

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create {directory} for the inventory: {exc}") \
                    from None
        try:
            # One store is used by one thread at a time, but not always the one that opened it
            # (the registry opens it, its writer thread uses it).
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the inventory {path}: {exc}") from None
        super().__init__(connection)


def open_sqlite(url: str, settings: Settings) -> SQLiteStore:
    return SQLiteStore(sqlite_path(url))
