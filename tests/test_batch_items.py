"""A batch whose items name their own location or employee: answered per item, audited per pair."""

from __future__ import annotations

import pytest


@pytest.fixture
def two_tenants(api):
    """ann: administrator at l-1 (chain ch-1), marketer at solo (standalone); bob: owner at l-2 (ch-1)."""
    api.put("/v1/chains/ch-1", {})
    for location, chain in (("l-1", "ch-1"), ("l-2", "ch-1"), ("solo", None)):
        api.put(f"/v1/locations/{location}", {"chain": chain})
    for employee in ("ann", "bob"):
        api.put(f"/v1/employees/{employee}", {"active": True})
    api.put("/v1/locations/l-1/employees/ann", {"roles": ["administrator"]})
    api.put("/v1/locations/solo/employees/ann", {"roles": ["marketer"]})
    api.put("/v1/locations/l-2/employees/bob", {"roles": ["owner"]})
    return api


def test_items_may_name_another_location_of_any_tenant(two_tenants) -> None:
    body = {"employee": "ann", "location": "l-1", "checks": [
        {"resource": "appointment", "action": "create"},
        {"resource": "appointment", "action": "create", "location": "solo"},
        {"resource": "marketing", "action": "send", "location": "solo"},
        {"resource": "appointment", "action": "create", "location": "l-2"},
        {"resource": "client", "action": "delete", "location": "l-2", "employee": "bob"}]}
    response = two_tenants.post("/v1/check/batch", body, scope="check")
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [(r.get("location"), r.get("employee"), r["allowed"], r["reason"]) for r in results] == [
        (None, None, True, "granted"),
        ("solo", None, False, "not_granted"),
        ("solo", None, True, "granted"),
        ("l-2", None, False, "not_a_member"),
        ("l-2", "bob", True, "granted")]


@pytest.mark.parametrize("item", [{"resource": "a", "action": "b", "location": "bad id"},
                                  {"resource": "a", "action": "b", "employee": ""},
                                  {"resource": "a", "action": "b", "location": 7}])
def test_a_bad_item_id_is_400(two_tenants, item) -> None:
    body = {"employee": "ann", "location": "l-1", "checks": [item]}
    response = two_tenants.post("/v1/check/batch", body, scope="check")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_id"


def test_a_critical_item_is_audited_at_its_own_location(two_tenants) -> None:
    body = {"employee": "ann", "location": "solo", "checks": [
        {"resource": "client", "action": "delete", "location": "l-2", "employee": "bob"}]}
    assert two_tenants.post("/v1/check/batch", body, scope="check").status_code == 200
    answer = two_tenants.get("/v1/locations/l-2/security-events?viewer=bob&action=client:delete", scope="security")
    assert answer.status_code == 200, answer.get_json()
    events = answer.get_json()["events"]
    assert [(e["employee"], e["location"], e["outcome"]) for e in events] == [("bob", "l-2", "allowed")]
