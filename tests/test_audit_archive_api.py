"""The Security section, the CSV export and the CLI over Redis and the PostgreSQL archive together."""

from __future__ import annotations

import csv
import io
import time

import psycopg
import pytest

from sidecar.cli import main
from sidecar.store.audit_log import stream_key
from tests.audit_support import report, seed
from tests.conftest import Api, make_settings, make_tokens, wait_until

CHAIN_ROUTE = "/v1/chains/ch-1/security-events"
LOCATION_ROUTE = "/v1/locations/l-1/security-events"
LOOKS = ("security_log:read", "security_log:export")


def look(api, route: str, **args):
    query = "&".join(f"{k}={v}" for k, v in args.items())
    return api.get(f"{route}?{query}", scope="security")


def pages(api, route: str, limit: int, **args) -> list[dict]:
    """Every event of the route, paged by cursor, without the looks this paging itself added."""
    seen, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        body = look(api, route, viewer="boss", limit=limit, **args, **extra).get_json()
        seen += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            return [e for e in seen if e["action"] not in LOOKS]


WEEK_AND_A_DAY_MS = 8 * 86_400_000


@pytest.fixture
def archived(tmp_path, app_factory, postgres_url, redis_client):
    """Seeded, 40 reported events, every event so far archived, then 12 more that stay in Redis.

    The app's archiver thread moves only events older than 7 days (none); the test moves them by
    running a pass as if a week and a day had passed.
    """
    settings = make_settings(tmp_path, audit_database_url=postgres_url)
    app = app_factory(settings)
    api = Api(app, make_tokens(settings))
    seed(api)
    employees, actions = ("e-1", "sec", "idle"), ("login", "clients.export_finished", "client.deleted")
    for i in range(40):
        assert report(api, employee=employees[i % 3], action=actions[i % 3],
                      location="l-1" if i % 2 else "l-2").status_code == 202
    runtime = app.extensions["sidecar"]
    runtime.archiver.duty = 1.0  # no rests between batches in a test
    done = runtime.archiver.run_once(now_ms=int(time.time() * 1000) + WEEK_AND_A_DAY_MS, lease_wait_s=30)
    assert done.moved >= 40 and redis_client.xlen(stream_key("c:ch-1")) == 0
    for i in range(12):
        report(api, employee=employees[i % 3], action=actions[i % 3], location="l-1" if i % 2 else "l-2")
    return api, runtime


def test_pages_cross_from_redis_into_the_archive_without_a_gap_or_a_repeat(archived, redis_client):
    api, runtime = archived
    expected = [e for e in (list(runtime.audit_log.newest_first("c:ch-1"))
                            + list(runtime.audit_archive.newest_first("c:ch-1"))) if e["action"] not in LOOKS]
    assert len(expected) > 52
    for limit in (5, 7, 100):
        got = pages(api, CHAIN_ROUTE, limit)
        assert [e["id"] for e in got] == [e["id"] for e in expected], limit
        assert [e["hash"] for e in got] == [e["hash"] for e in expected]
    hot = redis_client.xlen(stream_key("c:ch-1"))
    assert 12 <= hot < len(expected)


@pytest.mark.parametrize("name", ["category", "employee", "action", "since", "until", "since_and_until"])
def test_every_filter_answers_from_both_stores(archived, name):
    api, _ = archived
    everything = pages(api, CHAIN_ROUTE, 500)
    middle = everything[len(everything) // 2]["time"]
    oldest = everything[-1]["time"]
    cases = {
        "category": ({"category": "export"}, lambda e: e["category"] == "export"),
        "employee": ({"employee": "sec"}, lambda e: e["employee"] == "sec"),
        "action": ({"action": "client.deleted"}, lambda e: e["action"] == "client.deleted"),
        "since": ({"since": middle}, lambda e: e["time"] >= middle),
        "until": ({"until": middle}, lambda e: e["time"] <= middle),
        "since_and_until": ({"since": oldest, "until": middle}, lambda e: oldest <= e["time"] <= middle),
    }
    args, keep = cases[name]
    expected = [e["id"] for e in everything if keep(e)]
    assert expected
    assert [e["id"] for e in pages(api, CHAIN_ROUTE, 4, **args)] == expected


def test_the_location_route_and_the_csv_export_read_both_stores(archived):
    api, _ = archived
    everything = pages(api, CHAIN_ROUTE, 500)
    at_l1 = [e["id"] for e in everything if e["location"] == "l-1"]
    assert [e["id"] for e in pages(api, LOCATION_ROUTE, 6)] == at_l1
    response = look(api, CHAIN_ROUTE, viewer="boss", format="csv", mfa="1")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["id"] for r in rows if r["action"] not in LOOKS] == [e["id"] for e in everything]


def test_postgres_unreachable_hot_pages_answer_archived_pages_are_503(archived, tmp_path, app_factory):
    api, _ = archived
    down = make_settings(tmp_path / "down", audit_database_url=f"postgresql://postgres@/x?host={tmp_path}/none")
    down_api = Api(app_factory(down), make_tokens(down))
    first = look(down_api, CHAIN_ROUTE, viewer="boss", limit=5)
    assert first.status_code == 200 and len(first.get_json()["events"]) == 5  # the newest are in Redis
    deep = look(down_api, CHAIN_ROUTE, viewer="boss", limit=100)
    assert deep.status_code == 503 and deep.get_json()["error"]["code"] == "archive_unavailable"
    export = look(down_api, CHAIN_ROUTE, viewer="boss", format="csv", mfa="1")
    assert export.status_code == 503 and export.get_json()["error"]["code"] == "archive_unavailable"
    # the archiver thread's first check of PostgreSQL
    assert wait_until(lambda: down_api.get("/readyz").get_json()["audit_archive"]["state"] == "unreachable",
                      timeout_s=30)
    ready = down_api.get("/readyz")
    assert ready.status_code == 200  # decisions never wait for the archive
    assert "sidecar_audit_archive_up 0.0" in down_api.get("/metrics").get_data(as_text=True)
    assert report(down_api).status_code == 202  # events are still recorded (in Redis)
    assert look(api, CHAIN_ROUTE, viewer="boss", limit=100).status_code == 200  # the other app's archive answers


