"""Logins: every template may sign in; `deny: [login:*]` blocks sign-in and nothing else."""

from __future__ import annotations

import pytest

from tests.audit_support import seed


@pytest.mark.parametrize("role", ["administrator", "call_center", "service_provider", "accountant", "marketer",
                                  "smm_manager", "viewer", "system_manager", "manager", "owner"])
def test_every_template_may_sign_in(api, role) -> None:
    seed(api)
    assert api.put("/v1/locations/l-1/employees/idle", {"roles": [role]}).status_code == 200
    for right in ("login:password", "login:mfa"):
        assert api.check("idle", "l-1", right)["allowed"], (role, right)


def test_a_deny_override_on_login_star_blocks_sign_in_only(api) -> None:
    seed(api)
    written = api.put("/v1/locations/l-1/employees/e-1", {"roles": ["administrator"], "deny": ["login:*"]})
    assert written.status_code == 200, written.get_json()
    for right in ("login:password", "login:mfa"):
        answer = api.check("e-1", "l-1", right)
        assert (answer["allowed"], answer["reason"]) == (False, "denied_by_override")
    assert api.check("e-1", "l-1", "appointment:create")["allowed"]
    explained = api.post("/v1/check?explain=1", {"employee": "e-1", "location": "l-1", "resource": "login",
                                                 "action": "password"}, scope="check").get_json()
    assert explained["explanation"]["overrides"]["deny"] == ["login:*"]
    rights = api.get("/v1/locations/l-1/employees/e-1/rights", scope="check").get_json()["rights"]
    assert "appointment:create" in rights and not any(r.startswith("login:") for r in rights)


def test_an_unknown_wildcard_is_refused(api) -> None:
    seed(api)
    answer = api.put("/v1/locations/l-1/employees/e-1", {"roles": [], "deny": ["nothing:*"]})
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "unknown_right"
