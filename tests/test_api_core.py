"""The HTTP contract of the core: tokens and scopes, bad input, directory writes, checks."""

from __future__ import annotations

import pytest

from sidecar.api import fast_path

ADMIN_ROUTES = [
    ("PUT", "/v1/locations/l-1", {"chain": None}),
    ("GET", "/v1/roles", None),
    ("PUT", "/v1/employees/e-1", {"active": True}),
]
CHECK_BODY = {"employee": "e-1", "location": "l-1", "resource": "calendar", "action": "view"}


def seed(api) -> str:
    for path, body in [
        ("/v1/chains/ch-1", {}),
        ("/v1/locations/l-1", {"chain": "ch-1"}),
        ("/v1/locations/l-2", {"chain": "ch-1"}),
        ("/v1/employees/boss", {"active": True}),
        ("/v1/employees/e-1", {"active": True, "email": "e1@example.test"}),
        ("/v1/employees/e-2", {"active": True}),
        ("/v1/chains/ch-1/employees/boss", {"roles": ["owner"]}),
        ("/v1/chains/ch-1", {"owner": "boss"}),  # a designated owner is a member first
        ("/v1/locations/l-1/employees/e-1", {"roles": ["administrator"], "deny": ["payment:process"]}),
    ]:
        response = api.put(path, body)
        assert response.status_code == 200, (path, response.get_json())
    return response.get_json()["revision"]


