"""Listing members, memberships and custom roles; deleting employees, locations and custom roles."""

from __future__ import annotations

import pytest


@pytest.fixture
def chain(api):
    """ch-1 with l-1 and l-2; boss owns it chain-wide, ann and bob work at l-1, cat at l-2."""
    assert api.put("/v1/chains/ch-1", {}).status_code == 200
    for location in ("l-1", "l-2"):
        assert api.put(f"/v1/locations/{location}", {"chain": "ch-1"}).status_code == 200
    for employee in ("boss", "ann", "bob", "cat"):
        assert api.put(f"/v1/employees/{employee}", {"active": True}).status_code == 200
    assert api.put("/v1/chains/ch-1/employees/boss", {"roles": ["owner"]}).status_code == 200
    for employee, location in (("ann", "l-1"), ("bob", "l-1"), ("cat", "l-2")):
        body = {"roles": ["service_provider"], "provides_services": True}
        assert api.put(f"/v1/locations/{location}/employees/{employee}", body).status_code == 200
    return api


def test_location_members_list_direct_and_chain_wide_memberships(chain) -> None:
    answer = chain.get("/v1/locations/l-1/employees", scope="admin").get_json()
    assert [(e["employee"], e.get("location"), e.get("chain")) for e in answer["employees"]] == [
        ("ann", "l-1", None), ("bob", "l-1", None), ("boss", None, "ch-1")]
    ann = answer["employees"][0]
    assert ann["roles"] == ["service_provider"] and ann["provides_services"] is True
    assert answer["next_cursor"] is None and answer["revision"]


def test_members_are_paged_by_employee_with_a_cursor(chain) -> None:
    first = chain.get("/v1/chains/ch-1/employees?limit=2", scope="admin").get_json()
    assert [e["employee"] for e in first["employees"]] == ["ann", "bob"] and first["next_cursor"] == "bob"
    rest = chain.get(f"/v1/chains/ch-1/employees?limit=2&cursor={first['next_cursor']}", scope="admin").get_json()
    assert [e["employee"] for e in rest["employees"]] == ["boss", "cat"] and rest["next_cursor"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "limit=%D9%A3", "cursor=bad%20id"])
def test_bad_paging_is_400(chain, query) -> None:
    assert chain.get(f"/v1/locations/l-1/employees?{query}", scope="admin").status_code == 400


def test_an_employees_memberships_across_tenants(chain) -> None:
    chain.put("/v1/locations/solo", {"chain": None})
    chain.put("/v1/locations/solo/employees/ann", {"roles": ["marketer"]})
    answer = chain.get("/v1/employees/ann/memberships", scope="admin").get_json()
    assert [(m.get("location"), m["roles"]) for m in answer["memberships"]] == [("l-1", ["service_provider"]),
                                                                               ("solo", ["marketer"])]
    assert chain.get("/v1/employees/nobody/memberships", scope="admin").status_code == 404


def test_custom_roles_of_a_scope(chain) -> None:
    chain.put("/v1/chains/ch-1/roles/greeter", {"rights": ["calendar:view"]})
    chain.put("/v1/locations/l-1/roles/opener", {"rights": ["cashdesk:operate"], "inherits": ["greeter"]})
    assert [r["role"] for r in chain.get("/v1/chains/ch-1/roles", scope="admin").get_json()["roles"]] == ["greeter"]
    roles = chain.get("/v1/locations/l-1/roles", scope="admin").get_json()["roles"]
    assert roles == [{"location": "l-1", "role": "opener", "rights": ["cashdesk:operate"], "inherits": ["greeter"]}]
    assert chain.get("/v1/locations/l-2/roles", scope="admin").get_json()["roles"] == []


