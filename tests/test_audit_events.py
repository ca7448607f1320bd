"""Which events are recorded, where, and with what: checks, directory writes, reported events."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid

import pytest

from sidecar.audit.events import category_of, new_event_id
from tests.audit_support import read_log, report, seed, shipped
from tests.conftest import Api, make_tokens

DEVICE = {"id": "d-1", "name": "Front desk iPad", "platform": "ios", "user_agent": "App/1.0"}
CONTEXT = {"mfa": True, "ip": "203.0.113.7", "request_id": "upstream-req-1", "device": DEVICE}


def checks_in(api, url: str, log: str) -> list[dict]:
    shipped(api)
    return [e for e in read_log(url, log) if e["details"] and e["details"].get("decision_id")]


@pytest.mark.parametrize(("employee", "right", "outcome", "category"), [
    ("e-1", "appointment:delete", "allowed", "delete"),
    ("e-1", "client:delete", "denied", "delete"),
    ("boss", "client:export", "allowed", "export"),
    ("e-1", "discount:override", "allowed", "edit"),
    ("e-1", "access:manage", "denied", "access"),
    ("boss", "security_log:read", "allowed", "security"),
])
def test_a_critical_check_is_an_event_with_device_ip_and_request_id(api, redis_url, employee, right, outcome,
                                                                     category) -> None:
    seed(api)
    answer = api.check(employee, "l-1", right, context=CONTEXT)
    (event,) = checks_in(api, redis_url, "c:ch-1")
    assert (event["action"], event["outcome"], event["category"]) == (right, outcome, category)
    assert (event["employee"], event["location"], event["chain"]) == (employee, "l-1", "ch-1")
    assert (event["device"], event["ip"], event["request_id"]) == (DEVICE, "203.0.113.7", "upstream-req-1")
    assert event["details"]["decision_id"] == answer["decision_id"]


def test_a_check_of_an_ordinary_right_is_not_an_event(api, redis_url) -> None:
    seed(api)
    api.check("e-1", "l-1", "calendar:view")
    assert checks_in(api, redis_url, "c:ch-1") == []


def test_each_critical_check_of_a_batch_is_one_event(api, redis_url) -> None:
    seed(api)
    body = {"employee": "e-1", "location": "l-1", "checks": [
        {"resource": "calendar", "action": "view"}, {"resource": "client", "action": "delete"},
        {"resource": "appointment", "action": "delete"}, {"resource": "payment", "action": "refund"}]}
    assert api.post("/v1/check/batch", body, scope="check").status_code == 200
    events = checks_in(api, redis_url, "c:ch-1")
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("client:delete", "denied"), ("appointment:delete", "allowed"), ("payment:refund", "denied")]


def test_a_check_at_a_standalone_location_lands_in_that_locations_log(api, redis_url) -> None:
    seed(api)
    api.check("solo", "l-9", "client:delete")
    (event,) = checks_in(api, redis_url, "l:l-9")
    assert (event["location"], event["chain"], event["outcome"]) == ("l-9", None, "allowed")


def test_a_check_without_context_uses_the_requests_id(api, redis_url) -> None:
    seed(api)
    response = api.post("/v1/check", {"employee": "e-1", "location": "l-1", "resource": "client",
                                      "action": "delete"}, scope="check", headers={"X-Request-Id": "rid-42"})
    assert response.status_code == 200
    (event,) = checks_in(api, redis_url, "c:ch-1")
    assert event["request_id"] == "rid-42"


def test_a_directory_write_is_an_access_event_with_before_after_and_actor(api, redis_url) -> None:
    seed(api)
    response = api.put("/v1/locations/l-1/employees/e-1?actor=boss", {"roles": ["manager"]})
    assert response.status_code == 200
    event = read_log(redis_url, "c:ch-1")[-1]
    assert (event["category"], event["action"], event["employee"]) == ("access", "membership:update", "boss")
    assert event["details"]["before"]["roles"] == ["administrator"]
    assert event["details"]["after"]["roles"] == ["manager"]
    assert event["object"] == {"type": "membership", "id": "l-1/e-1"}


def test_a_service_write_is_audited_without_an_actor(api, redis_url) -> None:
    seed(api)
    assert api.delete("/v1/locations/l-9/employees/solo").status_code == 200
    event = read_log(redis_url, "l:l-9")[-1]
    assert (event["action"], event["employee"], event["details"]["after"]) == ("membership:delete", None, None)


def test_a_reported_event_is_accepted_once_durable(api, redis_url) -> None:
    seed(api)
    response = report(api, action="login.failed", outcome="failure", ip="198.51.100.2",
                      device={"id": "d-9", "platform": "web"}, object={"type": "session", "id": "s-1"})
    assert response.status_code == 202
    event = read_log(redis_url, "c:ch-1")[-1]
    assert event["id"] == response.get_json()["id"]
    assert (event["category"], event["outcome"], event["ip"]) == ("login", "failure", "198.51.100.2")


@pytest.mark.parametrize(("action", "category"), [
    ("login", "login"), ("login.failed", "login"), ("mfa_locked", "login"), ("clients.export_finished", "export"),
    ("client:delete", "delete"), ("token.rotated", "security"), ("role:update", "access"), ("refund", "edit"),
])
def test_a_reported_events_category_follows_its_action(action, category) -> None:
    assert category_of(action) == category


@pytest.mark.parametrize("body", [
    {"location": None},
    {"location": "bad id!"},
    {"action": ""},
    {"outcome": None},
    {"category": "party"},
    {"details": "text"},
    {"device": {"nested": {"a": 1}}},
    {"surprise": 1},
    {"ip": 7},
])
def test_a_malformed_reported_event_is_400(api, body) -> None:
    seed(api)
    assert report(api, **body).status_code == 400


def test_reporting_events_needs_the_audit_scope(api) -> None:
    response = api.post("/v1/audit/events", {"location": "l-1", "action": "login", "outcome": "ok"}, scope="check")
    assert response.status_code == 403


def test_secrets_in_details_never_reach_the_log(api, redis_url) -> None:
    seed(api)
    details = {"token": "sct_abc", "nested": {"mfa_code": "123456", "Password": "hunter2"}, "rows": 3}
    answer = report(api, details=details, device={"id": "d", "push_token": "tok"})
    assert answer.status_code == 202
    # by id: a login from a new device is followed by its login.new_device event
    (event,) = [e for e in read_log(redis_url, "c:ch-1") if e["id"] == answer.get_json()["id"]]
    assert event["details"] == {"token": "[redacted]", "nested": {"mfa_code": "[redacted]",
                                                                    "Password": "[redacted]"}, "rows": 3}
    assert event["device"] == {"id": "d", "push_token": "[redacted]"}


def test_emit_routes_a_chain_locations_event_to_the_chain_log(app, api, redis_url) -> None:
    seed(api)
    runtime = app.extensions["sidecar"]
    ids = [runtime.auditor.emit(category="login", action="login", outcome="success", employee="e-1", location="l-2"),
           runtime.auditor.emit(category="login", action="login", outcome="success", employee="solo", location="l-9"),
           runtime.auditor.emit(category="login", action="login", outcome="success", employee="boss", chain="ch-1")]
    assert ids[0] in {e["id"] for e in read_log(redis_url, "c:ch-1")}
    assert ids[1] in {e["id"] for e in read_log(redis_url, "l:l-9")}
    assert ids[2] in {e["id"] for e in read_log(redis_url, "c:ch-1")}


def test_a_journaled_check_event_counts_as_written_not_replayed(api, redis_url) -> None:
    from prometheus_client import REGISTRY

    def count(result: str) -> float:
        return REGISTRY.get_sample_value("sidecar_audit_events_total", {"result": result}) or 0.0

    seed(api)
    shipped(api)
    written, replayed = count("written"), count("replayed")
    api.check("e-1", "l-1", "client:delete")
    assert count("written") == written + 1  # at once, as the check answers
    assert len(checks_in(api, redis_url, "c:ch-1")) == 1
    assert (count("written"), count("replayed")) == (written + 1, replayed)


def audit_lines(out: str) -> list[dict]:
    return [line for line in map(json.loads, filter(None, out.splitlines())) if line.get("event") == "audit"]


def test_each_critical_check_is_one_audit_line_on_stdout_with_the_stored_event(api, redis_url, capsys) -> None:
    seed(api)
    shipped(api)
    capsys.readouterr()
    decisions = [api.check("e-1", "l-1", "client:delete", context={"request_id": f"r-{n}"})["decision_id"]
                 for n in range(3)]
    shipped(api)  # the shipper writes a batch's lines, then ships it
    lines = audit_lines(capsys.readouterr().out)
    assert [line["details"]["decision_id"] for line in lines] == decisions
    assert [line["request_id"] for line in lines] == ["r-0", "r-1", "r-2"]
    assert {(line["log"], line["stored_in"], line["action"]) for line in lines} == {
        ("c:ch-1", "journal", "client:delete")}
    stored = {e["id"]: e for e in read_log(redis_url, "c:ch-1")}
    for line in lines:  # the line carries the event as stored (its link fields aside)
        event = {k: v for k, v in stored[line["id"]].items() if k not in ("prev_hash", "hash", "_sid")}
        assert {k: line[k] for k in event} == event


def test_event_ids_are_uuid4_and_a_forked_child_draws_its_own() -> None:
    ids = [new_event_id() for _ in range(600)]  # more than one draw of the pool
    assert len(set(ids)) == 600
    assert all(uuid.UUID(hex=i).version == 4 and uuid.UUID(hex=i).hex == i for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != new_event_id()  # an inherited pool would hand both the same next id


@pytest.fixture
def unstarted_api(settings, app_factory) -> Api:
    """An app whose runtime is not started: no shipper runs, as if it had not run yet.

    Its replica does not follow the change log either, so the seat recorder's read-your-writes
    wait could only time out: with no wait it defers the seat history at once (billing is not
    under test here) instead of costing ``min_revision_wait_s`` per write.
    """
    settings = dataclasses.replace(settings, min_revision_wait_s=0.0)
    return Api(app_factory(settings, start=False), make_tokens(settings))


def test_stopping_the_auditor_ships_the_pending_journal(unstarted_api, redis_url) -> None:
    api = unstarted_api
    seed(api)
    auditor = api.app.extensions["sidecar"].auditor
    api.check("e-1", "l-1", "client:delete")
    assert auditor.spool.pending() == 1
    auditor.stop()
    assert [e["action"] for e in read_log(redis_url, "c:ch-1") if e["details"].get("decision_id")] == [
        "client:delete"]
    assert not auditor.spool.has_records()


def test_a_write_event_reaches_the_log_after_the_check_events_journaled_before_it(unstarted_api,
                                                                                   redis_url) -> None:
    api = unstarted_api
    seed(api)
    api.check("e-1", "l-1", "client:delete")
    assert report(api, request_id="after-the-check").status_code == 202
    actions = [e["action"] for e in read_log(redis_url, "c:ch-1")][-2:]
    assert actions == ["client:delete", "login"]