# -- tokens and scopes -------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "bearer  "])
def test_missing_or_unknown_token_is_401(api, header) -> None:
    headers = {"Authorization": header} if header else {}
    response = api.client.post("/v1/check", json=CHECK_BODY, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("scope", ["admin", "billing", "audit", "security", "mfa"])
def test_check_needs_the_check_scope(api, scope) -> None:
    response = api.post("/v1/check", CHECK_BODY, scope=scope)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("scope", ["check", "billing", "audit", "security", "mfa"])
@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_directory_needs_the_admin_scope(api, scope, method, path, body) -> None:
    assert api.call(method, path, json=body, scope=scope).status_code == 403


@pytest.mark.parametrize("path", ["/livez", "/metrics", "/openapi.json", "/readyz"])
def test_open_routes_need_no_token(api, path) -> None:
    assert api.get(path).status_code == 200


def test_tokens_file_holds_only_hashes(api, settings) -> None:
    stored = settings.tokens_path.read_text()
    assert all(token not in stored for token in api.tokens.values())


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/check", b"{not json", 400, "invalid_json"),
        ("/v1/check", b"[1, 2]", 400, "invalid_json"),
        ("/v1/check", b"", 400, "invalid_json"),
        ("/v1/check", {**CHECK_BODY, "employee": 7}, 400, "invalid_id"),
        ("/v1/check", {**CHECK_BODY, "employee": "a/b"}, 400, "invalid_id"),
        ("/v1/check", {**CHECK_BODY, "location": "x" * 65}, 400, "invalid_id"),
        ("/v1/check", {**CHECK_BODY, "resource": None}, 400, "invalid_request"),
        ("/v1/check", {**CHECK_BODY, "action": "x" * 65}, 400, "invalid_request"),
        ("/v1/check", {**CHECK_BODY, "context": "yes"}, 400, "invalid_request"),
        ("/v1/check", {**CHECK_BODY, "context": {"mfa": "true"}}, 400, "invalid_request"),
        ("/v1/check", {**CHECK_BODY, "min_revision": "soon"}, 400, "invalid_request"),
        ("/v1/check/batch", {"employee": "e-1", "location": "l-1", "checks": []}, 400, "invalid_request"),
        ("/v1/check/batch", {"employee": "e-1", "location": "l-1",
                             "checks": [{"resource": "calendar", "action": "view"}] * 101}, 400, "too_many_checks"),
        ("/v1/check/batch", {"employee": "e-1", "location": "l-1", "checks": ["calendar:view"]}, 400,
         "invalid_request"),
    ],
)
def test_bad_check_input_is_a_json_4xx(api, path, body, status, code) -> None:
    kwargs = {"data": body, "content_type": "application/json"} if isinstance(body, bytes) else {"json": body}
    response = api.client.post(path, headers={"Authorization": f"Bearer {api.tokens['check']}"}, **kwargs)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PUT", "/v1/employees/bad id", {"active": True}, 400, "invalid_id"),
        ("PUT", "/v1/employees/e-9", {"active": "yes"}, 400, "invalid_request"),
        ("PUT", "/v1/employees/e-9", {}, 400, "invalid_request"),
        ("PUT", "/v1/employees/e-9", {"active": True, "email": "nope"}, 400, "invalid_request"),
        ("PUT", "/v1/employees/e-9", {"active": True, "email": "x@y.z\nBcc: evil@example.test"}, 400,
         "invalid_request"),
        ("PUT", "/v1/employees/e-9", {"active": True, "email": "Eve <eve@example.test>"}, 400, "invalid_request"),
        ("PUT", "/v1/employees/e-9", {"active": True, "role": "owner"}, 400, "invalid_request"),
        ("PUT", "/v1/locations/l-1/employees/e-2", {"roles": ["wizard"]}, 400, "unknown_role"),
        ("PUT", "/v1/locations/l-1/employees/e-2", {"roles": [], "allow": ["calendar:fly"]}, 400, "unknown_right"),
        ("PUT", "/v1/locations/l-1/employees/e-2", {"roles": "owner"}, 400, "invalid_request"),
        ("PUT", "/v1/locations/l-1/employees/e-2", {"allow": []}, 400, "invalid_request"),
        ("PUT", "/v1/locations/l-1/employees/e-404", {"roles": []}, 404, "not_found"),
        ("PUT", "/v1/locations/l-404/employees/e-2", {"roles": []}, 404, "not_found"),
        ("PUT", "/v1/chains/ch-404/employees/e-2", {"roles": []}, 404, "not_found"),
        ("PUT", "/v1/chains/ch-1/employees/e-2", {"roles": [], "provides_services": True}, 400, "invalid_request"),
        ("PUT", "/v1/chains/ch-1/roles/owner", {"rights": ["calendar:view"]}, 409, "conflict"),
        ("PUT", "/v1/chains/ch-1/roles/r1", {"rights": ["calendar:fly"]}, 400, "unknown_right"),
        ("PUT", "/v1/chains/ch-1/roles/r1", {"rights": [], "inherits": ["ghost"]}, 400, "unknown_role"),
        ("PUT", "/v1/locations/l-1", {"chain": "bad chain"}, 400, "invalid_id"),
        ("DELETE", "/v1/locations/l-2/employees/e-2", None, 404, "not_found"),
        ("GET", "/v1/employees/e-404", None, 404, "not_found"),
        ("PATCH", "/v1/employees/e-1", {}, 405, "method_not_allowed"),
        ("GET", "/v1/nowhere", None, 404, "not_found"),
    ],
)
def test_bad_directory_input_changes_nothing(api, redis_client, method, path, body, status, code) -> None:
    seed(api)
    before = {key: redis_client.dump(key) for key in redis_client.keys("sc:*")}
    response = api.call(method, path, json=body, scope="admin")
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert {key: redis_client.dump(key) for key in redis_client.keys("sc:*")} == before


def test_body_over_one_mebibyte_is_413(api) -> None:
    response = api.client.post("/v1/check", data=b"{" + b" " * (1024 * 1024 + 1) + b"}",
                               content_type="application/json",
                               headers={"Authorization": f"Bearer {api.tokens['check']}"})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "body_too_large"


