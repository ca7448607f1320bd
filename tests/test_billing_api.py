"""The billing routes through the app: scopes, answers, previews, history and the seat stream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from sidecar.policy.directory import Membership
from sidecar.store.seat_history import SEAT_CHANGES_STREAM

SEATS = "/v1/billing/seats"


def build(api: Any) -> str:
    """Chain ch-1 (l-1, l-2) as in DOMAIN.md's worked examples; answers the last revision."""
    writes = [
        ("/v1/chains/ch-1", {}),
        ("/v1/locations/l-1", {"chain": "ch-1"}),
        ("/v1/locations/l-2", {"chain": "ch-1"}),
        *[(f"/v1/employees/{e}", {"active": True}) for e in ("boss", "admin", "cc", "acct", "mkt", "stylist")],
        ("/v1/chains/ch-1/employees/boss", {"roles": ["owner"]}),
        ("/v1/chains/ch-1", {"owner": "boss"}),  # a designated owner is a member first
        ("/v1/chains/ch-1/employees/cc", {"roles": ["call_center"]}),
        ("/v1/locations/l-1/employees/admin", {"roles": ["administrator"]}),
        ("/v1/locations/l-2/employees/admin", {"roles": ["administrator"]}),
        ("/v1/locations/l-2/employees/acct", {"roles": ["accountant"], "allow": ["payment:process"]}),
        ("/v1/locations/l-1/employees/mkt", {"roles": ["marketer"]}),
        ("/v1/locations/l-1/employees/stylist", {"roles": [], "provides_services": True}),
    ]
    revision = ""
    for path, body in writes:
        response = api.put(path, body)
        assert response.status_code == 200, response.get_json()
        revision = response.get_json()["revision"]
    return revision


def seats(api: Any, query: str) -> dict[str, Any]:
    response = api.get(f"{SEATS}?{query}", scope="billing")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def ms(revision: str) -> int:
    return int(revision.split("-")[0])


def iso(milliseconds: int) -> str:
    return datetime.fromtimestamp(milliseconds / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- scopes and bad input --------------------------------------------------------------------
ROUTES = [("GET", f"{SEATS}?chain=ch-1", None), ("GET", f"{SEATS}/history?chain=ch-1", None),
          ("POST", f"{SEATS}/preview", {"chain": "ch-1", "changes": [
              {"employee": "mkt", "location": "l-1", "membership": None}]})]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize(("scope", "status"), [("billing", 200), ("all", 200), ("check", 403), ("admin", 403),
                                               ("audit", 403), ("security", 403), ("mfa", 403), (None, 401)])
def test_billing_routes_need_the_billing_scope(api: Any, method: str, path: str, body: Any,
                                               scope: str | None, status: int) -> None:
    build(api)
    response = api.call(method, path, json=body, scope=scope)
    assert response.status_code == status
    assert response.is_json


@pytest.mark.parametrize(("query", "status", "code"), [
    ("", 400, "invalid_request"),
    ("chain=ch-1&location=l-1", 400, "invalid_request"),
    ("chain=bad%20id", 400, "invalid_id"),
    ("location=" + "x" * 65, 400, "invalid_id"),
    ("chain=ch-1&rule=everything", 400, "invalid_request"),
    ("chain=nope", 404, "not_found"),
    ("location=nowhere", 404, "not_found"),
])
def test_seats_refuses_bad_input_with_json(api: Any, query: str, status: int, code: str) -> None:
    build(api)
    response = api.get(f"{SEATS}?{query}", scope="billing")
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)


@pytest.mark.parametrize(("query", "code"), [
    ("chain=ch-1&since=yesterday", "invalid_request"),
    ("chain=ch-1&since=2026-01-01T00:00:00", "invalid_request"),  # no time zone
    ("chain=ch-1&since=2026-01-01%2000:00:00%2B00:00", "invalid_request"),  # a space is not RFC 3339's T
    ("chain=ch-1&since=0001-01-01T00:00:00%2B01:00", "invalid_request"),  # before year 1 in UTC
    ("chain=ch-1&since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "invalid_request"),
    ("location=l%2F1", "invalid_id"),
])
def test_history_refuses_bad_input_with_json(api: Any, query: str, code: str) -> None:
    build(api)
    response = api.get(f"{SEATS}/history?{query}", scope="billing")
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, code)


