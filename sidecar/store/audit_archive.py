"""The audit archive in PostgreSQL: events moved out of the Redis streams, one table partitioned by month.

Layout (created on first use; partitions on demand, under an advisory lock)::

    sidecar_audit_events          PARTITIONED BY RANGE (pos_ms), one partition per calendar month (UTC)
        log, pos_ms, pos_seq      the event's log and its position there: the Redis stream id
                                  ``<pos_ms>-<pos_seq>`` it had, which is also the API's cursor
        id, time, location,       copies of the event's fields the Security section filters on
        employee, category, action
        body                      the canonical JSON exactly as hashed (bytea: the bytes must not change)
        prev_hash, hash           the chain links, as in Redis
        PRIMARY KEY (log, pos_ms, pos_seq); INDEX (log, employee, pos_ms, pos_seq);
        INDEX (log, location, pos_ms, pos_seq)
    sidecar_audit_floors          per log: the hash of the last event retention dropped, and how many

An event's position is its identity in a log: the Redis id sets admit each event id once, so an
event id and its stream id name the same entry, and the position (which holds the partition key,
as PostgreSQL requires of a partitioned table's key) is the primary key. Inserts are ``ON
CONFLICT DO NOTHING``: moving a batch twice (a crash between the commit here and the delete in
Redis) stores it once.

Retention drops whole partitions past the cutoff, first recording per log the hash of the last
event dropped (the floor the verifier starts from) and the count. PostgreSQL errors surface as
``ArchiveUnavailable`` (503 ``archive_unavailable``); an idle connection that died meanwhile (a
restart, a failover) is replaced and the work run once more (:meth:`ArchiveStore._run`).

Reads are single statements (no BEGIN/COMMIT round trips), keyset-paged; the keyset also bounds
``pos_ms`` so the planner skips partitions past the cursor. Indexes an earlier version did not
create are built online by :meth:`ArchiveStore.build_indexes` (the archiver calls it).

Imports: psycopg, orjson, ``sidecar.errors``, ``sidecar.store.audit_log`` (the hash link).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import psycopg

from sidecar.errors import ArchiveUnavailable
from sidecar.store.audit_log import GENESIS, Verdict, link

TABLE = "sidecar_audit_events"
FLOORS = "sidecar_audit_floors"
_LOCK_KEY = 0x5AD17A2C  # pg_advisory_xact_lock: schema and partition changes, one process at a time
_MAX_IDLE = 4  # connections kept open per store
T = TypeVar("T")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    log text NOT NULL,
    pos_ms bigint NOT NULL,
    pos_seq bigint NOT NULL,
    id text NOT NULL,
    time text NOT NULL,
    location text,
    employee text,
    category text NOT NULL,
    action text NOT NULL,
    body bytea NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (log, pos_ms, pos_seq)
) PARTITION BY RANGE (pos_ms);
CREATE INDEX IF NOT EXISTS {TABLE}_employee ON {TABLE} (log, employee, pos_ms, pos_seq);
CREATE INDEX IF NOT EXISTS {TABLE}_location ON {TABLE} (log, location, pos_ms, pos_seq);
CREATE TABLE IF NOT EXISTS {FLOORS} (
    log text PRIMARY KEY,
    floor text NOT NULL,
    dropped bigint NOT NULL
);
"""
# The secondary indexes, on the parent (so each partition, present or future, has its own). An
# archive made by an earlier version lacks the later ones: build_indexes() adds them online.
INDEXES = (("employee", "log, employee, pos_ms, pos_seq"),  # the Security section filtered by employee
           ("location", "log, location, pos_ms, pos_seq"))  # the location route over a chain's log
_BUILD_LOCK = 0x5AD17A2D  # pg_try_advisory_lock: one index build at a time across processes
_COLUMNS = "log, pos_ms, pos_seq, id, time, location, employee, category, action, body, prev_hash, hash"


@dataclass(frozen=True)
class Entry:
    """One event as it sits in a log: its position, the hashed body and its links."""

    log: str
    pos_ms: int
    pos_seq: int
    body: bytes
    prev_hash: str
    hash: str

    @property
    def sid(self) -> str:
        return f"{self.pos_ms}-{self.pos_seq}"