def test_deleting_an_employee_removes_every_membership_and_denies(chain) -> None:
    assert chain.check("boss", "l-2", "client:view")["allowed"] is True
    answer = chain.delete("/v1/employees/boss")
    assert answer.status_code == 200 and answer.get_json()["after"] is None
    assert chain.get("/v1/employees/boss", scope="admin").status_code == 404
    assert chain.get("/v1/chains/ch-1/employees/boss", scope="admin").status_code == 404
    assert chain.check("boss", "l-2", "client:view")["reason"] == "unknown_employee"
    assert chain.delete("/v1/employees/boss").status_code == 404


def test_deleted_employee_leaves_the_seats_and_keeps_the_audit_trail(chain) -> None:
    before = chain.get("/v1/billing/seats?location=l-2", scope="billing").get_json()
    assert "cat" in {e["employee"] for e in before["employees"]}
    chain.delete("/v1/employees/cat")
    after = chain.get("/v1/billing/seats?location=l-2", scope="billing").get_json()
    assert "cat" not in {e["employee"] for e in after["employees"]}
    assert after["paid_seats"] == before["paid_seats"] - 1
    events = chain.get("/v1/chains/ch-1/security-events?viewer=boss&category=access", scope="security").get_json()
    actions = [(e["action"], e["object"]["id"]) for e in events["events"]]
    assert ("employee:delete", "cat") in actions and ("membership:create", "l-2/cat") in actions


def test_a_location_with_members_is_409_unless_cascade(chain) -> None:
    refused = chain.delete("/v1/locations/l-1")
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "conflict"
    assert chain.get("/v1/locations/l-1", scope="admin").status_code == 200
    chain.put("/v1/locations/l-1/roles/opener", {"rights": ["cashdesk:operate"]})
    assert chain.delete("/v1/locations/l-1?cascade=1").status_code == 200
    assert chain.get("/v1/locations/l-1", scope="admin").status_code == 404
    assert chain.get("/v1/employees/ann/memberships", scope="admin").get_json()["memberships"] == []
    assert chain.check("ann", "l-1", "calendar:view")["reason"] == "unknown_location"
    # the chain and its other location are untouched
    assert chain.check("boss", "l-2", "client:view")["allowed"] is True


def test_a_location_without_members_is_deleted(chain) -> None:
    assert chain.delete("/v1/locations/l-2?cascade=0").status_code == 409
    chain.delete("/v1/locations/l-2/employees/cat")
    assert chain.delete("/v1/locations/l-2").status_code == 200
    assert chain.delete("/v1/locations/l-2").status_code == 404
    assert chain.delete("/v1/locations/l-1?cascade=yes").status_code == 400


def test_a_custom_role_in_use_is_409_then_deleted(chain) -> None:
    chain.put("/v1/chains/ch-1/roles/greeter", {"rights": ["calendar:view"]})
    chain.put("/v1/locations/l-1/roles/opener", {"rights": ["cashdesk:operate"], "inherits": ["greeter"]})
    chain.put("/v1/locations/l-2/employees/cat", {"roles": ["greeter"]})
    used = chain.delete("/v1/chains/ch-1/roles/greeter")
    assert used.status_code == 409 and set(used.get_json()["error"]["used_by"]) == {"cat@l-2", "role:opener"}
    chain.delete("/v1/locations/l-1/roles/opener")
    chain.put("/v1/locations/l-2/employees/cat", {"roles": ["service_provider"]})
    assert chain.delete("/v1/chains/ch-1/roles/greeter").status_code == 200
    assert chain.get("/v1/chains/ch-1/roles/greeter", scope="admin").status_code == 404


@pytest.mark.parametrize("path", ["/v1/employees/ann", "/v1/locations/l-1?cascade=1", "/v1/chains/ch-1/roles/greeter"])
def test_deletes_are_escalation_checked(chain, path) -> None:
    chain.put("/v1/chains/ch-1/roles/greeter", {"rights": ["calendar:view"]})
    refused = chain.delete(f"{path}{'&' if '?' in path else '?'}actor=bob")
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "escalation"
    assert chain.delete(f"{path}{'&' if '?' in path else '?'}actor=boss").status_code == 200