@pytest.mark.parametrize(("body", "code"), [
    ({"chain": "ch-1"}, "invalid_request"),
    ({"chain": "ch-1", "changes": "x"}, "invalid_request"),
    ({"changes": [{"employee": "mkt", "location": "l-1", "membership": None}]}, "invalid_request"),
    ({"chain": "ch-1", "changes": [], "extra": 1}, "invalid_request"),
    ({"chain": "ch-1", "changes": [{"employee": "mkt", "location": "l-1",
                                    "membership": {"roles": [], "allow": ["nope:nope"]}}]}, "unknown_right"),
    ({"chain": "ch-1", "changes": [{"employee": "mkt", "location": "l-1",
                                    "membership": {"roles": ["wizard"]}}]}, "unknown_role"),
    ({"chain": "ch-1", "changes": [{"employee": "no body", "location": "l-1", "membership": None}]}, "invalid_id"),
    ({"location": "l 1", "changes": []}, "invalid_id"),
])
def test_preview_refuses_bad_input_with_json(api: Any, body: dict[str, Any], code: str) -> None:
    build(api)
    response = api.post(f"{SEATS}/preview", body, scope="billing")
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, code)


def test_preview_of_a_body_that_is_not_json_is_400(api: Any) -> None:
    response = api.post(f"{SEATS}/preview", scope="billing", data=b"{", content_type="application/json")
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_json")


# -- answers ---------------------------------------------------------------------------------
def test_chain_seats_follow_the_worked_examples(api: Any) -> None:
    revision = build(api)
    body = seats(api, "chain=ch-1")
    assert body["scope"] == {"chain": "ch-1"}
    assert (body["paid_seats"], body["free_seats"], body["revision"]) == (4, 2, revision)
    assert {e["employee"]: (e["paid"], e["reasons"]) for e in body["employees"]} == {
        "boss": (False, ["owner_exempt"]),
        "admin": (True, ["right:appointment:create", "right:deposit:topup", "right:payment:process"]),
        "cc": (True, ["right:appointment:create"]),
        "acct": (True, ["right:payment:process"]),
        "mkt": (False, ["no_billable_rights"]),
        "stylist": (True, ["provides_services"]),
    }
    assert body["computed_at"].endswith("Z")


@pytest.mark.parametrize(("query", "paid", "free"), [
    ("location=l-1", ["admin", "cc", "stylist"], ["boss", "mkt"]),
    ("location=l-2", ["acct", "admin", "cc"], ["boss"]),
    ("chain=ch-1&rule=writes", ["acct", "admin", "cc", "mkt", "stylist"], ["boss"]),
    ("location=l-1&rule=writes", ["admin", "cc", "mkt", "stylist"], ["boss"]),
])
def test_seats_by_scope_and_rule(api: Any, query: str, paid: list[str], free: list[str]) -> None:
    build(api)
    body = seats(api, query)
    assert [e["employee"] for e in body["employees"] if e["paid"]] == paid
    assert [e["employee"] for e in body["employees"] if not e["paid"]] == free


def test_deactivation_frees_the_seat(api: Any) -> None:
    build(api)
    assert api.put("/v1/employees/admin", {"active": False}).status_code == 200
    found = {e["employee"]: e for e in seats(api, "chain=ch-1")["employees"]}
    assert (found["admin"]["paid"], found["admin"]["reasons"]) == (False, ["inactive"])