def test_request_id_is_echoed_or_made(api) -> None:
    assert api.get("/livez", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    assert len(api.get("/livez").headers["X-Request-Id"]) == 32


# -- decisions over HTTP ----------------------------------------------------------------------
def test_check_follows_the_directory(api) -> None:
    revision = seed(api)
    assert api.check("e-1", "l-1", "appointment:create", min_revision=revision)["allowed"] is True
    assert api.check("e-1", "l-1", "payment:process")["reason"] == "denied_by_override"
    assert api.check("e-1", "l-2", "appointment:create")["reason"] == "not_a_member"
    assert api.check("boss", "l-2", "client:export")["reason"] == "mfa_required"
    assert api.check("boss", "l-2", "client:export", context={"mfa": True})["allowed"] is True
    assert api.check("ghost", "l-1", "calendar:view")["reason"] == "unknown_employee"
    assert api.check("e-1", "l-404", "calendar:view")["reason"] == "unknown_location"


def test_batch_answers_in_order(api) -> None:
    seed(api)
    body = {"employee": "e-1", "location": "l-1",
            "checks": [{"resource": "payment", "action": "process"}, {"resource": "calendar", "action": "view"},
                       {"resource": "no", "action": "such"}]}
    results = api.post("/v1/check/batch", body, scope="check").get_json()["results"]
    assert [(r["resource"], r["allowed"], r["reason"]) for r in results] == [
        ("payment", False, "denied_by_override"), ("calendar", True, "granted"), ("no", False, "unknown_right")]


def test_explain_names_the_rule(api) -> None:
    seed(api)
    body = {"employee": "e-1", "location": "l-1", "resource": "appointment", "action": "create"}
    answer = api.post("/v1/check?explain=1", body, scope="check").get_json()
    assert answer["explanation"]["matched_rule"] == ["role:administrator", "*", "appointment", "create", "allow"]


def test_rights_route_lists_effective_rights_sorted(api) -> None:
    seed(api)
    rights = api.get("/v1/locations/l-1/employees/e-1/rights", scope="check").get_json()["rights"]
    assert rights == sorted(rights)
    assert "appointment:create" in rights and "payment:process" not in rights


def test_deactivation_denies_everything(api) -> None:
    seed(api)
    api.check("e-1", "l-1", "calendar:view")
    revision = api.put("/v1/employees/e-1", {"active": False}).get_json()["revision"]
    assert api.check("e-1", "l-1", "calendar:view", min_revision=revision)["reason"] == "inactive_employee"


def test_membership_can_be_read_and_removed(api) -> None:
    seed(api)
    stored = api.get("/v1/locations/l-1/employees/e-1", scope="admin").get_json()
    assert stored["roles"] == ["administrator"] and stored["deny"] == ["payment:process"]
    revision = api.delete("/v1/locations/l-1/employees/e-1").get_json()["revision"]
    assert api.get("/v1/locations/l-1/employees/e-1", scope="admin").status_code == 404
    assert api.check("e-1", "l-1", "calendar:view", min_revision=revision)["allowed"] is False


def test_chain_wide_membership_reaches_a_location_added_later(api) -> None:
    seed(api)
    api.put("/v1/employees/cc", {"active": True})
    api.put("/v1/chains/ch-1/employees/cc", {"roles": ["call_center"]})
    assert api.check("cc", "l-1", "appointment:create")["allowed"] is True
    revision = api.put("/v1/locations/l-3", {"chain": "ch-1"}).get_json()["revision"]
    assert api.check("cc", "l-3", "appointment:create", min_revision=revision)["allowed"] is True


def test_location_moving_into_a_chain_keeps_its_memberships(api) -> None:
    seed(api)
    api.put("/v1/locations/solo", {"chain": None})
    api.put("/v1/locations/solo/employees/e-2", {"roles": ["service_provider"]})
    assert api.check("e-2", "solo", "appointment:create")["allowed"] is True
    revision = api.put("/v1/locations/solo", {"chain": "ch-1"}).get_json()["revision"]
    assert api.check("e-2", "solo", "appointment:create", min_revision=revision)["allowed"] is True
    assert api.check("boss", "solo", "calendar:view", min_revision=revision)["allowed"] is True


def test_custom_role_is_usable_and_inherits(api) -> None:
    seed(api)
    assert api.put("/v1/chains/ch-1/roles/senior", {"rights": ["payment:refund"],
                                                     "inherits": ["service_provider"]}).status_code == 200
    revision = api.put("/v1/locations/l-2/employees/e-2", {"roles": ["senior"]}).get_json()["revision"]
    assert api.check("e-2", "l-2", "payment:refund", min_revision=revision)["allowed"] is True
    assert api.check("e-2", "l-2", "appointment:create")["allowed"] is True
    assert api.get("/v1/chains/ch-1/roles/senior", scope="admin").get_json()["inherits"] == ["service_provider"]


def test_custom_role_cycle_is_refused(api) -> None:
    seed(api)
    api.put("/v1/chains/ch-1/roles/a", {"rights": []})
    api.put("/v1/chains/ch-1/roles/b", {"rights": [], "inherits": ["a"]})
    response = api.put("/v1/chains/ch-1/roles/a", {"rights": [], "inherits": ["b"]})
    assert response.status_code == 409


def test_roles_route_lists_the_templates(api) -> None:
    roles = {r["role"]: r["rights"] for r in api.get("/v1/roles", scope="admin").get_json()["roles"]}
    assert len(roles) == 10 and "payment:process" in roles["administrator"]


# -- no escalation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("actor_roles", "grant", "status"),
    [
        (["system_manager"], {"roles": ["viewer"]}, 200),
        (["system_manager"], {"roles": ["administrator"]}, 403),  # they lack payment:process etc.
        (["system_manager"], {"roles": [], "allow": ["billing:manage"]}, 200),
        (["system_manager"], {"roles": [], "allow": ["payment:refund"]}, 403),
        (["administrator"], {"roles": ["viewer"]}, 403),  # no access:manage at all
        (["owner"], {"roles": ["manager"]}, 200),
    ],
)
def test_actor_may_grant_only_rights_they_hold(api, actor_roles, grant, status) -> None:
    seed(api)
    api.put("/v1/employees/actor", {"active": True})
    api.put("/v1/locations/l-1/employees/actor", {"roles": actor_roles})
    response = api.put("/v1/locations/l-1/employees/e-2?actor=actor", grant)
    assert response.status_code == status, response.get_json()
    if status == 403:
        assert response.get_json()["error"]["code"] == "escalation"
        assert api.get("/v1/locations/l-1/employees/e-2", scope="admin").status_code == 404


