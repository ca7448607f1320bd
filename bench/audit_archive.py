"""The audit archive at scale: memory and disk per event, Security-section reads over millions of
archived events, and what archiving costs while checks run.

One command: ``.venv/bin/python -m bench.audit_archive`` (``--events 10000000`` is the issue's
size; ``--events 1000000`` for a quick run). It starts a private Redis
(:class:`sidecar.store.redis_server.RedisServer`, AOF on) and a private PostgreSQL cluster
(:class:`tests.postgres_support.PostgresCluster`: the Debian package's binaries, a unix socket,
``fsync=off`` as the test cluster; ``shared_buffers=256MB``), then measures:

1. **Redis memory per event**, before and after archiving: ``--memory-events`` events like the
   ones the issue measured (device, IP, object, details) appended with the real batch script,
   ``used_memory`` before/after; then one archiving pass (``hot_s=0``) moves them all, and
   ``used_memory`` again (what remains: each event's id in its day's id set, until that set
   expires ``hot_s`` + 2 days later, and the log's meta), and once more without the id sets.
2. **PostgreSQL bytes per event** (table and indexes, ``pg_table_size``/``pg_indexes_size`` over
   every partition) for those events, and for the big chain below.
3. **One chain of ``--events`` archived events**, generated straight into the table with
   ``COPY`` (a real hash chain, one partition per month over the last ``--months`` months, 1,000
   employees), then ``ANALYZE``; Redis holds none of them (the log's meta says they were
   archived), so every read below is answered by PostgreSQL. Through the read path the Security
   routes use (:func:`sidecar.audit.archiver.newest_first`, ``limit`` 100, so 101 rows):
   the first page unfiltered, filtered by one employee and by one location (the location route
   over a chain's log) (``--pages`` times each, p50/p99);
   a page at a random cursor in the oldest tenth of the chain; the CSV export of
   ``--csv-rows`` events through the route's own CSV writer (rows/s).
4. **Archiving while checks run** (``--move-events`` events waiting): check throughput of
   ``POST /v1/check`` through Flask's test client in one thread (10% critical, so events keep
   being written) for ``--seconds``, alone, then with the archiver thread moving the backlog in
   the same process (one GIL: the worst case; in production it runs in one worker out of
   several), at its default duty cycle and at full speed, and the archiver's events/s meanwhile.

The load average is recorded at start and end: the machine is shared. Results are printed and
written to ``bench/results/archive-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import psycopg
import redis

from sidecar.audit.archiver import Archiver, newest_first
from sidecar.store.audit_archive import TABLE, ArchiveStore, Filters, month_bounds, month_of, partition_name
from sidecar.store.audit_log import GENESIS, LOGS_KEY, AuditLog, meta_key, stream_key
from sidecar.store.redis_server import RedisServer
from tests.postgres_support import PostgresCluster

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
LIMIT = 100


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def realistic_event(i: int, ms: int, chain: str, employees: int = 1000) -> dict[str, Any]:
    """An event as the sidecar writes one for a critical check, with a device, an IP and details."""
    return {"id": uuid.uuid4().hex, "time": _iso(ms), "location": f"loc-{i % 50:04d}", "chain": chain,
            "employee": f"emp-{i % employees:05d}", "action": "client:delete", "category": "delete",
            "outcome": "allowed", "object": {"type": "client", "id": f"cl-{i:09d}"},
            "device": {"id": f"dev-{i % 3000:05d}", "name": "Front desk iPad", "platform": "ios",
                       "user_agent": "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15"},
            "ip": f"203.0.{i % 250}.{i % 200}", "request_id": uuid.uuid4().hex,
            "details": {"decision_id": uuid.uuid4().hex, "reason": "role_grants", "source": "check", "mfa": False}}


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def memory_per_event(client: redis.Redis, archive: ArchiveStore, count: int) -> dict[str, Any]:
    audit_log = AuditLog(client, 400, archived=True, hot_s=0)
    log_id = "c:memory"
    before = _used(client)
    now = int(time.time() * 1000)
    for start in range(0, count, 200):
        audit_log.append_many([(log_id, realistic_event(i, now, "memory"))
                               for i in range(start, min(start + 200, count))])
    hot = _used(client)
    mover = Archiver(audit_log, archive, hot_s=0, retention_days=400, batch=1000, max_batches=10**9, duty=1.0)
    started = time.perf_counter()
    done = mover.run_once(now_ms=int(time.time() * 1000) + 1000)
    elapsed = time.perf_counter() - started
    archived = _used(client)
    for key in client.scan_iter(f"sc:audit:{log_id}:ids:*"):
        client.delete(key)
    without_ids = _used(client)
    size = archive.size()
    return {"events": count, "moved": done.moved, "move_events_per_s": round(done.moved / elapsed),
            "redis_bytes_per_event_hot": round((hot - before) / count),
            "redis_bytes_per_event_archived_with_id_sets": round((archived - before) / count),
            "redis_bytes_per_event_archived_after_id_sets_expire": round((without_ids - before) / count),
            "pg_table_bytes_per_event": round(size["table_bytes"] / size["rows"]),
            "pg_index_bytes_per_event": round(size["index_bytes"] / size["rows"])}


_BODY = ('{"action":"client:delete","category":"delete","chain":"%s","details":{"decision_id":"%s","mfa":false,'
         '"reason":"role_grants","source":"check"},"device":{"id":"dev-%05d","name":"Front desk iPad","platform":"ios",'
         '"user_agent":"Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15"},"employee":"%s","id":"%s",'
         '"ip":"203.0.%d.%d","location":"%s","object":{"id":"cl-%09d","type":"client"},"outcome":"allowed",'
         '"request_id":"%s","time":"%s"}')


def fast_body(i: int, ms: int, chain: str, event_id: str, decision_id: str, request_id: str) -> tuple[bytes, str]:
    """The canonical body of ``realistic_event`` (same keys, order and sizes), without building a dict."""
    time_text = _iso(ms)
    body = _BODY % (chain, decision_id, i % 3000, f"emp-{i % 1000:05d}", event_id, i % 250, i % 200,
                    f"loc-{i % 50:04d}", i, request_id, time_text)
    return body.encode(), time_text


def generate_chain(url: str, archive: ArchiveStore, client: redis.Redis, log_id: str, count: int,
                   months: int) -> dict[str, Any]:
    """``count`` events of one chain, a real hash chain, COPYed into the archive's partitions."""
    sample = realistic_event(7, 1_700_000_000_000, log_id[2:])
    assert fast_body(7, 1_700_000_000_000, log_id[2:], sample["id"], sample["details"]["decision_id"],
                     sample["request_id"])[0] == orjson.dumps(sample, option=orjson.OPT_SORT_KEYS)
    archive.ensure_schema()
    now = int(time.time() * 1000)
    start = now - months * 30 * 86_400_000
    step = max(1, (now - 14 * 86_400_000 - start) // count)
    year_months = sorted({month_of(start + i * step) for i in range(0, count, max(1, count // 1000))}
                         | {month_of(start + (count - 1) * step)})
    started = time.perf_counter()
    prev = GENESIS
    chain = log_id[2:]
    with psycopg.connect(url, autocommit=True) as conn:
        for year, month in year_months:
            low, high = month_bounds(year, month)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(year, month)} PARTITION OF {TABLE} "
                         f"FOR VALUES FROM ({low}) TO ({high})")
        with conn.cursor() as cursor, cursor.copy(
                f"COPY {TABLE} (log, pos_ms, pos_seq, id, time, location, employee, category, action, body, "
                "prev_hash, hash) FROM STDIN") as copy:
            for i in range(count):
                ms = start + i * step
                event_id = os.urandom(16).hex()
                body, time_text = fast_body(i, ms, chain, event_id, os.urandom(16).hex(), os.urandom(16).hex())
                digest = hashlib.sha1(prev.encode() + b"\n" + body, usedforsecurity=False).hexdigest()
                copy.write_row((log_id, ms, 0, event_id, time_text, f"loc-{i % 50:04d}", f"emp-{i % 1000:05d}",
                                "delete", "client:delete", body, prev, digest))
                prev = digest
        loaded = time.perf_counter() - started
        conn.execute(f"ANALYZE {TABLE}")
    last_sid = f"{start + (count - 1) * step}-0"
    client.hset(meta_key(log_id), mapping={"head": prev, "count": count, "floor": prev, "archived": count,
                                           "archived_to": last_sid})
    client.sadd(LOGS_KEY, log_id)
    return {"events": count, "months": len(year_months), "copy_s": round(loaded, 1),
            "copy_rows_per_s": round(count / loaded), "first_ms": start, "step_ms": step}


def _timed(fn: Any, times: int) -> dict[str, float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
            "max_ms": round(samples[-1], 2), "runs": times}


def reads(client: redis.Redis, archive: ArchiveStore, log_id: str, chain: dict[str, Any], pages: int,
          csv_rows: int) -> dict[str, Any]:
    from sidecar.api.security import _csv

    audit_log = AuditLog(client, 400, archived=True)
    assert client.xlen(stream_key(log_id)) == 0

    def page(filters: Filters, before: str | None = None, expected: int = LIMIT + 1) -> list[dict[str, Any]]:
        events = list(islice(newest_first(audit_log, archive, log_id, before=before, oldest_ms=None, filters=filters,
                                          matches=lambda e: True, scan_budget=20_000, page=LIMIT + 1), LIMIT + 1))
        assert len(events) == min(LIMIT + 1, expected), len(events)
        return events

    rng = random.Random(7)
    count, first, step = chain["events"], chain["first_ms"], chain["step_ms"]

    def deep() -> None:
        i = rng.randrange(1000, count // 10)
        page(Filters(), before=f"{first + i * step}-0")

    out: dict[str, Any] = {"load_before": _load()}
    out.update({"first_page": _timed(lambda: page(Filters()), pages),
                "first_page_by_employee": _timed(
                    lambda: page(Filters(employee=f"emp-{rng.randrange(1000):05d}"), expected=count // 1000), pages),
                "first_page_by_location": _timed(
                    lambda: page(Filters(location=f"loc-{rng.randrange(50):04d}"), expected=count // 50), pages),
                "deep_cursor_page": _timed(deep, pages),
                "load_after_pages": _load()})
    started = time.perf_counter()
    rows = 0
    for chunk in _csv(islice(newest_first(audit_log, archive, log_id, before=None, oldest_ms=None, filters=Filters(),
                                          matches=lambda e: True, scan_budget=None), csv_rows)):
        rows += chunk.count("\n")
    elapsed = time.perf_counter() - started
    out["csv_export"] = {"rows": rows - 1, "seconds": round(elapsed, 2), "rows_per_s": round((rows - 1) / elapsed),
                         "load_after": _load()}
    return out


def archiving_while_checking(root: Path, redis_url: str, database_url: str, backlog: int,
                             seconds: float, rounds_per_phase: int = 3) -> dict[str, Any]:
    """Checks/s alone, then while the archiver thread moves a backlog in the same process."""
    from bench.audit_overhead import _bodies, _seed
    from sidecar.app import create_app
    from sidecar.config import Settings
    from sidecar.tokens import SCOPES, TokenFile

    settings = Settings(data_dir=root / "data", policy_dir=REPO / "policies", tokens_file=root / "tokens.json",
                        log_format="json", audit_database_url=database_url, audit_hot_s=30 * 86400)
    token = TokenFile(settings.tokens_path).create("bench", list(SCOPES))
    app = create_app(settings, redis_url=redis_url)  # its archiver moves nothing younger than 30 days
    runtime = app.extensions["sidecar"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    _seed(client, token)
    now = int(time.time() * 1000)
    for start in range(0, backlog, 200):  # the backlog: events already old enough to move (hot_s = 0)
        runtime.audit_log.append_many([("c:ch-1", realistic_event(i, now, "ch-1"))
                                       for i in range(start, min(start + 200, backlog))])
    bodies = _bodies(5000)

    def checks_for(duration: float) -> float:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < duration:
            for body in bodies[:500]:
                assert client.post("/v1/check", json=body, headers=headers).status_code == 200
            done += 500
        return done / (time.perf_counter() - started)

    checks_for(2)  # warm up
    archiver = runtime.archiver
    assert archiver is not None
    archiver.stop()
    archiver.hot_s, archiver.every_s, archiver.max_batches = 0, 0.05, 10**9
    alone: list[float] = []
    phases: dict[str, Any] = {}
    # Rounds alternate (alone, then with the archiver) and the best of each is compared: this
    # shared machine's load moves more between runs than a small cost does.
    for name, duty in (("default_duty", archiver.duty), ("full_speed", 1.0)):
        rounds: list[float] = []
        moved, elapsed = 0, 0.0
        for _ in range(rounds_per_phase):
            alone.append(checks_for(seconds))
            archiver.duty = duty
            before = int(runtime.audit_log.meta("c:ch-1").get("archived", "0"))
            started = time.perf_counter()
            archiver.start()  # its first pass starts at once
            rounds.append(checks_for(seconds))
            archiver.stop()
            elapsed += time.perf_counter() - started
            moved += int(runtime.audit_log.meta("c:ch-1").get("archived", "0")) - before
        phases[name] = {"duty": duty, "checks_per_s_rounds": [round(r) for r in rounds],
                        "archived_per_s": round(moved / elapsed),
                        "backlog_left_at_end": runtime.redis.xlen(stream_key("c:ch-1"))}
    best_alone = max(alone)
    for phase in phases.values():
        phase["cost_percent_best_vs_best"] = round(100 * (1 - max(phase["checks_per_s_rounds"]) / best_alone), 1)
    phases["checks_per_s_alone_rounds"] = [round(r) for r in alone]
    runtime.stop()
    return {"backlog": backlog, "seconds": seconds, **phases,
            "note": "in process, Flask test client, one thread; the archiver thread shares the GIL"}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    parser.add_argument("--memory-events", type=int, default=20_000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--move-events", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["memory", "big", "checks"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sidecar-archive-bench-"))
    result: dict[str, Any] = {"load_at_start": _load(), "cpus": os.cpu_count(), "args": vars(args)}
    redis_server = RedisServer(root / "redis").start()
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="sidecar-archive-bench-pg-")),
                              extra=("-c", "shared_buffers=256MB", "-c", "max_wal_size=8GB",
                                     "-c", "checkpoint_timeout=30min")).start()
    try:
        client = redis.Redis.from_url(redis_server.url)
        url = cluster.url(cluster.create_database())
        archive = ArchiveStore(url)
        if "memory" not in args.skip:
            result["memory"] = memory_per_event(client, archive, args.memory_events)
            result["memory"]["load_after"] = _load()
            print(json.dumps(result["memory"], indent=1), flush=True)
        if "checks" not in args.skip:
            result["archiving_while_checking"] = archiving_while_checking(
                root, redis_server.url, url, args.move_events, args.seconds)
            result["archiving_while_checking"]["load_after"] = _load()
            print(json.dumps(result["archiving_while_checking"], indent=1), flush=True)
        if "big" not in args.skip:
            chain = generate_chain(url, archive, client, "c:big", args.events, args.months)
            result["big_chain"] = {k: v for k, v in chain.items() if not k.endswith("_ms")}
            result["big_chain"]["load_after"] = _load()
            print(json.dumps(result["big_chain"], indent=1), flush=True)
            size = archive.size()
            result["big_chain"].update(pg_table_bytes_per_event=round(size["table_bytes"] / size["rows"]),
                                       pg_index_bytes_per_event=round(size["index_bytes"] / size["rows"]),
                                       pg_total_gb=round((size["table_bytes"] + size["index_bytes"]) / 2**30, 2))
            result["reads"] = reads(client, archive, "c:big", chain, args.pages, min(args.csv_rows, args.events))
            print(json.dumps(result["reads"], indent=1), flush=True)
        archive.close()
        client.close()
    finally:
        cluster.stop()
        redis_server.stop()
    shutil.rmtree(root, ignore_errors=True)
    result["load_at_end"] = _load()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"archive-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