def test_preview_answers_without_storing(api: Any) -> None:
    build(api)
    before = seats(api, "chain=ch-1")
    response = api.post(f"{SEATS}/preview", {"chain": "ch-1", "changes": [
        {"employee": "mkt", "location": "l-2", "membership": {"roles": ["service_provider"]}},
        {"employee": "cc", "chain": "ch-1", "membership": None},
        {"employee": "stylist", "location": "l-1", "membership": {"roles": [], "provides_services": False}},
    ]}, scope="billing")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["paid_seats_before"], body["paid_seats_after"]) == (4, 3)
    assert body["changed"] == [{"employee": "cc", "paid_before": True, "paid_after": False},
                               {"employee": "mkt", "paid_before": False, "paid_after": True},
                               {"employee": "stylist", "paid_before": True, "paid_after": False}]
    after = seats(api, "chain=ch-1")
    assert (after["employees"], after["revision"]) == (before["employees"], before["revision"])
    assert api.get("/v1/locations/l-2/employees/mkt", scope="admin").status_code == 404


def test_preview_of_a_hire_who_does_not_exist_yet(api: Any) -> None:
    build(api)
    response = api.post(f"{SEATS}/preview", {"location": "l-2", "changes": [
        {"employee": "hire-1", "location": "l-2", "membership": {"roles": [], "provides_services": True}}]},
        scope="billing")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["changed"] == [{"employee": "hire-1", "paid_before": False, "paid_after": True}]
    assert api.get("/v1/employees/hire-1", scope="admin").status_code == 404


def test_preview_of_a_location_counts_chain_wide_changes(api: Any) -> None:
    build(api)
    response = api.post(f"{SEATS}/preview", {"location": "l-1", "changes": [
        {"employee": "mkt", "chain": "ch-1", "membership": {"roles": ["call_center"]}}]}, scope="billing")
    assert response.get_json()["changed"] == [{"employee": "mkt", "paid_before": False, "paid_after": True}]


# -- history ---------------------------------------------------------------------------------
def grant_and_revoke(api: Any) -> tuple[str, str]:
    """A one-day payment override on the marketer: granted, then revoked."""
    granted = api.put("/v1/locations/l-1/employees/mkt", {"roles": ["marketer"], "allow": ["payment:process"]})
    revoked = api.put("/v1/locations/l-1/employees/mkt", {"roles": ["marketer"]})
    return granted.get_json()["revision"], revoked.get_json()["revision"]


def history(api: Any, query: str) -> dict[str, Any]:
    response = api.get(f"{SEATS}/history?{query}", scope="billing")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_right_granted_and_revoked_between_invoices_still_counts(api: Any) -> None:
    start = ms(build(api))
    grant_and_revoke(api)
    assert seats(api, "chain=ch-1")["paid_seats"] == 4
    body = history(api, f"chain=ch-1&since={iso(start + 1)}")
    assert [(c["employee"], c["paid"], c["paid_seats"]) for c in body["changes"]] == [("mkt", True, 5),
                                                                                       ("mkt", False, 4)]
    assert (body["paid_seats_at_since"], body["peak_paid_seats"]) == (4, 5)


def test_the_peak_includes_the_seats_in_force_at_since(api: Any) -> None:
    build(api)
    granted, revoked = grant_and_revoke(api)
    since = ms(granted) + 1
    body = history(api, f"chain=ch-1&since={iso(since)}")
    if ms(revoked) >= since:  # both writes may share a millisecond; then nothing is in the window but the state
        assert [(c["paid"], c["paid_seats"]) for c in body["changes"]] == [(False, 4)]
        assert (body["paid_seats_at_since"], body["peak_paid_seats"]) == (5, 5)
    else:
        assert body["changes"] == []
        assert body["peak_paid_seats"] == 4


def test_history_of_a_location_records_its_own_changes(api: Any) -> None:
    build(api)
    grant_and_revoke(api)
    assert [(c["employee"], c["paid"]) for c in history(api, "location=l-1")["changes"] if c["employee"] == "mkt"] \
        == [("mkt", True), ("mkt", False)]
    assert all(c["employee"] != "mkt" for c in history(api, "location=l-2")["changes"])