def test_actor_cannot_lift_themselves(api) -> None:
    seed(api)
    api.put("/v1/employees/actor", {"active": True})
    api.put("/v1/locations/l-1/employees/actor", {"roles": ["system_manager"]})
    response = api.put("/v1/locations/l-1/employees/actor?actor=actor", {"roles": ["owner"]})
    assert response.status_code == 403


def test_actor_needs_access_manage_chain_wide_for_chain_roles(api) -> None:
    seed(api)
    api.put("/v1/employees/actor", {"active": True})
    api.put("/v1/locations/l-1/employees/actor", {"roles": ["owner"]})  # only at l-1, not l-2
    response = api.put("/v1/chains/ch-1/employees/e-2?actor=actor", {"roles": ["viewer"]})
    assert response.status_code == 403
    assert api.put("/v1/chains/ch-1/employees/e-2?actor=boss", {"roles": ["viewer"]}).status_code == 200


# -- operations -------------------------------------------------------------------------------
def test_metrics_count_decisions(api) -> None:
    seed(api)
    api.check("e-1", "l-1", "calendar:view")
    text = api.get("/metrics").data.decode()
    assert 'sidecar_decisions_total{allowed="true",reason="granted"}' in text
    assert "sidecar_http_request_duration_seconds_bucket" in text


