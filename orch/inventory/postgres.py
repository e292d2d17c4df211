"""The PostgreSQL inventory store: one database shared by several registries and clients.

``store: postgresql://user@host/dbname`` (any libpq connection URL). It uses psycopg 3
(the ``orch[postgresql]`` extra), imported only when such a store is opened. Several
registries may write at once: every statement is an idempotent upsert, and the schema is
created under an advisory lock so two registries starting together do not race.
"""

from __future__ import annotations

from typing import Any

from orch.core.config import Settings
from orch.core.errors import ConfigError
from orch.inventory.sqlstore import SQLStore

#: Seconds to wait for the database server to accept the connection.
CONNECT_TIMEOUT = 5
#: An arbitrary key for pg_advisory_xact_lock around schema creation.
SCHEMA_LOCK = 0x6F726368


class PostgresStore(SQLStore):
    marker = "%s"

    def __init__(self, connection: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            super().__init__(connection)  # commits, releasing the lock


def open_postgres(url: str, settings: Settings) -> PostgresStore:
    try:
        import psycopg
    except ImportError:
        raise ConfigError("the PostgreSQL inventory store needs psycopg: "
                          "pip install 'orch[postgresql]'") from None
    try:
        connection = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot connect to the inventory database: {exc}") from None
    return PostgresStore(connection)
