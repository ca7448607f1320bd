"""The archiver and the read and verify paths across Redis and PostgreSQL (real both)."""

from __future__ import annotations

import time

import psycopg
import pytest
import redis

from sidecar.audit.archiver import LEASE_KEY, Archiver, newest_first, verify
from sidecar.errors import ArchiveUnavailable
from sidecar.store.audit_archive import TABLE, ArchiveStore, Entry, Filters, parse_sid
from sidecar.store.audit_log import AuditLog, stream_key
from sidecar.store.lease import Lease
from tests.audit_archive_support import write_chain
from tests.conftest import wait_until

DAY = 86_400_000


@pytest.fixture
def archive(postgres_url: str):
    store = ArchiveStore(postgres_url)
    yield store
    store.close()


@pytest.fixture
def audit_log(redis_client: redis.Redis) -> AuditLog:
    return AuditLog(redis_client, 400, archived=True, hot_s=7 * 86400)


def archiver(audit_log: AuditLog, archive: ArchiveStore, **kw) -> Archiver:
    return Archiver(audit_log, archive, hot_s=7 * 86400, retention_days=400, duty=1.0, **kw)


def chain(redis_client: redis.Redis, n: int = 40, *, days_old: int = 20, log: str = "c:c1") -> list[dict]:
    """``n`` events an hour apart, the newest ``days_old - n/24`` days ago... spread over both sides of 7 days."""
    start = int(time.time() * 1000) - days_old * DAY
    step = (days_old * DAY - DAY) // n
    return write_chain(redis_client, log, [start + i * step for i in range(n)])


def all_events(audit_log, archive, log="c:c1", filters=None, matches=lambda e: True, before=None):
    filters = filters or Filters()
    return list(newest_first(audit_log, archive, log, before=before, oldest_ms=filters.oldest_ms, filters=filters,
                             matches=matches, scan_budget=None))


def test_a_pass_moves_only_old_events_and_the_log_reads_and_verifies_as_before(audit_log, archive, redis_client):
    events = chain(redis_client)
    cutoff = int(time.time() * 1000) - 7 * DAY
    old = [e for e in events if parse_sid(e["_sid"])[0] < cutoff]
    assert 0 < len(old) < len(events)
    done = archiver(audit_log, archive, batch=7).run_once()
    assert done.held_lease and done.moved == len(old)
    assert redis_client.xlen(stream_key("c:c1")) == len(events) - len(old)
    assert archive.count("c:c1") == len(old)
    assert [e["id"] for e in all_events(audit_log, archive)] == [e["id"] for e in reversed(events)]
    assert all_events(audit_log, archive) == list(reversed(events))  # same fields, links and cursors
    assert verify(audit_log, archive, "c:c1").intact
    assert verify(audit_log, archive, "c:c1").count == len(events)
    assert archiver(audit_log, archive).run_once().moved == 0  # nothing more is old enough


