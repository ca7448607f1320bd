"""Seats benchmark: one command, prints the numbers as JSON lines and a small table.

``python -m bench.seats [--rounds 30] [--changes 10000]``

1. The ``billing`` preset of :mod:`bench.directory_gen` (one chain, 50 locations, 2,000
   employees) is imported into a private Redis (:class:`RedisServer` in a temporary directory).
2. Seats of the chain, in process through the replica's engine: the first count (cold: the
   engine computes every member's rights), then warm counts (the engine's rights cache is
   full); and all 51 scopes at once (what the seat recorder does after each write), plus the
   recorder's Redis round trip when nothing changed.
3. History: 10,000 paid-status changes spread over January 2026 recorded with
   ``SeatHistory.record`` in l-1's history, then ``history()`` of that month (``XRANGE`` +
   parsing), warm.
4. Both through Flask's test client (``GET /v1/billing/seats?chain=ch-1`` and
   ``GET /v1/billing/seats/history?location=l-1&since=&until=``: token, catch-up, JSON), warm.

Targets (issue #4): seats of the chain under 50 ms warm; a month of 10,000 changes under 200 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.directory_gen import PRESETS, generate, write_jsonl
from sidecar.app import create_app
from sidecar.config import Settings
from sidecar.policy.bundle import load_bundle
from sidecar.policy.seats import Scope, Seat, SeatCounter, Seats, count_seats
from sidecar.store.connection import connect
from sidecar.store.directory import DirectoryStore
from sidecar.store.importer import import_lines
from sidecar.store.redis_server import RedisServer
from sidecar.store.replica import Replica
from sidecar.store.seat_history import SeatHistory
from sidecar.tokens import TokenFile

REPO = Path(__file__).resolve().parent.parent
CHAIN = Scope("chain", "ch-1")
DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # the history's month: January 2026
MONTH = ("2026-01-01T00:00:00Z", "2026-01-30T23:59:59.999Z")


def timed(body: Callable[[], Any], rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        body()
        samples.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2), "rounds": rounds}


def once(body: Callable[[], Any]) -> float:
    started = time.perf_counter()
    body()
    return round((time.perf_counter() - started) * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--changes", type=int, default=10_000)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="seats-bench-") as tmp:
        server = RedisServer(Path(tmp) / "redis", appendonly=False).start()
        try:
            bundle = load_bundle(REPO / "policies")
            client = connect(server.url, timeout_s=30)
            store = DirectoryStore(client, lambda: bundle)
            jsonl = io.StringIO()
            counts = write_jsonl(generate(PRESETS["billing"]), jsonl)
            results["import_ms"] = once(lambda: import_lines(store, bundle, jsonl.getvalue().splitlines()))
            results["directory"] = dict(counts)

            replica = Replica(store, lambda: bundle, server.url)
            engine = replica.engine("c:ch-1")
            results["seats_chain_cold_ms"] = once(lambda: count_seats(engine, CHAIN, "announced"))
            answer = count_seats(engine, CHAIN, "announced")
            results["paid_free"] = [answer.paid_seats, answer.free_seats]
            results["seats_chain_warm"] = timed(lambda: count_seats(engine, CHAIN, "announced"), args.rounds)
            results["seats_chain_writes_rule_warm"] = timed(lambda: count_seats(engine, CHAIN, "writes"), args.rounds)
            results["seats_all_51_scopes_warm"] = timed(lambda: SeatCounter(engine, "announced").count_all(),
                                                        args.rounds)
            history = SeatHistory(client)
            # first: January's history of l-1, older than the revision its seats are recorded at below
            results["history_month"] = _history(history, args.changes, args.rounds)
            all_scopes = SeatCounter(engine, "announced").count_all()
            history.record(all_scopes)
            results["recorder_no_change_redis"] = timed(lambda: history.record(all_scopes), args.rounds)

            results.update(_http(Path(tmp), server.url, args.rounds))
        finally:
            server.stop()
    for name, value in results.items():
        print(json.dumps({"measure": name, "value": value}))
    warm = results["seats_chain_warm"]["median_ms"]
    month = results["history_month"]["read"]["median_ms"]
    http_month = results["http_history_month_warm"]["median_ms"]
    print(f"\nseats of ch-1 (50 locations, 2,000 employees), warm: {warm} ms median (target < 50 ms)")
    print(f"history of a month with {args.changes} changes: {month} ms median in process, "
          f"{http_month} ms through HTTP (target < 200 ms)")
    return 0


def _http(tmp: Path, redis_url: str, rounds: int) -> dict[str, Any]:
    settings = Settings(data_dir=tmp, policy_dir=REPO / "policies", tokens_file=tmp / "tokens.json",
                        log_format="json")
    token = TokenFile(settings.tokens_path).create("bench", ["billing"])
    app = create_app(settings, redis_url=redis_url)
    try:
        http = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}

        def get(path: str) -> Callable[[], None]:
            def call() -> None:
                response = http.get(path, headers=headers)
                assert response.status_code == 200, response.get_data()
            return call

        seats, month = get("/v1/billing/seats?chain=ch-1"), get(
            f"/v1/billing/seats/history?location=l-1&since={MONTH[0]}&until={MONTH[1]}")
        seats()  # the app's own replica loads the tenant and computes its rights
        month()
        return {"http_seats_chain_warm": timed(seats, rounds), "http_history_month_warm": timed(month, rounds)}
    finally:
        app.extensions["sidecar"].stop()


def _history(history: SeatHistory, changes: int, rounds: int) -> dict[str, Any]:
    """``changes`` toggles of 200 employees' paid status, spread over 30 days, in l-1's history."""
    scope = Scope("location", "l-1")
    start = START_MS
    step = 30 * DAY_MS // changes
    people = [f"e-{i}" for i in range(200)]
    paid: set[str] = set()
    batch: list[Seats] = []

    def record_all() -> None:
        nonlocal batch
        for n in range(changes):
            person = people[n % len(people)] if n % 3 else people[(n * 7) % len(people)]
            paid.symmetric_difference_update({person})
            batch.append(Seats(scope, f"{start + n * step}-0", "announced",
                               tuple(Seat(e, True, ()) for e in sorted(paid))))
            if len(batch) == 500:
                history.record(batch)
                batch = []
        history.record(batch)

    record_ms = once(record_all)
    found = history.history(scope, start, start + 30 * DAY_MS)
    read = timed(lambda: history.history(scope, start, start + 30 * DAY_MS), rounds)
    return {"record_all_ms": record_ms, "changes_in_month": len(found.changes), "peak": found.peak_paid_seats,
            "read": read}


if __name__ == "__main__":
    raise SystemExit(main())
