"""The PostgreSQL inventory store: one database shared by several registries and clients.

``store: postgresql://user@host/dbname`` (any libpq connection URL). It uses psycopg 3
(the ``orch[postgresql]`` extra), imported only when such a store is opened. Several
registries may write at once: every statement is an idempotent upsert, and the schema is
created under an advisory lock so two registries starting together do not race.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orch.core.config import Settings
from orch.core.errors import ConfigError
from orch.inventory.sqlstore import SCHEMA, SQLStore

#: Seconds to wait for the database server to accept the connection.
CONNECT_TIMEOUT = 5
#: An arbitrary key for pg_advisory_xact_lock around schema creation.
SCHEMA_LOCK = 0x6F726368


class PostgresStore(SQLStore):
    """The connection is in autocommit mode: a read is one round trip (no ``BEGIN`` and
    ``COMMIT`` around it), which is most of what discovery costs over a network; writes
    run in explicit transactions (:class:`_Transaction`)."""

    marker = "%s"
    contains_agent = "strpos(agents, ?) > 0"
    identity_order = ""

    def _create_schema(self) -> None:
        with self._transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                cursor.execute(statement)

    def _transaction(self) -> Any:
        return _Transaction(self.connection)

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(self._sql(statement), tuple(params))
            return list(cursor.fetchall())


class _Transaction:
    """A transaction on an autocommit connection, giving a cursor: committed on success,
    rolled back on error (psycopg's ``Connection.transaction``)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.transaction: Any = None
        self.cursor: Any = None

    def __enter__(self) -> Any:
        self.transaction = self.connection.transaction()
        self.transaction.__enter__()
        self.cursor = self.connection.cursor()
        return self.cursor

    def __exit__(self, *exc: Any) -> None:
        try:
            self.cursor.close()
        finally:
            self.transaction.__exit__(*exc)


def open_postgres(url: str, settings: Settings) -> PostgresStore:
    try:
        import psycopg
    except ImportError:
        raise ConfigError("the PostgreSQL inventory store needs psycopg: "
                          "pip install 'orch[postgresql]'") from None
    try:
        connection = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot connect to the inventory database: {exc}") from None
    return PostgresStore(connection)
