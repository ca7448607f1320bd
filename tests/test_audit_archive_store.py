"""The PostgreSQL archive store and the Redis side of a move, against a real cluster and Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import psycopg
import pytest
import redis

from sidecar.errors import ArchiveUnavailable
from sidecar.store.audit_archive import TABLE, ArchiveStore, Entry, Filters
from sidecar.store.audit_log import GENESIS, AuditLog
from sidecar.store.lease import Lease
from tests.audit_archive_support import write_chain


def ms(year: int, month: int, day: int = 1) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def entries_of(audit_log: AuditLog, log: str) -> list[Entry]:
    rows = audit_log.oldest(log, below_ms=2**62, count=100_000)
    return [Entry(log, int(sid.split("-")[0]), int(sid.split("-")[1]), body, prev, digest)
            for sid, body, prev, digest in rows]


@pytest.fixture
def archive(postgres_url: str):
    store = ArchiveStore(postgres_url)
    yield store
    store.close()


@pytest.fixture
def audit_log(redis_client: redis.Redis) -> AuditLog:
    return AuditLog(redis_client, 400, archived=True)


def three_months(redis_client: redis.Redis) -> list[dict]:
    times = [ms(2025, 1, 5) + i * 60_000 for i in range(10)] + [ms(2025, 2, 5) + i * 60_000 for i in range(10)] \
        + [ms(2025, 3, 5) + i * 60_000 for i in range(10)]
    return write_chain(redis_client, "c:c1", times)


def test_insert_is_idempotent_and_partitions_are_created_by_month(archive, audit_log, redis_client):
    events = three_months(redis_client)
    entries = entries_of(audit_log, "c:c1")
    assert archive.insert(entries[:15]) == 15
    assert archive.insert(entries) == 15  # the first 15 again: skipped, not duplicated
    assert archive.insert(entries) == 0
    assert archive.count("c:c1") == 30
    assert archive.partitions() == [f"{TABLE}_p202501", f"{TABLE}_p202502", f"{TABLE}_p202503"]
    newest = list(archive.newest_first("c:c1", batch=7))
    assert [e["id"] for e in newest] == [e["id"] for e in reversed(events)]
    assert newest[0] == {k: v for k, v in events[-1].items()}  # every field, the links and the position


def test_cursor_and_every_filter(archive, audit_log, redis_client):
    events = three_months(redis_client)
    archive.insert(entries_of(audit_log, "c:c1"))
    newest = list(reversed(events))
    below = newest[4]["_sid"]
    assert [e["id"] for e in archive.newest_first("c:c1", before=below, batch=3)] == [e["id"] for e in newest[5:]]
    cases = {
        "category": (Filters(category="export"), lambda e: e["category"] == "export"),
        "employee": (Filters(employee="e2"), lambda e: e["employee"] == "e2"),
        "action": (Filters(action="client:delete"), lambda e: e["action"] == "client:delete"),
        "location": (Filters(location="l1"), lambda e: e["location"] == "l1"),
        "since": (Filters(since=events[12]["time"]), lambda e: e["time"] >= events[12]["time"]),
        "until": (Filters(until=events[12]["time"]), lambda e: e["time"] <= events[12]["time"]),
        "together": (Filters(employee="e1", since=events[3]["time"], until=events[25]["time"]),
                     lambda e: e["employee"] == "e1" and events[3]["time"] <= e["time"] <= events[25]["time"]),
    }
    for name, (filters, keep) in cases.items():
        expected = [e["id"] for e in newest if keep(e)]
        assert expected, name
        assert [e["id"] for e in archive.newest_first("c:c1", filters=filters, batch=2)] == expected, name
    assert list(archive.newest_first("c:other")) == []


def test_retention_drops_whole_months_and_records_the_floor(archive, audit_log, redis_client):
    events = three_months(redis_client)
    archive.insert(entries_of(audit_log, "c:c1"))
    assert archive.drop_before(ms(2025, 2, 20)) == [f"{TABLE}_p202501"]  # February is not over yet
    assert archive.floor("c:c1") == (events[9]["hash"], 10)
    assert archive.drop_before(ms(2025, 3, 1)) == [f"{TABLE}_p202502"]
    assert archive.floor("c:c1") == (events[19]["hash"], 20)
    verdict, end = archive.verify("c:c1", upto=None)
    assert verdict.intact and verdict.count == 10 and end == events[-1]["hash"]


def tamper(url: str, sql: str, *params) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql, params)


@pytest.mark.parametrize("change, problem, position", [
    ("UPDATE {t} SET body = convert_to(replace(convert_from(body, 'UTF8'), 'e2', 'e9'), 'UTF8') "
     "WHERE id = 'ev00000013'", "edited", 13),
    ("DELETE FROM {t} WHERE id = 'ev00000013'", "prev_hash does not match", 14),
    ("UPDATE {t} SET pos_ms = pos_ms + 120000 WHERE id = 'ev00000013'", "prev_hash does not match", 14),
    ("INSERT INTO {t} SELECT log, pos_ms, pos_seq + 1000, 'x', time, location, employee, category, action, body, "
     "prev_hash, hash FROM {t} WHERE id = 'ev00000013'", "prev_hash does not match", 1013),
])
def test_verify_names_an_edit_deletion_reordering_or_insertion(archive, audit_log, redis_client, postgres_url,
                                                               change, problem, position):
    events = three_months(redis_client)
    archive.insert(entries_of(audit_log, "c:c1"))
    assert archive.verify("c:c1", upto=None)[0].intact
    tamper(postgres_url, change.format(t=TABLE))
    verdict, _ = archive.verify("c:c1", upto=None)
    assert not verdict.intact and problem in (verdict.problem or "")
    assert verdict.stream_id is not None and verdict.stream_id.endswith(f"-{position}")
    if position < 1000:
        assert verdict.event_id == events[position]["id"]


def test_release_moves_the_floor_only_under_the_lease(audit_log, redis_client):
    events = three_months(redis_client)
    lease = Lease(redis_client, "sc:audit:archiver", 30_000)
    assert not audit_log.release("c:c1", last_sid=events[9]["_sid"], last_hash=events[9]["hash"],
                                 lease_key=lease.key, token=lease.token) > 0  # not held: -1
    assert lease.acquire() and not Lease(redis_client, lease.key, 30_000).acquire()
    assert audit_log.release("c:c1", last_sid=events[9]["_sid"], last_hash="0" * 40,
                             lease_key=lease.key, token=lease.token) == -2  # not that entry
    assert audit_log.release("c:c1", last_sid=events[9]["_sid"], last_hash=events[9]["hash"],
                             lease_key=lease.key, token=lease.token) == 10
    assert audit_log.release("c:c1", last_sid=events[9]["_sid"], last_hash=events[9]["hash"],
                             lease_key=lease.key, token=lease.token) == -2  # released before
    meta = audit_log.meta("c:c1")
    assert (meta["floor"], meta["archived"], meta["archived_to"]) == (events[9]["hash"], "10", events[9]["_sid"])
    assert audit_log.verify("c:c1").intact and audit_log.verify("c:c1").count == 20
    assert audit_log.trim("c:c1", ms(2030, 1)) == 0  # with an archive Redis never trims
    lease.release()
    assert Lease(redis_client, lease.key, 30_000).acquire()


def test_after_postgresql_restarts_the_next_read_and_write_succeed(archive, audit_log, redis_client,
                                                                   postgres_cluster):
    three_months(redis_client)
    entries = entries_of(audit_log, "c:c1")
    assert archive.insert(entries[:10]) == 10  # its connection now waits idle in the store
    postgres_cluster.restart()  # ends every session: the idle connection is dead, and does not know it yet
    assert archive.count("c:c1") == 10
    postgres_cluster.restart()
    assert archive.insert(entries) == 20
    postgres_cluster.restart()
    assert next(archive.newest_first("c:c1", batch=7))["id"] == orjson.loads(entries[-1].body)["id"]
    postgres_cluster.restart()
    archive.ping()


def test_a_dead_idle_connection_is_replaced_once_not_forever(postgres_cluster, postgres_url):
    """A reused connection found dead earns one more try on a new one; a new one failing is an answer."""
    store = ArchiveStore(postgres_url)
    store.ping()  # its connection now waits idle in the store
    database = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
    end_sessions = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()")
    with psycopg.connect(postgres_cluster.admin_url, autocommit=True) as admin:
        admin.execute(end_sessions, (database,))
        store.ping()  # the reused connection was ended: dropped, and the ping ran on a new one
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')  # a new one fails too
        admin.execute(end_sessions, (database,))
        try:
            with pytest.raises(ArchiveUnavailable):
                store.ping()
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    store.close()


def test_an_archive_made_before_an_index_existed_gets_it_built_online(archive, audit_log, redis_client,
                                                                      postgres_url):
    three_months(redis_client)
    entries = entries_of(audit_log, "c:c1")
    assert archive.insert(entries[:20]) == 20
    assert archive.missing_indexes() == [] and archive.build_indexes() == []  # a new archive has them all
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as an earlier version left it
        conn.execute(f"DROP INDEX {TABLE}_location")
        conn.execute(f"CREATE INDEX {TABLE}_p202502_location ON {TABLE}_p202502 (log, location, pos_ms, pos_seq)")
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass",
                     (f"{TABLE}_p202502_location",))

    older = ArchiveStore(postgres_url)  # a process started after the upgrade
    assert older.missing_indexes() == ["location"]
    assert [e["id"] for e in older.newest_first("c:c1", filters=Filters(location="l1"))]  # readers do not wait
    assert older.build_indexes() == ["location"]  # the interrupted build's invalid leftover is rebuilt
    assert older.missing_indexes() == [] and older.build_indexes() == []
    assert older.insert(entries) == 10  # the third month: a new partition gets the index from its parent
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        indexed = conn.execute(
            "SELECT t.relname, x.indisvalid FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
            "JOIN pg_class t ON t.oid = x.indrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
            (f"{TABLE}_location",)).fetchall()
        plan = "\n".join(row[0] for row in conn.execute(
            f"EXPLAIN SELECT * FROM {TABLE} WHERE log = 'c:c1' AND location = 'l1' "  # noqa: S608
            "ORDER BY pos_ms DESC, pos_seq DESC LIMIT 101").fetchall())
    assert indexed == [(f"{TABLE}_p{month}", True) for month in ("202501", "202502", "202503")]
    assert "_location" in plan or "location_pos_ms" in plan, plan
    older.close()


def test_an_unreachable_archive_raises_archive_unavailable(tmp_path):
    store = ArchiveStore(f"postgresql://postgres@/nothing?host={tmp_path}", connect_timeout_s=1)
    with pytest.raises(ArchiveUnavailable):
        store.ping()
    with pytest.raises(ArchiveUnavailable):
        list(store.newest_first("c:c1"))
    assert GENESIS == "0" * 40
