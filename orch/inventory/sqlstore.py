"""The SQL every built-in inventory store speaks: schema, upserts and queries over DB-API.

SQLite and PostgreSQL accept the same statements here (``ON CONFLICT … DO UPDATE`` and
``DO NOTHING``, text columns holding JSON); a dialect only says how to connect and which
parameter marker its driver wants. JSON is kept as text so both read back identically and a
store file can be inspected with any SQL shell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orch.core.inventory import JobRecord, NodeRecord, ReplyRecord

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS orch_nodes (
        collective TEXT NOT NULL, identity TEXT NOT NULL, facts TEXT NOT NULL,
        classes TEXT NOT NULL, agents TEXT NOT NULL, version TEXT NOT NULL,
        started DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
        stale INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (collective, identity))""",
    # Every fact path, class and agent of every node, one row each: lets discovery evaluate
    # a filter term once per distinct value instead of once per node (orch.inventory.select).
    """CREATE TABLE IF NOT EXISTS orch_node_values (
        collective TEXT NOT NULL, identity TEXT NOT NULL, kind TEXT NOT NULL,
        name TEXT NOT NULL, value TEXT NOT NULL)""",
    # Covering indexes: discovery reads identities from them without touching the rows.
    """CREATE INDEX IF NOT EXISTS orch_node_values_lookup
        ON orch_node_values (collective, kind, name, value, identity)""",
    """CREATE INDEX IF NOT EXISTS orch_nodes_live
        ON orch_nodes (collective, stale, identity, agents)""",
    # Every value ever seen per fact path / for classes / agents (never shrinks: a value
    # no node holds any more costs one evaluation and selects nobody).
    """CREATE TABLE IF NOT EXISTS orch_distinct_values (
        collective TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (collective, kind, name, value))""",
    """CREATE INDEX IF NOT EXISTS orch_node_values_node
        ON orch_node_values (collective, identity)""",
    """CREATE TABLE IF NOT EXISTS orch_jobs (
        request_id TEXT PRIMARY KEY, caller TEXT NOT NULL, collective TEXT NOT NULL,
        agent TEXT NOT NULL, action TEXT NOT NULL, data TEXT NOT NULL, filter TEXT NOT NULL,
        expected TEXT, sent DOUBLE PRECISION NOT NULL, finished DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS orch_jobs_sent ON orch_jobs (sent)",
    """CREATE TABLE IF NOT EXISTS orch_replies (
        request_id TEXT NOT NULL, sender TEXT NOT NULL, statuscode INTEGER NOT NULL,
        statusmsg TEXT NOT NULL, data TEXT NOT NULL, received DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (request_id, sender))""",
)

_NODE_COLUMNS = "identity, collective, facts, classes, agents, version, started, last_seen, stale"
_JOB_COLUMNS = ("request_id, caller, collective, agent, action, data, filter, expected, sent, "
                "finished")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def indexed_values(record: NodeRecord) -> list[tuple[str, str, str]]:
    """``(kind, name, value)`` rows for ``record``: each fact path as filters resolve it
    (JSON value), each class and each agent."""
    rows = [("fact", path, _dumps(value)) for path, value in fact_paths(record.facts).items()]
    rows += [("class", "", name) for name in record.classes]
    rows += [("agent", "", name) for name in record.agents]
    return rows


def fact_paths(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Every dotted path into nested objects of ``facts``, with the value
    :meth:`orch.core.filter.NodeView.fact` returns for it (a flat key with dots wins)."""
    from orch.core.filter import NodeView

    candidates: list[str] = []

    def walk(mapping: Mapping[str, Any], prefix: str) -> None:
        for key, value in mapping.items():
            path = f"{prefix}{key}"
            candidates.append(path)
            if isinstance(value, Mapping):
                walk(value, f"{path}.")

    walk(facts, "")
    view = NodeView("", facts)
    return {path: view.fact(path) for path in dict.fromkeys(candidates)}