def test_a_cursor_crosses_the_boundary_and_every_filter_reads_both_stores(audit_log, archive, redis_client):
    events = chain(redis_client, 60)
    archiver(audit_log, archive, batch=10).run_once()
    hot_oldest = redis_client.xrange(stream_key("c:c1"), count=1)[0][0].decode()
    newest = list(reversed(events))
    boundary = next(i for i, e in enumerate(newest) if e["_sid"] == hot_oldest)
    # pages of 7 by cursor, as the API pages: one page holds events of both stores
    seen, cursor = [], None
    while True:
        page = all_events(audit_log, archive, before=cursor)[:7]
        if not page:
            break
        seen += page
        cursor = page[-1]["_sid"]
    assert [e["id"] for e in seen] == [e["id"] for e in newest]
    crossing = all_events(audit_log, archive, before=newest[boundary - 2]["_sid"])[:5]
    assert [e["id"] for e in crossing] == [e["id"] for e in newest[boundary - 1:boundary + 4]]
    mid = events[len(events) // 2]["time"]
    for name, filters, keep in [
        ("category", Filters(category="delete"), lambda e: e["category"] == "delete"),
        ("employee", Filters(employee="e3"), lambda e: e["employee"] == "e3"),
        ("action", Filters(action="client:export"), lambda e: e["action"] == "client:export"),
        ("location", Filters(location="l2"), lambda e: e["location"] == "l2"),
        ("since", Filters(since=events[5]["time"]), lambda e: e["time"] >= events[5]["time"]),
        ("until", Filters(until=mid), lambda e: e["time"] <= mid),
    ]:
        expected = [e["id"] for e in newest if keep(e)]
        got = all_events(audit_log, archive, filters=filters, matches=keep)
        assert [e["id"] for e in got] == expected, name
        assert any(parse_sid(e["_sid"]) < parse_sid(hot_oldest) for e in got), name  # the archive answered too


def test_a_batch_committed_but_not_yet_deleted_is_shown_and_stored_once(audit_log, archive, redis_client):
    events = chain(redis_client)
    rows = audit_log.oldest("c:c1", below_ms=int(time.time() * 1000) - 7 * DAY, count=5)
    archive.insert([Entry("c:c1", *parse_sid(sid), body, prev, digest) for sid, body, prev, digest in rows])
    # the state a process killed between the commit and the delete leaves behind
    assert redis_client.xlen(stream_key("c:c1")) == len(events)
    assert [e["id"] for e in all_events(audit_log, archive)] == [e["id"] for e in reversed(events)]
    assert verify(audit_log, archive, "c:c1").intact
    archiver(audit_log, archive, batch=3).run_once()
    with psycopg.connect(archive.url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM sidecar_audit_events ORDER BY pos_ms, pos_seq").fetchall()]
    assert len(ids) == len(set(ids)) == archive.count("c:c1")
    assert [e["id"] for e in all_events(audit_log, archive)] == [e["id"] for e in reversed(events)]
    assert verify(audit_log, archive, "c:c1").intact


def test_only_the_lease_holder_moves(audit_log, archive, redis_client):
    chain(redis_client)
    held = Lease(redis_client, LEASE_KEY, 30_000)
    assert held.acquire()
    assert archiver(audit_log, archive).run_once() .held_lease is False
    assert archive.count("c:c1") == 0
    held.release()
    assert archiver(audit_log, archive).run_once().moved > 0
    assert redis_client.get(LEASE_KEY) is None  # released after the pass


def test_postgres_unreachable_moves_nothing_and_hot_events_still_read(audit_log, redis_client, tmp_path):
    events = chain(redis_client)
    down = ArchiveStore(f"postgresql://postgres@/x?host={tmp_path}", connect_timeout_s=1)
    mover = archiver(audit_log, down, every_s=0.05)
    with pytest.raises(ArchiveUnavailable):
        mover.run_once()
    assert redis_client.xlen(stream_key("c:c1")) == len(events)
    assert redis_client.get(LEASE_KEY) is None
    mover.start()
    try:
        wait_until(lambda: mover.status()["state"] == "unreachable", 20)
        assert mover.status()["state"] == "unreachable"
    finally:
        mover.stop()
    hot = [e for e in reversed(events)][:5]
    assert [e["id"] for e in all_events(audit_log, down)[:5]] == [e["id"] for e in hot]  # Redis alone answers


def test_archived_events_need_the_archive(audit_log, archive, redis_client, tmp_path):
    events = chain(redis_client)
    archiver(audit_log, archive).run_once()
    down = ArchiveStore(f"postgresql://postgres@/x?host={tmp_path}", connect_timeout_s=1)
    reader = newest_first(audit_log, down, "c:c1", before=None, oldest_ms=None, filters=Filters(),
                          matches=lambda e: True, scan_budget=None)
    hot = redis_client.xlen(stream_key("c:c1"))
    assert [next(reader)["id"] for _ in range(hot)] == [e["id"] for e in reversed(events)][:hot]
    with pytest.raises(ArchiveUnavailable):
        next(reader)


def test_retention_drops_old_months_and_the_chain_still_verifies(audit_log, archive, redis_client):
    now = int(time.time() * 1000)
    events = write_chain(redis_client, "c:c1", [now - (500 - i) * DAY for i in range(0, 500, 10)])
    mover = Archiver(audit_log, archive, hot_s=7 * 86400, retention_days=400, batch=100, duty=1.0)
    done = mover.run_once(now_ms=now)
    assert done.dropped  # the months wholly older than 400 days
    remaining = archive.count("c:c1")
    assert 0 < remaining < len(events) - 1
    report = verify(audit_log, archive, "c:c1")
    assert report.intact and report.count == remaining + redis_client.xlen(stream_key("c:c1"))
    assert [e["id"] for e in all_events(audit_log, archive)] == [e["id"] for e in reversed(events)][:report.count]


@pytest.mark.parametrize("change, problem", [
    ("UPDATE {t} SET body = convert_to(replace(convert_from(body, 'UTF8'), 'e1', 'e7'), 'UTF8') "
     "WHERE id = (SELECT max(id) FROM {t})", "edited"),
    ("DELETE FROM {t} WHERE id = (SELECT max(id) FROM {t})", "archived events at its end were deleted"),
    ("DELETE FROM {t} WHERE id = (SELECT min(id) FROM {t})", "prev_hash does not match"),
    ("DELETE FROM {t}", "archived events at its end were deleted"),
    ("UPDATE {t} SET pos_ms = (SELECT pos_ms FROM {t} ORDER BY pos_ms OFFSET 1 LIMIT 1) + 1 "
     "WHERE id = (SELECT min(id) FROM {t})", "prev_hash does not match"),  # the first two swapped
])
def test_verify_across_names_what_changed_in_the_archive(audit_log, archive, redis_client, change, problem):
    chain(redis_client)
    archiver(audit_log, archive).run_once()
    assert verify(audit_log, archive, "c:c1").intact
    with psycopg.connect(archive.url, autocommit=True) as conn:
        conn.execute(change.format(t=TABLE))
    report = verify(audit_log, archive, "c:c1")
    assert not report.intact and problem in (report.problem or ""), report
    assert report.stream_id is not None


_MOVER = """
import sys, redis
from sidecar.audit.archiver import Archiver
from sidecar.store.audit_archive import ArchiveStore
from sidecar.store.audit_log import AuditLog
client = redis.Redis.from_url(sys.argv[1])
Archiver(AuditLog(client, 400, archived=True), ArchiveStore(sys.argv[2]), hot_s=7 * 86400, retention_days=400,
         batch=100, lease_ms=1500, duty=1.0).run_once()
print("finished")
"""


def _wait_for(condition, what: str, timeout_s: float = 60) -> None:
    assert wait_until(condition, timeout_s=timeout_s), f"gave up waiting for {what}"


@pytest.mark.e2e  # a real mover process, SIGKILLed mid-batch
@pytest.mark.parametrize("moment", ["inside the insert", "after the commit, before the delete"])
def test_a_mover_killed_mid_batch_loses_and_duplicates_nothing(audit_log, archive, redis_client, redis_url,
                                                                moment):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    now = int(time.time() * 1000)
    events = write_chain(redis_client, "c:c1", [now - 30 * DAY + i * 1000 for i in range(350)]
                         + [now - DAY + i * 1000 for i in range(20)])
    blocker = psycopg.connect(archive.url)
    admin = redis.Redis.from_url(redis_url)
    if moment == "inside the insert":
        # An uncommitted row at the third batch's 51st position: the mover's INSERT waits on it
        # with batches one and two committed and half of batch three written.
        third = events[250]
        pos_ms, pos_seq = parse_sid(third["_sid"])
        archive.insert([Entry("c:c1", pos_ms, pos_seq, b'{"id":"x"}', "p", "h")])
        with psycopg.connect(archive.url, autocommit=True) as conn:
            conn.execute("DELETE FROM sidecar_audit_events")
        blocker.execute("INSERT INTO sidecar_audit_events (log, pos_ms, pos_seq, id, time, category, action, "
                        "body, prev_hash, hash) VALUES ('c:c1', %s, %s, 'x', '', '', '', '', '', '')",
                        (pos_ms, pos_seq))
    mover = subprocess.Popen([sys.executable, "-c", _MOVER, redis_url, archive.url],
                             cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE)
    try:
        if moment == "inside the insert":
            def waiting() -> bool:  # a fresh connection: a transaction sees one snapshot of the activity
                with psycopg.connect(archive.url, autocommit=True) as conn:
                    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                       "'sidecar-audit-archive' AND wait_event_type = 'Lock'").fetchone()
                return row is not None and row[0] > 0
            _wait_for(waiting, "the mover to wait inside its third batch")
        else:
            _wait_for(lambda: admin.get(LEASE_KEY) is not None, "the mover to take the lease")
            admin.execute_command("CLIENT", "PAUSE", 60000, "WRITE")  # its delete from Redis cannot run
            _wait_for(lambda: archive.count("c:c1") >= 100, "the first batch to commit")
        os.kill(mover.pid, signal.SIGKILL)
        output, _ = mover.communicate(timeout=30)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
        blocker.rollback()
        blocker.close()
        if mover.poll() is None:
            mover.kill()
            mover.communicate(timeout=30)
    assert b"finished" not in output
    assert mover.returncode == -signal.SIGKILL
    in_redis = {e[0].decode() for e in redis_client.xrange(stream_key("c:c1"))}
    expected_archived = {"inside the insert": 200, "after the commit, before the delete": 100}[moment]
    _wait_for(lambda: archive.count("c:c1") == expected_archived, "the killed mover's transaction to end")
    archived = [e["_sid"] for e in archive.newest_first("c:c1")]
    assert set(archived) | in_redis == {e["_sid"] for e in events}  # nothing lost
    # The next pass (after the dead mover's lease expired) finishes the job, storing each event once.
    done = Archiver(audit_log, archive, hot_s=7 * 86400, retention_days=400, batch=100,
                    duty=1.0).run_once(lease_wait_s=30)
    assert done.held_lease
    assert archive.count("c:c1") == 350 and redis_client.xlen(stream_key("c:c1")) == 20
    assert [e["id"] for e in all_events(audit_log, archive)] == [e["id"] for e in reversed(events)]
    report = verify(audit_log, archive, "c:c1")
    assert report.intact and report.count == 370
    admin.close()
