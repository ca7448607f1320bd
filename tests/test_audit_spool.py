"""Nothing acknowledged is lost: a Redis outage, a replay without duplicates, a worker killed mid-load."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sidecar.app import create_app
from sidecar.audit.events import new_event
from sidecar.config import ConfigError, Settings
from sidecar.runtime import Runtime
from sidecar.store.redis_server import RedisServer
from tests.audit_support import audit_log, read_log, report, seed
from tests.conftest import Api, make_settings, make_tokens, wait_until

REPO = Path(__file__).resolve().parent.parent


def chain_intact(url: str) -> bool:
    with redis.Redis.from_url(url) as client:
        return audit_log(client).verify("c:ch-1").intact


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and start; every write fsync'd so a kill loses nothing."""
    server = RedisServer(tmp_path / "redis").start()
    with redis.Redis.from_url(server.url) as client:
        client.config_set("appendfsync", "always")
    yield server
    server.stop()


@pytest.fixture
def outage_api(tmp_path: Path, own_redis: RedisServer) -> Iterator[Api]:
    settings = make_settings(tmp_path / "data")
    app = create_app(settings, redis_url=own_redis.url)
    yield Api(app, make_tokens(settings))
    app.extensions["sidecar"].stop()


def test_decisions_go_on_and_events_are_spooled_while_redis_is_down(outage_api, own_redis) -> None:
    seed(outage_api)
    outage_api.check("e-1", "l-1", "client:delete")  # the replica now holds ch-1
    own_redis.kill()
    assert outage_api.check("e-1", "l-1", "appointment:delete")["allowed"] is True
    assert report(outage_api, request_id="during-outage").status_code == 202
    auditor = outage_api.app.extensions["sidecar"].auditor
    assert auditor.spool.has_records()


@pytest.mark.e2e  # kills and restarts a real redis-server
def test_spooled_events_are_replayed_in_order_without_duplicates(outage_api, own_redis) -> None:
    seed(outage_api)
    outage_api.check("e-1", "l-1", "client:delete")
    own_redis.kill()
    acked = [report(outage_api, request_id=f"r{i}").get_json()["id"] for i in range(10)]
    own_redis.start()
    auditor = outage_api.app.extensions["sidecar"].auditor
    auditor.replay_now()
    auditor.replay_now()  # a second pass finds nothing new to add
    ids = [e["id"] for e in read_log(own_redis.url, "c:ch-1")]
    assert [i for i in ids if i in set(acked)] == acked
    assert len(ids) == len(set(ids))
    assert chain_intact(own_redis.url)
    assert not auditor.spool.has_records()


@pytest.mark.e2e  # kills and restarts a real redis-server
def test_after_redis_returns_new_events_queue_behind_the_spooled_ones(outage_api, own_redis) -> None:
    seed(outage_api)
    own_redis.kill()
    early = report(outage_api, request_id="early").get_json()["id"]
    own_redis.start()
    late = report(outage_api, request_id="late").get_json()["id"]
    outage_api.app.extensions["sidecar"].auditor.replay_now()
    ids = [e["id"] for e in read_log(own_redis.url, "c:ch-1")]
    assert ids.index(early) < ids.index(late)


def test_an_event_redis_already_holds_is_not_appended_again_on_replay(outage_api, own_redis) -> None:
    seed(outage_api)
    auditor = outage_api.app.extensions["sidecar"].auditor
    event = new_event(category="login", action="login", outcome="success", employee="e-1", location="l-1",
                            chain="ch-1", object=None, device=None, ip=None, request_id=None, details=None)
    auditor.store.append_many([("c:ch-1", event)])
    auditor.spool.append({"log": "c:ch-1", "event": event})  # Redis took it but the reply was lost
    auditor.replay_now()
    assert [e["id"] for e in read_log(own_redis.url, "c:ch-1")].count(event["id"]) == 1


def test_a_reported_event_is_503_when_neither_redis_nor_the_spool_takes_it(outage_api, own_redis) -> None:
    seed(outage_api)
    runtime = outage_api.app.extensions["sidecar"]
    spool_dir = runtime.settings.data_dir / "audit-spool"
    assert not spool_dir.exists()  # nothing was ever spooled
    spool_dir.write_text("a file where the spool directory should be")
    own_redis.kill()
    response = report(outage_api)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"


def kill_after(script: str, prefix: str, count: int) -> list[str]:
    """Run ``script`` in a process, collect the ids it reports after ``prefix``, SIGKILL it at ``count``."""
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        assert worker.stderr is not None
        for line in worker.stderr:
            if line.startswith(prefix):
                seen.append(line.split()[1])
            if len(seen) >= count:
                break
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
        if worker.stderr is not None:
            worker.stderr.close()
    return seen