class SQLStore:
    """An :class:`~orch.core.inventory.InventoryStore` over one DB-API connection.

    Subclasses open the connection and set :attr:`marker`; statements are written with
    ``?`` and translated once.
    """

    #: The driver's parameter marker (``?`` for sqlite3, ``%s`` for psycopg).
    marker = "?"
    #: SQL true when text ``agents`` contains the parameter (an exact substring test).
    contains_agent = "instr(agents, ?) > 0"
    #: How :meth:`identities` orders its answer when the order is free: SQLite's binary
    #: collation is Python's order of strings and its index already holds it, so callers
    #: sorting the list find it sorted (PostgreSQL's collation is not, so it does not).
    identity_order = " ORDER BY identity"

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        if not self._has_schema():
            self._create_schema()

    def _create_schema(self) -> None:
        with self._transaction() as cursor:
            for statement in SCHEMA:
                cursor.execute(statement)

    def _has_schema(self) -> bool:
        """Whether the tables exist: one read, so a command opening the store for discovery
        never takes the write lock that creating them needs (and pays one round trip)."""
        try:
            self._query("SELECT 1 FROM orch_replies, orch_node_values WHERE 1 = 0")
        except Exception:  # the driver's "no such table" (the transaction is rolled back)
            return False
        return True

    # -- plumbing ----------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement if self.marker == "?" else statement.replace("?", self.marker)

    def _transaction(self) -> Any:
        """A context manager committing on success, rolling back on error, giving a cursor."""
        return _Transaction(self.connection)

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._transaction() as cursor:
            cursor.execute(self._sql(statement), tuple(params))
            return list(cursor.fetchall())

    def close(self) -> None:
        self.connection.close()

    # -- nodes -------------------------------------------------------------------------

    def upsert_nodes(self, records: Sequence[NodeRecord]) -> None:
        statement = self._sql(
            f"INSERT INTO orch_nodes ({_NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0) "
            "ON CONFLICT (collective, identity) DO UPDATE SET facts = excluded.facts, "
            "classes = excluded.classes, agents = excluded.agents, "
            "version = excluded.version, started = excluded.started, "
            "last_seen = excluded.last_seen, stale = 0")
        rows = [(r.identity, r.collective, _dumps(dict(r.facts)), _dumps(list(r.classes)),
                 _dumps(list(r.agents)), r.version, r.started, r.last_seen) for r in records]
        changed = self._changed(records, rows)
        values = [(r.collective, r.identity, kind, name, value)
                  for r in changed for kind, name, value in indexed_values(r)]
        with self._transaction() as cursor:
            cursor.executemany(statement, rows)
            cursor.executemany(self._sql("DELETE FROM orch_node_values WHERE collective = ? "
                                         "AND identity = ?"),
                               [(r.collective, r.identity) for r in changed])
            cursor.executemany(self._sql(
                "INSERT INTO orch_node_values (collective, identity, kind, name, value) "
                "VALUES (?, ?, ?, ?, ?)"), values)
            cursor.executemany(self._sql(
                "INSERT INTO orch_distinct_values (collective, kind, name, value) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                sorted({(c, kind, name, value) for c, _, kind, name, value in values}))

    def _changed(self, records: Sequence[NodeRecord],
                 rows: Sequence[tuple[Any, ...]]) -> list[NodeRecord]:
        """The records whose facts, classes or agents differ from what is stored: a node
        re-registering unchanged (the common case) only moves its last-seen time."""
        stored: dict[tuple[str, str], tuple[str, str, str]] = {}
        by_collective: dict[str, list[str]] = {}
        for record in records:
            by_collective.setdefault(record.collective, []).append(record.identity)
        for collective, names in by_collective.items():
            for start in range(0, len(names), 500):
                chunk = names[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                for identity, facts, classes, agents in self._query(
                        "SELECT identity, facts, classes, agents FROM orch_nodes WHERE "
                        f"collective = ? AND identity IN ({marks})", (collective, *chunk)):
                    stored[(collective, identity)] = (facts, classes, agents)
        return [record for record, row in zip(records, rows, strict=True)
                if stored.get((record.collective, record.identity)) != row[2:5]]

    # -- indexed lookups (see orch.inventory.select) -----------------------------------

    def identities(self, collective: str, agent: str | None = None) -> list[str]:
        """The identities of the collective's non-stale nodes (hosting ``agent``).

        Only identities cross from the database: the agent test runs in SQL, on the
        covering index, as an exact substring test (``agents`` is a JSON list of names, so
        ``"name"`` with its quotes occurs in it exactly when the name is one of them)."""
        if agent is None:
            rows = self._query("SELECT identity FROM orch_nodes WHERE collective = ? "
                               f"AND stale = 0{self.identity_order}", (collective,))
        else:
            rows = self._query("SELECT identity FROM orch_nodes WHERE collective = ? "
                               f"AND stale = 0 AND {self.contains_agent}{self.identity_order}",
                               (collective, _dumps(agent)))
        return [row[0] for row in rows]

    def last_seen(self, collective: str, identities: Sequence[str]) -> dict[str, float]:
        """When each of ``identities`` last registered (those the store knows)."""
        seen: dict[str, float] = {}
        for start in range(0, len(identities), 500):
            chunk = list(identities[start:start + 500])
            marks = ", ".join("?" * len(chunk))
            seen.update((identity, float(when)) for identity, when in self._query(
                "SELECT identity, last_seen FROM orch_nodes WHERE collective = ? "
                f"AND identity IN ({marks})", (collective, *chunk)))
        return seen

    def fresh(self, collective: str, since: float) -> bool:
        return bool(self._query("SELECT 1 FROM orch_nodes WHERE collective = ? AND "
                                "last_seen >= ? LIMIT 1", (collective, since)))

    def distinct_values(self, collective: str, kind: str, name: str) -> list[str]:
        """The distinct values (JSON text for facts) of ``kind``/``name`` in the collective."""
        return [row[0] for row in self._query(
            "SELECT value FROM orch_distinct_values WHERE collective = ? AND kind = ? "
            "AND name = ?", (collective, kind, name))]

    def holders(self, collective: str, kind: str, name: str,
                values: Sequence[str]) -> set[str]:
        """The identities having one of ``values`` for ``kind``/``name``."""
        found: set[str] = set()
        for start in range(0, len(values), 500):
            chunk = list(values[start:start + 500])
            marks = ", ".join("?" * len(chunk))
            found.update(row[0] for row in self._query(
                "SELECT identity FROM orch_node_values WHERE collective = ? AND kind = ? "
                f"AND name = ? AND value IN ({marks})", (collective, kind, name, *chunk)))
        return found

    def nodes(self, collective: str | None = None, *,
              include_stale: bool = True) -> list[NodeRecord]:
        where, params = [], []
        if collective is not None:
            where.append("collective = ?")
            params.append(collective)
        if not include_stale:
            where.append("stale = 0")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(f"SELECT {_NODE_COLUMNS} FROM orch_nodes{clause} "
                           "ORDER BY identity, collective", params)
        return [NodeRecord(identity, coll, json.loads(facts), tuple(json.loads(classes)),
                           tuple(json.loads(agents)), version, float(started),
                           float(last_seen), bool(stale))
                for identity, coll, facts, classes, agents, version, started, last_seen, stale
                in rows]

    def mark_stale(self, older_than: float) -> int:
        with self._transaction() as cursor:
            cursor.execute(self._sql("UPDATE orch_nodes SET stale = 1 "
                                     "WHERE last_seen < ? AND stale = 0"), (older_than,))
            return int(cursor.rowcount)

    def expire(self, older_than: float) -> int:
        with self._transaction() as cursor:
            cursor.execute(self._sql(
                "DELETE FROM orch_node_values WHERE EXISTS (SELECT 1 FROM orch_nodes n "
                "WHERE n.collective = orch_node_values.collective AND n.identity = "
                "orch_node_values.identity AND n.last_seen < ?)"), (older_than,))
            cursor.execute(self._sql("DELETE FROM orch_nodes WHERE last_seen < ?"),
                           (older_than,))
            return int(cursor.rowcount)

    # -- jobs --------------------------------------------------------------------------

    def record_job(self, job: JobRecord) -> None:
        expected = None if job.expected is None else _dumps(list(job.expected))
        with self._transaction() as cursor:
            cursor.execute(self._sql(
                f"INSERT INTO orch_jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (request_id) DO NOTHING"),
                (job.request_id, job.caller, job.collective, job.agent, job.action,
                 _dumps(dict(job.data)), _dumps(dict(job.filter)), expected, job.sent,
                 job.finished))
        if job.replies:
            self.record_replies(job.request_id, job.replies)

    def record_replies(self, request_id: str, replies: Iterable[ReplyRecord]) -> None:
        rows = [(request_id, r.sender, r.statuscode, r.statusmsg, _dumps(dict(r.data)),
                 r.received) for r in replies]
        if not rows:
            return
        with self._transaction() as cursor:
            cursor.executemany(self._sql(
                "INSERT INTO orch_replies (request_id, sender, statuscode, statusmsg, data, "
                "received) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (request_id, sender) DO NOTHING"), rows)

    def finish_job(self, request_id: str, finished: float) -> None:
        with self._transaction() as cursor:
            cursor.execute(self._sql("UPDATE orch_jobs SET finished = ? WHERE request_id = ?"),
                           (finished, request_id))

    def jobs(self, limit: int = 50, before: tuple[float, str] | None = None
             ) -> list[JobRecord]:
        if before is None:
            rows = self._query(f"SELECT {_JOB_COLUMNS} FROM orch_jobs "
                               "ORDER BY sent DESC, request_id DESC LIMIT ?", (limit,))
        else:
            sent, request_id = before
            rows = self._query(f"SELECT {_JOB_COLUMNS} FROM orch_jobs "
                               "WHERE sent < ? OR (sent = ? AND request_id < ?) "
                               "ORDER BY sent DESC, request_id DESC LIMIT ?",
                               (sent, sent, request_id, limit))
        return self._with_replies(rows)

    def job(self, request_id: str) -> JobRecord | None:
        prefix = request_id.replace("\\", "").replace("%", "").replace("_", "")
        rows = self._query(f"SELECT {_JOB_COLUMNS} FROM orch_jobs WHERE request_id = ? "
                           "OR request_id LIKE ? ORDER BY sent DESC LIMIT 2",
                           (request_id, prefix + "%"))
        exact = [row for row in rows if row[0] == request_id]
        if exact:
            rows = exact
        if len(rows) != 1 or not prefix:
            return None
        return self._with_replies(rows)[0]

    def expire_jobs(self, older_than: float) -> int:
        with self._transaction() as cursor:
            cursor.execute(self._sql("DELETE FROM orch_replies WHERE request_id IN "
                                     "(SELECT request_id FROM orch_jobs WHERE sent < ?)"),
                           (older_than,))
            cursor.execute(self._sql("DELETE FROM orch_jobs WHERE sent < ?"), (older_than,))
            return int(cursor.rowcount)

    def _with_replies(self, rows: list[tuple[Any, ...]]) -> list[JobRecord]:
        jobs = []
        for (request_id, caller, collective, agent, action, data, filter_, expected, sent,
             finished) in rows:
            replies = tuple(
                ReplyRecord(sender, int(code), msg, json.loads(rdata), float(received))
                for sender, code, msg, rdata, received in self._query(
                    "SELECT sender, statuscode, statusmsg, data, received FROM orch_replies "
                    "WHERE request_id = ? ORDER BY sender", (request_id,)))
            jobs.append(JobRecord(
                request_id, caller, collective, agent, action, json.loads(data),
                json.loads(filter_),
                None if expected is None else tuple(json.loads(expected)), float(sent),
                None if finished is None else float(finished), replies))
        return jobs


class _Transaction:
    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.cursor: Any = None

    def __enter__(self) -> Any:
        self.cursor = self.connection.cursor()
        return self.cursor

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self.connection.commit()
            else:
                self.connection.rollback()
        finally:
            self.cursor.close()