def test_readyz_says_off_without_an_archive(api):
    assert api.get("/readyz").get_json()["audit_archive"] == {"state": "off"}


def test_the_cli_archives_by_hand_and_verifies_across_both_stores(archived, postgres_url, redis_url, redis_client,
                                                                  monkeypatch, capsys):
    _, runtime = archived
    monkeypatch.setenv("SIDECAR_REDIS_URL", redis_url)
    monkeypatch.setenv("SIDECAR_AUDIT_DATABASE_URL", postgres_url)
    monkeypatch.setenv("SIDECAR_POLICY_DIR", str(runtime.settings.policy_dir))
    assert main(["audit", "verify", "--chain", "ch-1"]) == 0
    total = runtime.audit_archive.count("c:ch-1") + redis_client.xlen(stream_key("c:ch-1"))
    assert f"c:ch-1: intact, {total} events" in capsys.readouterr().out
    monkeypatch.setenv("SIDECAR_AUDIT_HOT_S", "0")
    assert main(["audit", "archive"]) == 0
    assert "archived" in capsys.readouterr().out and redis_client.xlen(stream_key("c:ch-1")) == 0
    assert main(["audit", "verify", "--location", "l-2"]) == 0
    assert f"intact, {total} events" in capsys.readouterr().out
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # someone with database access deletes a row
        # one of the chain's (ids are random: the smallest of all may be another log's)
        conn.execute("DELETE FROM sidecar_audit_events WHERE id = "
                     "(SELECT min(id) FROM sidecar_audit_events WHERE log = 'c:ch-1')")
    assert main(["audit", "verify", "--chain", "ch-1"]) == 1
    assert "BROKEN" in capsys.readouterr().out
    monkeypatch.delenv("SIDECAR_AUDIT_DATABASE_URL")
    assert main(["audit", "archive"]) == 2


AWKWARD = [  # every kind of cell the writer treats differently: formulas, quotes, separators, line breaks,
    # numbers and booleans, empty and absent values, unicode, nested details with floats
    {"action": "clients.export_finished", "object": {"type": "=HYPERLINK(1)", "id": 7},
     "device": {"id": "-1", "name": 'front "desk", left\nside', "platform": True, "user_agent": "\tUA"},
     "ip": "@10.0.0.1", "request_id": "+r-1", "details": {"b": [1, 2.5, None, "x,y"], "a": {"é": "\r\n", "n": -3}}},
    {"action": "login", "object": {"type": "", "id": False}, "device": {"id": "d", "name": "Ünïcødé ✓"},
     "details": {"rows": 10**15, "ratio": 1e-7, "big": 1.5e300, "text": '"quoted"'}},
    {"action": "client.deleted", "employee": "-e", "object": None, "device": None, "details": None},
    {"action": "-minus", "location": "l-2", "object": {"type": "client", "id": "@home"}, "details": {}},
]


def test_archived_events_export_byte_for_byte_as_they_did_from_redis(tmp_path, app_factory, postgres_url,
                                                                      redis_client):
    """The CSV of the same events read from Redis, half archived, and all archived: the same bytes."""
    settings = make_settings(tmp_path, audit_database_url=postgres_url)
    app = app_factory(settings)
    api = Api(app, make_tokens(settings))
    seed(api)
    runtime = app.extensions["sidecar"]
    runtime.archiver.duty = 1.0

    def export(employee: str) -> bytes:  # the viewer's own looks are boss's events: filtered out
        response = look(api, CHAIN_ROUTE, viewer="boss", format="csv", mfa="1", employee=employee)
        assert response.status_code == 200
        return response.get_data()

    for spec in AWKWARD * 3:
        assert report(api, **spec).status_code == 202
    time.sleep(0.01)
    split_ms = int(time.time() * 1000)
    time.sleep(0.01)
    for spec in AWKWARD * 2:
        assert report(api, **spec).status_code == 202
    hot = {employee: export(employee) for employee in ("e-1", "-e")}
    rows = list(csv.reader(io.StringIO(hot["e-1"].decode())))
    assert [row[6] for row in rows].count("clients.export_finished") == 5
    assert "'=HYPERLINK(1)" in [row[8] for row in rows] and len(list(csv.reader(io.StringIO(hot["-e"].decode())))) == 6

    week_ms = runtime.archiver.hot_s * 1000
    runtime.archiver.run_once(now_ms=split_ms + week_ms, lease_wait_s=30)  # the first three rounds move
    assert redis_client.xlen(stream_key("c:ch-1")) > 0 and runtime.audit_archive.count("c:ch-1") >= 12
    assert {employee: export(employee) for employee in hot} == hot

    runtime.archiver.run_once(now_ms=int(time.time() * 1000) + week_ms, lease_wait_s=30)
    assert redis_client.xlen(stream_key("c:ch-1")) == 0
    assert {employee: export(employee) for employee in hot} == hot