@pytest.mark.e2e
def test_a_new_process_replays_the_spool_a_killed_one_left(tmp_path, own_redis) -> None:
    data = tmp_path / "data"
    own_redis.kill()
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from sidecar import logs
        from sidecar.runtime import Runtime
        from tests.conftest import make_settings
        logs.configure("json")
        runtime = Runtime(make_settings(Path({str(data)!r})), {own_redis.url!r})
        n = 0
        while True:
            event_id = runtime.auditor.emit(category="login", action="login", outcome="success",
                                  employee="e-1", chain="ch-1", details={{"n": n}})
            sys.stderr.write("ACK " + event_id + "\\n")
            sys.stderr.flush()
            n += 1
    """)
    acked = kill_after(script, "ACK ", 300)
    assert len(acked) == 300, "the worker stopped before it acknowledged 300 events"
    own_redis.start()
    runtime = Runtime(make_settings(data), own_redis.url)
    try:
        runtime.auditor.replay_now()
        ids = [e["id"] for e in read_log(own_redis.url, "c:ch-1")]
        assert [i for i in ids if i in set(acked)] == acked
        assert len(ids) == len(set(ids))
        assert chain_intact(own_redis.url)
    finally:
        runtime.stop()


@pytest.mark.e2e
def test_check_events_of_a_worker_killed_right_after_answering_are_shipped_by_a_later_process(
        tmp_path, outage_api, own_redis, capsys) -> None:
    seed(outage_api)  # the directory is in Redis; the worker below has a data directory of its own
    data = tmp_path / "worker-data"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from sidecar.app import create_app
        from tests.conftest import Api, make_settings, make_tokens
        settings = make_settings(Path({str(data)!r}))
        # As if the worker died before its shipper thread ran: its check events are only journaled.
        app = create_app(settings, redis_url={own_redis.url!r}, start=False)
        api = Api(app, make_tokens(settings))
        while True:
            answer = api.check("e-1", "l-1", "client:delete")
            sys.stderr.write("ANSWERED " + answer["decision_id"] + "\\n")
            sys.stderr.flush()
    """)
    answered = kill_after(script, "ANSWERED ", 300)
    assert len(answered) == 300, "the worker stopped before it answered 300 checks"
    assert [e for e in read_log(own_redis.url, "c:ch-1") if e["details"].get("decision_id")] == []

    later = create_app(make_settings(data), redis_url=own_redis.url)  # replays the orphaned file on start
    try:
        def shipped_ids() -> list[str]:
            return [e["details"]["decision_id"] for e in read_log(own_redis.url, "c:ch-1")
                    if e["details"].get("decision_id")]

        assert wait_until(lambda: set(answered) <= set(shipped_ids()))
        shipped = shipped_ids()
        assert [d for d in shipped if d in set(answered)] == answered  # none lost, in order
        assert len(shipped) == len(set(shipped))
        assert chain_intact(own_redis.url)
        # The dead worker may not have written their log lines (its shipper writes them): the
        # replaying process does, marked as replayed.
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"audit"' in line]
        replayed = {line["details"]["decision_id"] for line in lines
                    if line["event"] == "audit" and line.get("replayed") and line["stored_in"] == "redis"}
        assert set(answered) <= replayed
    finally:
        later.extensions["sidecar"].stop()


def test_ship_own_sends_what_was_pending_at_the_call_and_leaves_what_arrives_meanwhile(tmp_path) -> None:
    """The shipper ships once per interval: records journaled while Redis answers one batch wait
    for its next round (before, they were chased at once, in batches of one or two, each with an
    fsync of Redis: under load most batches were that small)."""
    from sidecar.store.spool import Spool

    spool = Spool(tmp_path / "spool")
    spool.append_many([{"n": n} for n in range(5)], sync=False)
    shipped: list[list[int]] = []

    def sink(records: list[dict]) -> None:
        shipped.append([r["n"] for r in records])
        if len(shipped) <= 3:
            spool.append({"n": 100 + len(shipped)}, sync=False)  # arrives while the batch is in Redis

    assert spool.ship_own(sink, batch=2) == 5
    assert shipped == [[0, 1], [2, 3], [4]]
    assert spool.pending() == 3
    assert spool.ship_own(sink) == 3
    assert shipped[-1] == [101, 102, 103]
    spool.close()


def test_flush_ships_until_nothing_is_pending(outage_api) -> None:
    """flush() and stop() drain: what arrives while a batch is in Redis goes too."""
    seed(outage_api)
    auditor = outage_api.app.extensions["sidecar"].auditor
    event = new_event(category="login", action="login", outcome="success", employee="e-1", location="l-1",
                      chain="ch-1", object=None, device=None, ip=None, request_id=None, details=None)
    auditor.journal("c:ch-1", [event])
    original = auditor.store.append_many  # the audit log a batch goes to: journal more as each lands
    extra: list[str] = []

    def ship_and_journal(items: list) -> list:
        appended = original(items)
        if len(extra) < 3:
            late = new_event(category="login", action="login", outcome="success", employee="e-1",
                             location="l-1", chain="ch-1", object=None, device=None, ip=None, request_id=None,
                             details={"late": len(extra)})
            extra.append(late["id"])
            auditor.journal("c:ch-1", [late])
        return appended

    auditor.store.append_many = ship_and_journal  # type: ignore[method-assign]
    auditor.flush()
    assert auditor.spool.pending() == 0
    ids = {e["id"] for e in read_log(outage_api.app.extensions["sidecar"].redis_url, "c:ch-1")}
    assert {event["id"], *extra} <= ids


