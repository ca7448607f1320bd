"""D5, D6, D7: ``?actor=`` writes that grant no right but still give power.

The report's directory, reduced: ch-1 = {l-1, l-2}, ch-3 = {l-5}, standalone l-9.
e-owner owns ch-1 chain-wide; e-mgr2 manages l-1 and l-2; e-9mgr manages l-9, whose owner is
e-9owner; e-5 is ch-3's system_manager; e-both manages l-9 and l-5; e-admin is an administrator.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.audit_support import read_log

SEED: list[tuple[str, dict[str, Any]]] = [
    ("/v1/locations/l-1", {"chain": "ch-1"}),
    ("/v1/locations/l-2", {"chain": "ch-1"}),
    ("/v1/locations/l-5", {"chain": "ch-3"}),
    ("/v1/locations/l-9", {"chain": None}),
    *[(f"/v1/employees/{e}", {"active": True, "email": f"{e}@example.com"})
      for e in ("e-owner", "e-mgr2", "e-9mgr", "e-9owner", "e-5", "e-both", "e-admin", "e-new")],
    ("/v1/chains/ch-1/employees/e-owner", {"roles": ["owner"]}),
    ("/v1/locations/l-1/employees/e-mgr2", {"roles": ["manager"]}),
    ("/v1/locations/l-2/employees/e-mgr2", {"roles": ["manager"]}),
    ("/v1/locations/l-9/employees/e-9mgr", {"roles": ["manager"]}),
    ("/v1/locations/l-9/employees/e-9owner", {"roles": ["owner"]}),
    ("/v1/locations/l-5/employees/e-5", {"roles": ["system_manager"]}),
    ("/v1/locations/l-9/employees/e-both", {"roles": ["manager"]}),
    ("/v1/locations/l-5/employees/e-both", {"roles": ["manager"]}),
    ("/v1/locations/l-1/employees/e-admin", {"roles": ["administrator"]}),
]


@pytest.fixture
def directory(api):
    for path, body in SEED:
        response = api.put(path, body)
        assert response.status_code == 200, (path, response.get_json())
    yield api


def refused(response) -> bool:
    return response.status_code == 403 and response.get_json()["error"]["code"] == "escalation"


# -- D5: designating the chain owner needs billing:manage at every location of the chain ---------
def test_a_manager_cannot_make_themselves_the_unbilled_chain_owner(directory) -> None:
    assert refused(directory.put("/v1/chains/ch-1?actor=e-mgr2", {"owner": "e-mgr2"}))
    assert directory.get("/v1/chains/ch-1", scope="admin").get_json()["owner"] is None


def test_the_chain_owner_may_designate_the_chain_owner(directory) -> None:
    response = directory.put("/v1/chains/ch-1?actor=e-owner", {"owner": "e-owner"})
    assert response.status_code == 200, response.get_json()
    assert refused(directory.put("/v1/chains/ch-1?actor=e-mgr2", {"owner": None}))  # clearing it too


def test_a_chain_write_that_keeps_the_owner_needs_only_access_manage(directory) -> None:
    assert directory.put("/v1/chains/ch-1?actor=e-mgr2", {"owner": None}).status_code == 200


# -- D6: moving a location into a chain needs access:manage at every location of that chain -------
def test_a_location_cannot_be_moved_into_a_chain_where_the_actor_holds_nothing(directory) -> None:
    assert refused(directory.put("/v1/locations/l-9?actor=e-9mgr", {"chain": "ch-3"}))
    assert directory.get("/v1/locations/l-9", scope="admin").get_json()["chain"] is None


def test_a_location_cannot_be_moved_into_a_new_chain_by_an_actor(directory) -> None:
    assert refused(directory.put("/v1/locations/l-9?actor=e-9mgr", {"chain": "ch-new"}))


def test_an_actor_managing_both_sides_may_move_the_location(directory) -> None:
    response = directory.put("/v1/locations/l-9?actor=e-both", {"chain": "ch-3"})
    assert response.status_code == 200, response.get_json()


# -- D7: another employee's email (where two-step codes go) needs security:manage ------------------
def test_a_manager_cannot_redirect_the_owners_two_step_codes(directory) -> None:
    response = directory.put("/v1/employees/e-9owner?actor=e-9mgr", {"active": True, "email": "attacker@evil.test"})
    assert refused(response)
    assert directory.get("/v1/employees/e-9owner", scope="admin").get_json()["email"] == "e-9owner@example.com"


def test_an_email_change_with_security_manage_is_audited_with_both_addresses(directory, redis_url: str) -> None:
    response = directory.put("/v1/employees/e-9mgr?actor=e-9owner", {"active": True, "email": "new@example.com"})
    assert response.status_code == 200, response.get_json()
    [event] = [e for e in read_log(redis_url, "l:l-9") if e["action"] == "employee:update"]
    assert event["employee"] == "e-9owner"
    assert event["details"]["before"]["email"] == "e-9mgr@example.com"
    assert event["details"]["after"]["email"] == "new@example.com"


def test_an_employee_may_change_their_own_email(directory) -> None:
    response = directory.put("/v1/employees/e-9mgr?actor=e-9mgr", {"active": True, "email": "me@example.com"})
    assert response.status_code == 200, response.get_json()


def test_the_actor_check_runs_for_an_employee_who_is_a_member_nowhere(directory) -> None:
    assert refused(directory.put("/v1/employees/e-new?actor=e-admin", {"active": True, "email": "x@evil.test"}))
    assert refused(directory.put("/v1/employees/e-brandnew?actor=e-nobody", {"active": True}))
    assert refused(directory.put("/v1/employees/e-new?actor=e-9mgr", {"active": True, "email": "x@evil.test"}))
    assert directory.get("/v1/employees/e-brandnew", scope="admin").status_code == 404


def test_a_manager_may_still_create_an_employee_and_one_with_security_manage_may_fix_an_email(directory) -> None:
    created = directory.put("/v1/employees/e-hired?actor=e-9mgr", {"active": True, "email": "hired@example.com"})
    assert created.status_code == 200, created.get_json()
    fixed = directory.put("/v1/employees/e-new?actor=e-9owner", {"active": True, "email": "fixed@example.com"})
    assert fixed.status_code == 200, fixed.get_json()
