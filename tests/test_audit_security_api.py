"""The Security section: the viewer rule, filters, cursors under concurrent appends, CSV export."""

from __future__ import annotations

import csv
import io
import threading

import pytest

from sidecar.audit.events import new_event
from tests.audit_support import audit_log, read_log, report, seed
from tests.conftest import wait_until

LOCATION_ROUTE = "/v1/locations/l-1/security-events"
CHAIN_ROUTE = "/v1/chains/ch-1/security-events"


def look(api, route: str, **args):
    query = "&".join(f"{k}={v}" for k, v in args.items())
    return api.get(f"{route}?{query}", scope="security")


@pytest.mark.parametrize(("route", "viewer", "status"), [
    (LOCATION_ROUTE, "sec", 200),      # system_manager at l-1
    (LOCATION_ROUTE, "boss", 200),     # owner chain-wide
    (LOCATION_ROUTE, "e-1", 403),      # administrator: no security_log:read
    (LOCATION_ROUTE, "idle", 403),     # a member without rights
    (LOCATION_ROUTE, "stranger", 403),  # not known here
    (CHAIN_ROUTE, "boss", 200),        # holds it at every location of the chain
    (CHAIN_ROUTE, "chief", 200),
    (CHAIN_ROUTE, "sec", 403),         # holds it at l-1 but not at l-2
    ("/v1/locations/l-9/security-events", "solo", 200),
    ("/v1/locations/l-9/security-events", "boss", 403),
])
def test_the_viewer_needs_security_log_read_there(api, route, viewer, status) -> None:
    seed(api)
    assert look(api, route, viewer=viewer).status_code == status


@pytest.mark.parametrize(("viewer", "outcome"), [("e-1", "denied"), ("sec", "allowed")])
def test_each_look_at_the_log_is_itself_an_event(api, redis_url, viewer, outcome) -> None:
    seed(api)
    look(api, LOCATION_ROUTE, viewer=viewer)
    event = read_log(redis_url, "c:ch-1")[-1]
    assert (event["action"], event["employee"], event["outcome"], event["category"]) == (
        "security_log:read", viewer, outcome, "security")


def test_exporting_needs_security_log_export(api) -> None:
    seed(api)  # system_manager reads but does not export; the owner does both
    assert look(api, LOCATION_ROUTE, viewer="sec", format="csv").status_code == 403
    assert look(api, LOCATION_ROUTE, viewer="boss", format="csv").get_json()["error"]["reason"] == "mfa_required"
    assert look(api, LOCATION_ROUTE, viewer="boss", format="csv", mfa="1").status_code == 200


def test_the_security_scope_is_required(api) -> None:
    seed(api)
    assert api.get(f"{LOCATION_ROUTE}?viewer=boss", scope="audit").status_code == 403


@pytest.mark.parametrize("args", [{}, {"viewer": "bad id!"}, {"viewer": "boss", "limit": "501"},
                                  {"viewer": "boss", "limit": "0"}, {"viewer": "boss", "category": "party"},
                                  {"viewer": "boss", "since": "yesterday"}, {"viewer": "boss", "since": "2025-01-01"},
                                  {"viewer": "boss", "cursor": "abc"}, {"viewer": "boss", "format": "xml"}])
def test_bad_query_parameters_are_400(api, args) -> None:
    seed(api)
    assert look(api, LOCATION_ROUTE, **args).status_code == 400


def test_an_unknown_location_or_chain_is_404(api) -> None:
    seed(api)
    assert look(api, "/v1/locations/nowhere/security-events", viewer="boss").status_code == 404
    assert look(api, "/v1/chains/nochain/security-events", viewer="boss").status_code == 404


def test_the_location_route_shows_only_that_locations_events(api) -> None:
    seed(api)
    report(api, location="l-2", action="login")
    report(api, location="l-1", action="login")
    events = look(api, LOCATION_ROUTE, viewer="boss", category="login").get_json()["events"]
    assert [e["location"] for e in events] == ["l-1"]
    chain_events = look(api, CHAIN_ROUTE, viewer="boss", category="login").get_json()["events"]
    assert [e["location"] for e in chain_events] == ["l-1", "l-2"]


@pytest.mark.parametrize(("args", "expected"), [
    ({"category": "export"}, ["export-2", "export-1"]),
    ({"employee": "sec"}, ["login-sec"]),
    ({"action": "clients.export_finished"}, ["export-2", "export-1"]),
    ({"category": "login", "employee": "e-1"}, ["login-e1"]),
])
def test_filters_select_matching_events_newest_first(api, args, expected) -> None:
    seed(api)
    for name, employee, action in [("login-e1", "e-1", "login"), ("export-1", "e-1", "clients.export_finished"),
                                   ("login-sec", "sec", "login"), ("export-2", "boss", "clients.export_finished")]:
        assert report(api, employee=employee, action=action, request_id=name).status_code == 202
    events = look(api, CHAIN_ROUTE, viewer="boss", **args).get_json()["events"]
    assert [e["request_id"] for e in events] == expected