def test_the_ship_interval_is_a_setting_from_0_to_5_seconds() -> None:
    assert Settings.from_env({}).audit_ship_interval_s == 0.2
    assert Settings.from_env({"SIDECAR_AUDIT_SHIP_INTERVAL_S": "0"}).audit_ship_interval_s == 0
    assert Settings.from_env({"SIDECAR_AUDIT_SHIP_INTERVAL_S": "0.05"}).audit_ship_interval_s == 0.05
    for bad, why in (("6", "at most 5"), ("-1", "at least 0"), ("soon", "not a number")):
        with pytest.raises(ConfigError, match=why):
            Settings.from_env({"SIDECAR_AUDIT_SHIP_INTERVAL_S": bad})


def test_events_journaled_after_a_shipped_batch_go_together_in_the_next(tmp_path: Path,
                                                                         own_redis: RedisServer) -> None:
    """What the interval decides is how events are grouped, asserted by batch membership: the
    next round comes only after the interval (configured beyond the test here, so the next
    round is the one stop() makes), and the events journaled meanwhile form one batch."""
    app = create_app(make_settings(tmp_path / "data", audit_ship_interval_s=3600), redis_url=own_redis.url)
    api = Api(app, make_tokens(app.extensions["sidecar"].settings))
    runtime = app.extensions["sidecar"]
    try:
        seed(api)
        batches: list[list[str]] = []
        append_many = runtime.auditor.store.append_many

        def recorded(items: list) -> list:
            batches.append([event["details"]["decision_id"] for _, event in items])
            return append_many(items)

        runtime.auditor.store.append_many = recorded  # type: ignore[method-assign]
        first = api.check("e-1", "l-1", "client:delete")["decision_id"]
        assert wait_until(lambda: batches == [[first]])  # the first round ships it
        later = [api.check("e-1", "l-1", "client:delete")["decision_id"] for _ in range(3)]
        assert runtime.auditor.spool.pending() == 3
    finally:
        runtime.stop()
    assert batches == [[first], later]


def replayed_by_another(directory: Path) -> list[dict]:
    """What a replaying process hands to its sink from the files in ``directory``."""
    from sidecar.store.spool import Spool

    records: list[dict] = []
    Spool(directory).replay(records.extend)
    return records


def test_records_that_outgrow_the_file_move_to_a_larger_one_in_order(tmp_path, monkeypatch) -> None:
    from sidecar.store import spool as spool_module

    monkeypatch.setattr(spool_module, "FILE_BYTES", 4096)
    spool = spool_module.Spool(tmp_path / "spool")
    for n in range(200):  # ~30 bytes each, about 6 KB: Redis away, nothing shipped
        spool.append({"n": n, "pad": "x" * 16}, sync=n % 50 == 0)
    assert spool.pending() == 200
    [path] = spool.files()
    assert path.stat().st_size > 4096  # the first file was full: a larger one took over
    spool.close()  # its records stay for a replay
    assert [r["n"] for r in replayed_by_another(tmp_path / "spool")] == list(range(200))


def test_a_record_cut_short_by_a_kill_is_dropped_and_shipped_ones_are_zeroed(tmp_path) -> None:
    from sidecar.store.spool import Spool

    spool = Spool(tmp_path / "spool")
    spool.append_many([{"n": 1, "pad": "x" * 40}, {"n": 2, "pad": "y" * 40}], sync=False)
    assert spool.ship_own(lambda records: None) == 2
    assert not spool.has_records()  # the file keeps its size; what it held is zeros now
    spool.append({"n": 3}, sync=False)  # shorter than what was there: written over zeros
    assert spool._map is not None
    torn = b'{"n":4'  # a copy the process did not finish: no newline, zeros after it
    spool._map[spool._size:spool._size + len(torn)] = torn
    spool.close()
    assert replayed_by_another(tmp_path / "spool") == [{"n": 3}]


def test_a_full_disk_refuses_the_journal_and_the_event_goes_to_redis_directly(outage_api, monkeypatch) -> None:
    """The spool reserves its file's blocks first, so a full disk is an OSError there (never a
    SIGBUS in the mapping); the check's event then takes the slower path, straight to Redis."""
    from sidecar.store.spool import Spool

    def disk_full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    seed(outage_api)
    monkeypatch.setattr(os, "posix_fallocate", disk_full)
    runtime = outage_api.app.extensions["sidecar"]
    spool = Spool(runtime.settings.data_dir / "full")
    with pytest.raises(OSError):
        spool.append({"n": 1}, sync=False)
    assert spool.files() == [] and spool.pending() == 0  # no file left half made
    decision = outage_api.check("e-1", "l-1", "client:delete")["decision_id"]
    logged = [e["details"].get("decision_id") for e in read_log(runtime.redis_url, "c:ch-1")]
    assert decision in logged  # in Redis when the check answered, not after a shipping round
