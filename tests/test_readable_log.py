"""A readable Security section: display names as they were at the time; viewers' own page views hidden.

``exclude=`` is checked on the Redis log and across the PostgreSQL archive (the SQL path), on
the JSON pages and on the CSV export.
"""

from __future__ import annotations

import csv
import io
import time

import pytest

from sidecar.store.audit_archive import ArchiveStore, Entry, Filters
from sidecar.store.audit_log import stream_key
from tests.audit_support import read_log, report, seed, shipped
from tests.conftest import Api, make_settings, make_tokens

CHAIN_ROUTE = "/v1/chains/ch-1/security-events"
WEEK_AND_A_DAY_MS = 8 * 86_400_000


def events(api, path: str, **query) -> list[dict]:
    args = "&".join(f"{k}={v}" for k, v in {"viewer": "boss", **query}.items())
    answer = api.get(f"{path}?{args}", scope="security")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["events"]


def every_page(api, path: str, limit: int, **query) -> list[dict]:
    seen, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        args = "&".join(f"{k}={v}" for k, v in {"viewer": "boss", "limit": limit, **query, **extra}.items())
        body = api.get(f"{path}?{args}", scope="security").get_json()
        seen += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def csv_rows(api, path: str, **query) -> list[dict[str, str]]:
    args = "&".join(f"{k}={v}" for k, v in {"viewer": "boss", "format": "csv", "mfa": "1", **query}.items())
    answer = api.get(f"{path}?{args}", scope="security")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))


def test_events_carry_names_as_they_were_at_the_time(api, redis_url) -> None:
    seed(api)
    api.put("/v1/employees/e-1", {"active": True, "name": "Eva Stylist"})
    api.put("/v1/employees/sec", {"active": True, "name": "Sergei Security"})
    api.check("e-1", "l-1", "client:delete")  # a critical check: journaled with the name in memory
    assert report(api, action="login.password", outcome="success").status_code == 202
    written = api.put("/v1/locations/l-1/employees/e-1?actor=sec", {"roles": ["administrator"],
                                                                      "deny": ["discount:override"]})
    assert written.status_code == 200, written.get_json()
    renamed = api.put("/v1/employees/e-1", {"active": True, "name": "Eva Renamed"})  # changes nothing before
    shipped(api)
    log = read_log(redis_url, "c:ch-1")
    check = next(e for e in log if e["action"] == "client:delete")
    reported = next(e for e in log if e["action"] == "login.password")
    write = next(e for e in log if e["action"] == "membership:update")
    assert (check["employee"], check["employee_name"]) == ("e-1", "Eva Stylist")
    assert reported["employee_name"] == "Eva Stylist"
    assert (write["employee"], write["employee_name"]) == ("sec", "Sergei Security")  # the actor
    assert write["details"]["subject_name"] == "Eva Stylist"  # whose access changed
    rename = [e for e in log if e["action"] == "employee:update" and e["object"]["id"] == "e-1"][-1]
    assert rename["details"]["subject_name"] == "Eva Renamed"
    api.check("e-1", "l-1", "client:delete", min_revision=renamed.get_json()["revision"])  # the replica has it
    shipped(api)
    latest = events(api, "/v1/chains/ch-1/security-events", action="client:delete")
    assert [e["employee_name"] for e in latest] == ["Eva Renamed", "Eva Stylist"]
    rows = csv_rows(api, CHAIN_ROUTE, action="client:delete")
    assert [r["employee_name"] for r in rows] == ["Eva Renamed", "Eva Stylist"]
    assert list(rows[0])[-1] == "employee_name"  # the new column comes last: the others keep their places


def test_an_employee_without_a_name_has_null(api, redis_url) -> None:
    seed(api)
    report(api, action="clients.export_finished", outcome="success")
    (event,) = [e for e in read_log(redis_url, "c:ch-1") if e["action"] == "clients.export_finished"]
    assert event["employee"] == "e-1" and event["employee_name"] is None


def test_exclude_hides_the_viewers_own_page_views(api) -> None:
    seed(api)
    report(api, action="clients.export_finished", outcome="success")
    for _ in range(3):
        events(api, "/v1/locations/l-1/security-events")
    everything = events(api, "/v1/locations/l-1/security-events")
    assert sum(e["action"] == "security_log:read" for e in everything) >= 3
    filtered = events(api, "/v1/locations/l-1/security-events", exclude="security_log:read")
    assert filtered and all(e["action"] != "security_log:read" for e in filtered)
    assert any(e["action"] == "clients.export_finished" for e in filtered)
    both = events(api, "/v1/locations/l-1/security-events", exclude="security_log:read,clients.export_finished")
    assert not any(e["action"] in ("security_log:read", "clients.export_finished") for e in both)
    rows = csv_rows(api, "/v1/locations/l-1/security-events", exclude="security_log:read")
    assert rows and all(r["action"] != "security_log:read" for r in rows)
    for bad in ("not%20an%20action", ",".join(f"a{n}" for n in range(21))):
        answer = api.get(f"/v1/locations/l-1/security-events?viewer=boss&exclude={bad}", scope="security")
        assert answer.status_code == 400, answer.get_json()
        assert "exclude" in answer.get_json()["error"]["message"]


def test_exclude_applies_across_the_postgres_archive(tmp_path, app_factory, postgres_url, redis_client) -> None:
    settings = make_settings(tmp_path, audit_database_url=postgres_url)
    app = app_factory(settings)
    api = Api(app, make_tokens(settings))
    seed(api)
    for n in range(10):
        report(api, action="clients.export_finished", outcome="success", details={"n": n})
        events(api, CHAIN_ROUTE)  # a page view between every two events
    runtime = app.extensions["sidecar"]
    runtime.archiver.duty = 1.0
    done = runtime.archiver.run_once(now_ms=int(time.time() * 1000) + WEEK_AND_A_DAY_MS, lease_wait_s=30)
    assert done.moved >= 20 and redis_client.xlen(stream_key("c:ch-1")) == 0  # everything is in PostgreSQL now
    archived = list(runtime.audit_archive.newest_first("c:ch-1"))
    assert sum(e["action"] == "security_log:read" for e in archived) >= 10
    for limit in (3, 100):
        shown = every_page(api, CHAIN_ROUTE, limit, exclude="security_log:read")
        assert [e["id"] for e in shown] == [e["id"] for e in archived if e["action"] != "security_log:read"]
    rows = csv_rows(api, CHAIN_ROUTE, exclude="security_log:read,security_log:export")  # this export's look too
    assert [r["id"] for r in rows] == [e["id"] for e in archived if e["action"] != "security_log:read"]
    assert sum(r["action"] == "clients.export_finished" for r in rows) == 10


@pytest.mark.parametrize("exclude", ["security_log:read", "security_log:read,security_log:export"])
def test_the_archive_store_filters_in_sql(postgres_url, exclude) -> None:
    store = ArchiveStore(postgres_url)
    try:
        entries = [Entry("c:x", 1_764_000_000_000 + n, 0,
                         f'{{"id":"e{n}","action":"{"security_log:read" if n % 2 else "client:export"}",'
                         f'"category":"export","time":"2025-11-24T00:00:00.000Z"}}'.encode(), "p", "h")
                   for n in range(6)]
        assert store.insert(entries) == 6
        got = list(store.newest_first("c:x", filters=Filters(exclude=tuple(exclude.split(",")))))
        assert [e["id"] for e in got] == ["e4", "e2", "e0"]
    finally:
        store.close()