def test_since_and_until_bound_the_events_time(api) -> None:
    seed(api)
    report(api, request_id="r1")
    first_time = look(api, CHAIN_ROUTE, viewer="boss", category="login").get_json()["events"][0]["time"]
    assert look(api, CHAIN_ROUTE, viewer="boss", category="login", since=first_time).get_json()["events"]
    assert look(api, CHAIN_ROUTE, viewer="boss", category="login", until="2000-01-01T00:00:00Z").get_json()[
        "events"] == []
    assert look(api, CHAIN_ROUTE, viewer="boss", category="login", since="2999-01-01T00:00:00%2B02:00").get_json()[
        "events"] == []


def test_an_event_has_every_contract_field(api) -> None:
    seed(api)
    report(api)
    event = look(api, CHAIN_ROUTE, viewer="boss", category="login").get_json()["events"][0]
    assert set(event) == {"id", "time", "location", "chain", "employee", "action", "category", "outcome", "object",
                          "device", "ip", "request_id", "details", "prev_hash", "hash",
                          "employee_name"}  # the name at the time (issue 15; an addition to the contract)
    assert event["time"].endswith("Z")


def test_cursor_pages_stay_exact_while_new_events_arrive(app, api) -> None:
    seed(api)
    runtime = app.extensions["sidecar"]
    before = [report(api, request_id=f"old-{i}").get_json()["id"] for i in range(25)]
    stop = threading.Event()

    def append_more() -> None:
        while not stop.is_set():
            runtime.auditor.emit(category="login", action="login", outcome="success", employee="e-1", location="l-1")

    writer = threading.Thread(target=append_more)
    writer.start()
    try:
        first = look(api, CHAIN_ROUTE, viewer="boss", employee="e-1", category="login", limit=10).get_json()
        seen = [e["id"] for e in first["events"]]
        cursor = first["next_cursor"]
        while cursor:
            page = look(api, CHAIN_ROUTE, viewer="boss", employee="e-1", category="login", limit=10,
                        cursor=cursor).get_json()
            seen += [e["id"] for e in page["events"]]
            cursor = page["next_cursor"]
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in set(before)] == list(reversed(before))


def test_the_last_page_has_no_cursor(api) -> None:
    seed(api)
    for _ in range(3):
        report(api)
    page = look(api, CHAIN_ROUTE, viewer="boss", category="login", limit=3).get_json()
    assert (len(page["events"]), page["next_cursor"]) == (3, None)


def test_a_large_csv_export_is_streamed_row_by_row(app, api, redis_client) -> None:
    seed(api)
    store = audit_log(redis_client)
    batch = []
    for i in range(20_000):
        event = new_event(category="export", action="clients.export_finished", outcome="success",
                                employee="e-1", location="l-1", chain="ch-1", object={"type": "export", "id": str(i)},
                                device=None, ip=None, request_id=None, details={"rows": i})
        batch.append(("c:ch-1", event))
        if len(batch) == 1000:
            store.append_many(batch)
            batch = []
    response = look(api, LOCATION_ROUTE, viewer="boss", format="csv", mfa="1", action="clients.export_finished")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["id", "time", "location"]
    assert len(rows) == 1 + 20_000
    assert rows[1][9] == "19999"  # newest first


def test_csv_cells_never_start_a_formula(api) -> None:
    seed(api)
    report(api, action="clients.export_finished", object={"type": "=HYPERLINK(1)", "id": "x"})
    response = look(api, CHAIN_ROUTE, viewer="boss", format="csv", mfa="1", action="clients.export_finished")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[1][8] == "'=HYPERLINK(1)"


def test_a_critical_checks_event_shows_in_the_security_section_promptly(api) -> None:
    seed(api)
    answer = api.check("e-1", "l-1", "client:delete")  # journaled, then shipped by the shipper thread

    def found() -> list[dict]:
        events = look(api, LOCATION_ROUTE, viewer="boss", action="client:delete").get_json()["events"]
        return [e for e in events if e["details"]["decision_id"] == answer["decision_id"]]

    assert wait_until(found)
    found = found()
    assert len(found) == 1
    assert (found[0]["employee"], found[0]["outcome"], found[0]["category"]) == ("e-1", "denied", "delete")


@pytest.mark.parametrize("query", ["limit=²", "cursor=\u0661-\u0661", "since=1970-01-01T00:00:01Z",
                                   "since=0001-01-01T00:00:00%2B01:00", "until=9999-12-31T23:59:59-23:00"])
def test_odd_query_values_are_answered_not_500(api, query) -> None:
    seed(api)
    response = api.get(f"/v1/locations/l-1/security-events?viewer=sec&{query}", scope="security")
    assert response.status_code in (200, 400)  # sec holds security_log:read: the query itself is judged
    assert "error" in response.get_json() or "events" in response.get_json()