def test_openapi_lists_the_contract_routes(api) -> None:
    paths = api.get("/openapi.json").get_json()["paths"]
    assert {"/v1/check", "/v1/check/batch", "/v1/locations/{location}/employees/{employee}"} <= set(paths)


def test_request_log_is_one_json_line_with_the_decision(api, capsys) -> None:
    import json

    seed(api)
    capsys.readouterr()
    api.post("/v1/check", {"employee": "e-1", "location": "l-1", "resource": "calendar", "action": "view"},
             scope="check", headers={"X-Request-Id": "req-42"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"request"' in line]
    assert lines[-1]["request_id"] == "req-42"
    assert lines[-1]["route"] == "/v1/check" and lines[-1]["allowed"] is True and lines[-1]["status"] == 200


def _standalone_with_actor(api, actor_roles: list[str]) -> None:
    seed(api)
    api.put("/v1/locations/solo", {"chain": None})
    api.put("/v1/employees/actor", {"active": True})
    api.put("/v1/locations/solo/employees/actor", {"roles": actor_roles})


def test_actor_may_not_move_a_location_into_a_chain_whose_members_would_gain_rights_they_lack(api) -> None:
    _standalone_with_actor(api, ["manager"])  # ch-1's chain-wide owner would gain billing:manage at solo
    response = api.put("/v1/locations/solo?actor=actor", {"chain": "ch-1"})
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "escalation"
    assert api.get("/v1/locations/solo", scope="admin").get_json()["chain"] is None


def test_actor_may_not_create_a_location(api) -> None:
    _standalone_with_actor(api, ["owner"])
    assert api.put("/v1/locations/new-one?actor=actor", {"chain": "ch-1"}).status_code == 403
    assert api.get("/v1/locations/new-one", scope="admin").status_code == 404


@pytest.mark.parametrize(("actor_roles", "status"), [(["manager"], 403), (["owner"], 200)])
def test_designating_a_location_owner_needs_billing_manage(api, actor_roles, status) -> None:
    _standalone_with_actor(api, actor_roles)
    assert api.put("/v1/locations/solo?actor=actor", {"chain": None, "owner": "actor"}).status_code == status


def test_a_trusted_service_may_move_a_location(api) -> None:
    _standalone_with_actor(api, ["manager"])
    assert api.put("/v1/locations/solo", {"chain": "ch-1"}).status_code == 200


@pytest.mark.parametrize("revision", ["²", "\u0661-\u0661", "1-²", "12345678901234567890123-0"])
def test_a_revision_in_other_digits_is_a_400(api, revision) -> None:
    seed(api)
    body = {"employee": "e-1", "location": "l-1", "resource": "calendar", "action": "view", "min_revision": revision}
    response = api.post("/v1/check", body, scope="check")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_request"


def test_moving_a_location_updates_where_its_people_are_members(api, redis_client) -> None:
    seed(api)
    api.put("/v1/locations/solo", {"chain": None})
    api.put("/v1/locations/solo/employees/e-2", {"roles": ["viewer"]})
    assert redis_client.smembers("sc:emp:e-2:tenants") == {b"l:solo"}
    api.put("/v1/locations/solo", {"chain": "ch-1"})
    assert redis_client.smembers("sc:emp:e-2:tenants") == {b"c:ch-1"}


def test_every_fourth_fast_path_answer_lets_waiting_requests_run(api, monkeypatch) -> None:
    """The yield that keeps the p99 down (api/fast_path.py): once per ``YIELD_EVERY`` answers,
    whatever they answered, never more often."""
    yields: list[int] = []
    monkeypatch.setattr(fast_path.os, "sched_yield", lambda: yields.append(1))
    for n in range(4 * fast_path.YIELD_EVERY):
        response = api.post("/v1/check", CHECK_BODY if n % 2 else {}, scope="check")
        assert response.status_code in (200, 400)
    assert len(yields) == 4
