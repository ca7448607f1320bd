"""Tamper evidence: the hash chain per log, `sidecar audit verify`, concurrent appenders, retention."""

from __future__ import annotations

import itertools
import threading
import time

import orjson
import pytest
import redis

from sidecar.audit.events import new_event
from sidecar.cli import main
from sidecar.store.audit_log import GENESIS, canonical, link, stream_key
from tests.audit_support import audit_log, read_log, seed
from tests.conftest import make_settings

LOG = "c:ch-1"


def fill(app, count: int) -> list[str]:
    runtime = app.extensions["sidecar"]
    return [runtime.auditor.emit(category="login", action="login", outcome="success", employee="e-1", location="l-1",
                       details={"n": n}) for n in range(count)]


def entries(client: redis.Redis) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return client.xrange(stream_key(LOG))


def rewrite(client: redis.Redis, new: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
    """What someone with write access to Redis could do: rebuild the stream with other content."""
    client.delete(stream_key(LOG))
    for stream_id, fields in new:
        client.xadd(stream_key(LOG), fields, id=stream_id)


def edit(fields: dict[bytes, bytes], **changes: object) -> dict[bytes, bytes]:
    body = {**orjson.loads(fields[b"e"]), **changes}
    return {**fields, b"e": orjson.dumps(body, option=orjson.OPT_SORT_KEYS)}


def test_an_untouched_log_verifies_with_its_count(app, api, redis_url, redis_client) -> None:
    seed(api)
    fill(app, 20)
    verdict = audit_log(redis_client).verify(LOG)
    assert verdict.intact
    assert verdict.count == len(read_log(redis_url, LOG))


def test_each_event_links_to_the_one_before(app, api, redis_url) -> None:
    seed(api)
    fill(app, 3)
    events = read_log(redis_url, LOG)
    assert events[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
    last = events[-1]
    assert last["hash"] == link(last["prev_hash"], canonical({k: v for k, v in last.items() if k != "_sid"}))


def _edit_content(old):
    return [old[0], old[1], (old[2][0], edit(old[2][1], outcome="failure")), *old[3:]]


def _edit_with_recomputed_hash(old):
    fields = edit(old[2][1], employee="someone-else")
    fields[b"h"] = link(fields[b"p"].decode(), fields[b"e"]).encode()
    return [old[0], old[1], (old[2][0], fields), *old[3:]]


def _delete(old):
    return [*old[:2], *old[3:]]


def _insert(old):
    forged = edit(old[2][1], id="forged")
    forged[b"p"] = old[2][1][b"h"]
    forged[b"h"] = link(forged[b"p"].decode(), forged[b"e"]).encode()
    ms, seq = old[2][0].decode().split("-")
    return [*old[:3], (f"{ms}-{int(seq) + 1}".encode() if old[3][0] != f"{ms}-{int(seq) + 1}".encode()
                       else old[2][0] + b"9", forged), *old[3:]]


def _reorder(old):
    return [old[0], old[1], (old[2][0], old[3][1]), (old[3][0], old[2][1]), *old[4:]]


def _delete_last(old):
    return old[:-1]


@pytest.mark.parametrize("tamper", [_edit_content, _edit_with_recomputed_hash, _delete, _insert, _reorder,
                                    _delete_last], ids=lambda f: f.__name__.strip("_"))
def test_verify_names_the_first_bad_event_after_tampering(app, api, redis_url, redis_client, tamper) -> None:
    seed(api)
    fill(app, 6)
    rewrite(redis_client, tamper(entries(redis_client)))
    verdict = audit_log(redis_client).verify(LOG)
    assert not verdict.intact
    assert verdict.problem


def test_appends_from_two_apps_on_one_redis_never_fork_the_chain(tmp_path, api, redis_url, redis_client,
                                                                  app_factory) -> None:
    seed(api)
    apps = [app_factory(make_settings(tmp_path / name)) for name in ("a", "b")]
    threads = [threading.Thread(target=fill, args=(app, 150)) for app in apps for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verdict = audit_log(redis_client).verify(LOG)
    assert verdict.intact
    assert len([e for e in read_log(redis_url, LOG) if e["action"] == "login"]) == 900


def test_replaying_an_event_twice_appends_it_once(app, api, redis_url, redis_client) -> None:
    seed(api)
    store = audit_log(redis_client)
    event = new_event(category="login", action="login", outcome="success", employee="e-1", location="l-1",
                            chain="ch-1", object=None, device=None, ip=None, request_id=None, details=None)
    (first,), (second,) = store.append_many([(LOG, event)]), store.append_many([(LOG, event)])
    assert first.added and not second.added
    assert [e["id"] for e in read_log(redis_url, LOG)].count(event["id"]) == 1


def test_a_batch_appends_each_run_of_one_log_in_order_and_skips_seen_ids(app, api, redis_url, redis_client) -> None:
    seed(api)
    store = audit_log(redis_client)

    def event(n: int) -> dict:
        return new_event(category="login", action="login", outcome="success", employee="e-1",
                               location="l-1", chain="ch-1", object=None, device=None, ip=None, request_id=None,
                               details={"n": n})

    first, second, third, other = event(1), event(2), event(3), event(4)
    store.append_many([(LOG, first)])
    results = store.append_many([(LOG, first), (LOG, second), ("l:l-9", other), (LOG, third), (LOG, second)])
    assert [r.added for r in results] == [False, True, True, True, False]
    logins = [e for e in read_log(redis_url, LOG) if e["action"] == "login"]
    assert [e["id"] for e in logins] == [first["id"], second["id"], third["id"]]
    assert logins[-1]["hash"] == results[3].hash
    assert store.verify(LOG).intact and store.verify("l:l-9").intact


def test_every_id_set_a_run_touches_expires_after_the_retention(app, api, redis_url, redis_client) -> None:
    """The id sets (one per day of the events' times) get their expiry once per run, each of them."""
    seed(api)
    store = audit_log(redis_client)

    def event(day: str, n: int) -> dict:
        made = new_event(category="login", action="login", outcome="success", employee="e-1", location="l-1",
                         chain="ch-1", object=None, device=None, ip=None, request_id=None, details={"n": n})
        return {**made, "time": f"{day}T10:00:00.000Z"}

    days = ["2026-06-01", "2026-06-02", "2026-06-02", "2026-06-01", "2026-06-03"]  # none is today (seed)
    store.append_many([(LOG, event(day, n)) for n, day in enumerate(days)])
    ttl = (400 + 2) * 86400
    for day in sorted(set(days)):
        key = f"sc:audit:{LOG}:ids:{day.replace('-', '')}"
        assert redis_client.scard(key) == days.count(day)
        assert ttl - 60 <= redis_client.ttl(key) <= ttl, key


def test_retention_trims_old_events_and_the_log_still_verifies(app, api, redis_url, redis_client) -> None:
    seed(api)
    fill(app, 10)
    store, held = audit_log(redis_client), len(read_log(redis_url, LOG))
    assert store.trim(LOG, int(time.time() * 1000) + 400 * 86_400_000 + 60_000) == held
    fill(app, 3)
    verdict = store.verify(LOG)
    assert (verdict.intact, verdict.count) == (True, 3)


@pytest.mark.parametrize("flag", [["--chain", "ch-1"], ["--location", "l-2"]])
def test_the_cli_exits_0_with_a_count_when_intact(app, api, redis_url, monkeypatch, capsys, flag) -> None:
    seed(api)
    fill(app, 4)
    monkeypatch.setenv("SIDECAR_REDIS_URL", redis_url)
    assert main(["audit", "verify", *flag]) == 0
    assert f"intact, {len(read_log(redis_url, LOG))} events" in capsys.readouterr().out


def test_the_cli_exits_non_zero_naming_the_bad_event(app, api, redis_url, redis_client, monkeypatch, capsys) -> None:
    seed(api)
    ids = fill(app, 4)
    old = entries(redis_client)
    victim = next(i for i, (_, f) in enumerate(old) if orjson.loads(f[b"e"])["id"] == ids[1])
    old[victim] = (old[victim][0], edit(old[victim][1], outcome="failure"))
    rewrite(redis_client, old)
    monkeypatch.setenv("SIDECAR_REDIS_URL", redis_url)
    assert main(["audit", "verify", "--chain", "ch-1"]) == 1
    assert ids[1] in capsys.readouterr().out