def test_history_from_the_beginning_records_each_paid_seat(api: Any) -> None:
    build(api)
    body = history(api, "chain=ch-1")
    paid_now = {e["employee"] for e in seats(api, "chain=ch-1")["employees"] if e["paid"]}
    state: set[str] = set()
    for change in body["changes"]:
        (state.add if change["paid"] else state.discard)(change["employee"])
        assert len(state) == change["paid_seats"] or change is not body["changes"][-1]
    assert state == paid_now
    assert body["changes"][-1]["paid_seats"] == len(paid_now)


def test_every_change_is_on_the_seat_changes_stream_once(api: Any, redis_client: redis.Redis) -> None:
    build(api)
    granted, revoked = grant_and_revoke(api)
    entries = [{k.decode(): v.decode() for k, v in fields.items()}
               for _, fields in redis_client.xrange(SEAT_CHANGES_STREAM)]
    mkt = [(e["scope"], e["paid"], e["revision"]) for e in entries if e["employee"] == "mkt"]
    assert mkt == [("chain:ch-1", "1", granted), ("location:l-1", "1", granted),
                   ("chain:ch-1", "0", revoked), ("location:l-1", "0", revoked)]
    history(api, "chain=ch-1")  # reading (and catching up) records nothing new
    assert redis_client.xlen(SEAT_CHANGES_STREAM) == len(entries)


def test_a_write_whose_recording_was_lost_is_recorded_at_the_next_read(api: Any, app: Any) -> None:
    build(api)
    store = app.extensions["sidecar"].directory
    lost = store.put_membership("l-2", "mkt", Membership(roles=("service_provider",)))  # no listener ran
    app.extensions["sidecar"].replica.wait_for(lost.revision, 5)  # as a later read would find it: applied
    body = history(api, "chain=ch-1")
    assert body["changes"][-1] == {"time": body["changes"][-1]["time"], "paid_seats": 5, "employee": "mkt",
                                   "paid": True, "revision": lost.revision, "cause": "write"}


# -- the designated owner (issue 14) -----------------------------------------------------------
@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chains/ch-1", {"owner": "ghost"}),           # no such employee
    ("/v1/chains/ch-1", {"owner": "outsider"}),        # an employee of no location of the chain
    ("/v1/locations/l-2", {"chain": "ch-1", "owner": "mkt"}),  # a member of l-1, not of l-2
    ("/v1/locations/l-3", {"chain": "ch-1", "owner": "mkt"}),  # a new location has no own members
])
def test_designating_a_non_member_of_the_scope_is_400(api: Any, path: str, body: dict[str, Any]) -> None:
    build(api)
    api.put("/v1/employees/outsider", {"active": True})
    before = api.get(path, scope="admin").get_json()
    response = api.put(path, body)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "owner"
    assert api.get(path, scope="admin").get_json() == before


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chains/ch-1", {"owner": "mkt"}),                     # a member at one location is in the chain
    ("/v1/locations/l-2", {"chain": "ch-1", "owner": "acct"}),
    ("/v1/locations/l-2", {"chain": "ch-1", "owner": "cc"}),   # chain-wide members are members of l-2
    ("/v1/locations/l-3", {"chain": "ch-1", "owner": "boss"}),  # ... also of a new location
])
def test_designating_a_member_of_the_scope_is_accepted(api: Any, path: str, body: dict[str, Any]) -> None:
    build(api)
    assert api.put(path, body).status_code == 200


def test_chain_and_location_answers_agree_about_the_chain_owner(api: Any) -> None:
    build(api)
    for query in ("chain=ch-1", "location=l-1", "location=l-2"):
        verdict = {e["employee"]: e for e in seats(api, query)["employees"]}["boss"]
        assert (verdict["paid"], verdict["reasons"]) == (False, ["owner_exempt"]), query


def test_a_designated_administrator_is_paid(api: Any) -> None:
    build(api)
    assert api.put("/v1/chains/ch-1", {"owner": "admin"}).status_code == 200
    employees = {e["employee"]: e for e in seats(api, "chain=ch-1")["employees"]}
    assert employees["admin"]["paid"] is True
    assert employees["boss"]["paid"] is True  # the designated owner decides; boss is a further owner