def parse_sid(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


def month_of(pos_ms: int) -> tuple[int, int]:
    moment = datetime.fromtimestamp(pos_ms / 1000, UTC)
    return moment.year, moment.month


def month_bounds(year: int, month: int) -> tuple[int, int]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def partition_name(year: int, month: int) -> str:
    return f"{TABLE}_p{year:04d}{month:02d}"


@dataclass(frozen=True)
class Filters:
    """What the Security section asks for, pushed down to SQL (the same meaning as audit's Query)."""

    category: str | None = None
    employee: str | None = None
    action: str | None = None
    location: str | None = None
    since: str | None = None  # RFC 3339 UTC in the events' own format: compared as text, like in Redis
    until: str | None = None
    oldest_ms: int | None = None  # positions below this are not examined (``since`` minus the skew margin)
    exclude: tuple[str, ...] = ()  # actions left out (``exclude=security_log:read``)


class ArchiveStore:
    """The archive of one PostgreSQL database. Thread-safe; connections are opened on demand."""

    def __init__(self, url: str, *, connect_timeout_s: int = 3, statement_timeout_ms: int = 30_000) -> None:
        self.url = url
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_ms = statement_timeout_ms
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._schema_ready = False
        self._indexes_ready = False

    # -- connections --------------------------------------------------------------------------
    def _checkout(self) -> tuple[psycopg.Connection[Any], bool]:
        """An idle connection (reused: True) or a new one."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not conn.closed:
            return conn, True
        return psycopg.connect(self.url, connect_timeout=self._connect_timeout_s,
                               application_name="sidecar-audit-archive", autocommit=True,
                               options=f"-c statement_timeout={self._statement_timeout_ms}"), False

    def _checkin(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _run(self, work: Callable[[psycopg.Connection[Any]], T], *, transaction: bool = True) -> T:
        """``work(conn)`` in one transaction, committed on success; PostgreSQL errors become
        ArchiveUnavailable (and the connection is dropped). ``transaction=False`` for one
        statement: it is a transaction of its own (autocommit), without the BEGIN and COMMIT round
        trips, which are most of a short read's time on a busy machine.

        An idle connection may be dead without knowing it yet (PostgreSQL restarted, a failover,
        a proxy's idle timeout): when a reused one turns out broken, the other idle ones are
        dropped too (a restart ends them all) and ``work`` runs once more on a new connection.
        Safe because every ``work`` here is a read, DDL guarded by ``IF [NOT] EXISTS`` and a
        lock, or an ``ON CONFLICT DO NOTHING`` insert: running it again, even after a commit
        whose answer was lost, changes nothing more.
        """
        retried = False
        while True:
            conn: psycopg.Connection[Any] | None = None
            reused = False
            try:
                conn, reused = self._checkout()
                if transaction:
                    with conn.transaction():
                        result = work(conn)
                else:
                    result = work(conn)
            except psycopg.Error as exc:
                broken = conn is not None and conn.broken
                if conn is not None:
                    conn.close()
                if reused and broken and not retried:
                    retried = True
                    self.close()
                    continue
                raise ArchiveUnavailable("the audit archive (PostgreSQL) is unreachable") from exc
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
            self._checkin(conn)
            return result

    def _fetch(self, query: str, args: Sequence[Any], *, binary: bool = False) -> list[tuple[Any, ...]]:
        """The rows of one read statement (its own transaction)."""
        return self._run(lambda conn: conn.cursor(binary=binary).execute(query, args).fetchall(), transaction=False)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a transaction for a ``with`` block (no retry: the block cannot be run twice)."""
        conn: psycopg.Connection[Any] | None = None
        try:
            conn, _ = self._checkout()
            with conn.transaction():
                yield conn
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            raise ArchiveUnavailable("the audit archive (PostgreSQL) is unreachable") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._checkin(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def ping(self) -> None:
        """Raise ArchiveUnavailable unless PostgreSQL answers."""
        self._run(lambda conn: conn.execute("SELECT 1"), transaction=False)

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return

        def work(conn: psycopg.Connection[Any]) -> None:
            # Look first: DDL, even IF NOT EXISTS, takes locks that wait behind running inserts. An
            # archive made by an earlier version is used as it is: build_indexes() completes it.
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                               (f"{TABLE}_employee", FLOORS)).fetchone()
            if not (row and row[0]):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute(_SCHEMA)

        self._run(work)
        self._schema_ready = True

    def missing_indexes(self) -> list[str]:
        """The secondary indexes (by suffix) not yet valid on the parent table: an archive made by
        an earlier version, or a build that was interrupted."""
        self.ensure_schema()
        rows = self._fetch("SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                           "WHERE x.indrelid = to_regclass(%s) AND x.indisvalid", (TABLE,))
        valid = {str(row[0]) for row in rows}
        return [suffix for suffix, _ in INDEXES if f"{TABLE}_{suffix}" not in valid]

    def build_indexes(self) -> list[str]:
        """Add the secondary indexes an existing archive lacks, without blocking its writers; the
        suffixes built (none when another process is building them).

        PostgreSQL cannot build an index concurrently on a partitioned table, so, as its manual
        says: an index on the parent alone (invalid until complete), then per partition an index
        built ``CONCURRENTLY`` (inserts go on meanwhile) and attached. Partitions created
        meanwhile get theirs from the parent. A build interrupted halfway is resumed: an invalid
        leftover is dropped and rebuilt. It takes minutes on a large archive; the archiver calls
        it under its lease, and readers never wait for it (they only run slower without it).
        """
        if self._indexes_ready:
            return []
        missing = self.missing_indexes()
        if not missing:
            self._indexes_ready = True
            return []
        try:  # CONCURRENTLY runs outside a transaction, and may take longer than any statement timeout
            conn = psycopg.connect(self.url, connect_timeout=self._connect_timeout_s, autocommit=True,
                                   application_name="sidecar-audit-archive-index-build")
        except psycopg.Error as exc:
            raise ArchiveUnavailable("the audit archive (PostgreSQL) is unreachable") from exc
        try:
            with conn:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_BUILD_LOCK,)).fetchone()
                if not (row and row[0]):
                    return []
                for suffix, columns in INDEXES:
                    if suffix in missing:
                        self._build_index(conn, suffix, columns)
        except psycopg.Error as exc:
            raise ArchiveUnavailable(f"building the audit archive's {missing} index failed: {exc}") from exc
        return missing

    def _build_index(self, conn: psycopg.Connection[Any], suffix: str, columns: str) -> None:
        parent = f"{TABLE}_{suffix}"
        conn.execute(f"CREATE INDEX IF NOT EXISTS {parent} ON ONLY {TABLE} ({columns})")
        for partition in self._partitions(conn):
            attached = conn.execute(
                "SELECT 1 FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
                "WHERE i.inhparent = to_regclass(%s) AND x.indrelid = to_regclass(%s)", (parent, partition)).fetchone()
            if attached:
                continue
            child = f"{partition}_{suffix}"
            leftover = conn.execute("SELECT x.indisvalid FROM pg_index x WHERE x.indexrelid = to_regclass(%s)",
                                    (child,)).fetchone()
            if leftover and not leftover[0]:
                conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {child}")
            conn.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {child} ON {partition} ({columns})")
            conn.execute(f"ALTER INDEX {parent} ATTACH PARTITION {child}")

    # -- writing --------------------------------------------------------------------------------
    def insert(self, entries: Sequence[Entry]) -> int:
        """Store the entries in one transaction, skipping positions already held; how many were new."""
        if not entries:
            return 0
        self.ensure_schema()
        columns: list[list[Any]] = [[] for _ in range(12)]
        months: set[tuple[int, int]] = set()
        for entry in entries:
            event = orjson.loads(entry.body)
            months.add(month_of(entry.pos_ms))
            for column, value in zip(columns, (
                    entry.log, entry.pos_ms, entry.pos_seq, str(event.get("id")), str(event.get("time", "")),
                    event.get("location"), event.get("employee"), str(event.get("category", "")),
                    str(event.get("action", "")), entry.body, entry.prev_hash, entry.hash), strict=True):
                column.append(value)

        def work(conn: psycopg.Connection[Any]) -> int:
            self._ensure_partitions(conn, months)
            return conn.execute(
                f"INSERT INTO {TABLE} ({_COLUMNS}) SELECT * FROM unnest("  # noqa: S608 (constant names)
                "%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], "
                "%s::text[], %s::text[], %s::bytea[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                columns).rowcount

        return self._run(work)

    def _ensure_partitions(self, conn: psycopg.Connection[Any], months: set[tuple[int, int]]) -> None:
        existing = set(self._partitions(conn))
        missing = sorted(m for m in months if partition_name(*m) not in existing)
        if not missing:
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))  # two creators never race
        for year, month in missing:
            low, high = month_bounds(year, month)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(year, month)} PARTITION OF {TABLE} "
                         f"FOR VALUES FROM ({low}) TO ({high})")

    @staticmethod
    def _partitions(conn: psycopg.Connection[Any]) -> list[str]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY c.relname", (TABLE,)).fetchall()
        return [str(row[0]) for row in rows]

    def partitions(self) -> list[str]:
        self.ensure_schema()
        return self._run(self._partitions, transaction=False)

    def drop_before(self, cutoff_ms: int) -> list[str]:
        """Drop every partition whose whole month ends at or before ``cutoff_ms``, oldest first.

        Before a partition goes, each of its logs' floor becomes the hash of its last event there
        (and ``dropped`` grows by its count), so the verifier starts after it: retention is not
        mistaken for a deletion.
        """
        self.ensure_schema()
        dropped: list[str] = []

        def drop(name: str) -> bool:
            def work(conn: psycopg.Connection[Any]) -> bool:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if name not in self._partitions(conn):
                    return False  # another process dropped it meanwhile (or this one, its answer lost)
                conn.execute(
                    f"INSERT INTO {FLOORS} (log, floor, dropped) "  # noqa: S608 (constant names)
                    f"SELECT DISTINCT ON (log) log, hash, count(*) OVER (PARTITION BY log) FROM {name} "
                    "ORDER BY log, pos_ms DESC, pos_seq DESC "
                    "ON CONFLICT (log) DO UPDATE SET floor = EXCLUDED.floor, "
                    f"dropped = {FLOORS}.dropped + EXCLUDED.dropped")
                conn.execute(f"DROP TABLE {name}")
                return True
            return self._run(work)

        for name in self._run(self._partitions, transaction=False):
            year, month = int(name[-6:-2]), int(name[-2:])
            if month_bounds(year, month)[1] > cutoff_ms:
                break
            if drop(name):
                dropped.append(name)
        return dropped

    # -- reading --------------------------------------------------------------------------------
    def newest_first(self, log: str, *, before: str | None = None, filters: Filters | None = None,
                     batch: int = 500, first_batch: int | None = None) -> Iterator[dict[str, Any]]:
        """Matching events of ``log`` newest first, strictly below position ``before``.

        Each event carries ``prev_hash``, ``hash`` and its position as ``_sid`` (the cursor), as
        :meth:`AuditLog.newest_first` does. Reads ``batch`` rows per query (``first_batch`` for
        the first, e.g. one page), keyset-paged, so an export never holds a long transaction.
        """
        self.ensure_schema()
        where: list[str] = ["log = %s"]
        params: list[Any] = [log]
        f = filters or Filters()
        for column, value in (("category", f.category), ("employee", f.employee), ("action", f.action),
                              ("location", f.location)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if f.exclude:
            where.append("action <> ALL(%s)")
            params.append(list(f.exclude))
        if f.since is not None:
            where.append("time >= %s")
            params.append(f.since)
        if f.until is not None:
            where.append("time <= %s")
            params.append(f.until)
        if f.oldest_ms is not None:
            where.append("pos_ms >= %s")
            params.append(f.oldest_ms)
        position = parse_sid(before) if before else None
        size = first_batch or batch
        while True:
            clause = " AND ".join(where)
            args: list[Any] = list(params)
            if position is not None:  # pos_ms alone lets the planner skip the newer partitions
                clause += " AND pos_ms <= %s AND (pos_ms, pos_seq) < (%s, %s)"
                args += (position[0], *position)
            query = (f"SELECT pos_ms, pos_seq, body, prev_hash, hash FROM {TABLE} WHERE {clause} "  # noqa: S608
                     "ORDER BY pos_ms DESC, pos_seq DESC LIMIT %s")
            rows = self._fetch(query, [*args, size], binary=True)  # binary: bytea arrives as bytes
            for pos_ms, pos_seq, body, prev_hash, digest in rows:
                event: dict[str, Any] = orjson.loads(body)
                event["prev_hash"], event["hash"], event["_sid"] = prev_hash, digest, f"{pos_ms}-{pos_seq}"
                yield event
            if len(rows) < size:
                return
            position = (rows[-1][0], rows[-1][1])
            size = batch

    def oldest_first(self, log: str, *, upto: str | None, batch: int = 5000) -> Iterator[Entry]:
        """Every entry of ``log`` at or below position ``upto`` (all if None), oldest first."""
        self.ensure_schema()
        limit = parse_sid(upto) if upto else None
        position: tuple[int, int] = (-1, -1)
        while True:
            clause, args = "log = %s AND pos_ms >= %s AND (pos_ms, pos_seq) > (%s, %s)", [log, position[0], *position]
            if limit is not None:
                clause += " AND pos_ms <= %s AND (pos_ms, pos_seq) <= (%s, %s)"
                args += (limit[0], *limit)
            query = (f"SELECT pos_ms, pos_seq, body, prev_hash, hash FROM {TABLE} WHERE {clause} "  # noqa: S608
                     "ORDER BY pos_ms, pos_seq LIMIT %s")
            rows = self._fetch(query, [*args, batch])
            for pos_ms, pos_seq, body, prev_hash, digest in rows:
                yield Entry(log, pos_ms, pos_seq, bytes(body), prev_hash, digest)
            if len(rows) < batch:
                return
            position = (rows[-1][0], rows[-1][1])

    def floor(self, log: str) -> tuple[str, int]:
        """The hash retention left as this log's starting point (genesis if none) and how many it dropped."""
        self.ensure_schema()
        row = self._run(lambda conn: conn.execute(
            f"SELECT floor, dropped FROM {FLOORS} WHERE log = %s", (log,)).fetchone(), transaction=False)  # noqa: S608
        return (str(row[0]), int(row[1])) if row else (GENESIS, 0)

    def count(self, log: str) -> int:
        self.ensure_schema()
        row = self._run(lambda conn: conn.execute(
            f"SELECT count(*) FROM {TABLE} WHERE log = %s", (log,)).fetchone(), transaction=False)  # noqa: S608
        return int(row[0]) if row else 0

    def verify(self, log: str, *, upto: str | None) -> tuple[Verdict, str]:
        """Walk ``log``'s archived chain oldest first, from its floor, up to position ``upto``.

        Returns the verdict and the hash the walk ended on (the link the hot log must start from).
        """
        expected, _ = self.floor(log)
        count = 0
        for entry in self.oldest_first(log, upto=upto):
            event_id = _event_id(entry.body)
            if entry.prev_hash != expected:
                return Verdict(False, count, "prev_hash does not match the previous event's hash (an event "
                               "before it was edited, deleted, inserted or moved) [archive]",
                               event_id, entry.sid), expected
            if link(entry.prev_hash, entry.body) != entry.hash:
                return Verdict(False, count, "hash does not match the event's content (edited) [archive]",
                               event_id, entry.sid), expected
            expected, count = entry.hash, count + 1
        return Verdict(True, count), expected

    def size(self) -> dict[str, int]:
        """Rows and bytes (table, indexes) across every partition: what the benchmark reports."""
        self.ensure_schema()
        row = self._run(lambda conn: conn.execute(
            "SELECT coalesce(sum(pg_table_size(i.inhrelid)), 0), coalesce(sum(pg_indexes_size(i.inhrelid)), 0) "
            "FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s", (TABLE,)).fetchone())
        rows = self._run(lambda conn: conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone())  # noqa: S608
        assert row is not None and rows is not None
        return {"rows": int(rows[0]), "table_bytes": int(row[0]), "index_bytes": int(row[1])}


def _event_id(body: bytes) -> str | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value.get("id") if isinstance(value, dict) else None
