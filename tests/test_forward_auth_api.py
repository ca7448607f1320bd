"""``/v1/forward-auth`` through the Flask test client, with a real Redis and the repo's policies.

What the nginx end-to-end tests cannot show cheaply: the 503 without a key, Traefik and Envoy
style calls, disagreeing proxies, ``amr: [mfa]`` for a ``requires_mfa`` right, the audit of a
critical right, every HTTP method, the route table following a policy reload, and a broken
``routes.yaml`` failing the start. The pure parts (JWT, paths, routes) have their own tests.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis

from sidecar.api.context import runtime_of
from sidecar.api.forward_auth import _raw_target
from sidecar.app import create_app
from sidecar.forward_auth.jwt_auth import JwtVerifier
from sidecar.policy.files import PolicyFileError
from sidecar.store.audit_log import AuditLog
from tests.conftest import POLICY_DIR, Api, make_settings, make_tokens, wait_until

SECRET = "forward-auth-test-secret-0123456789abcdef"  # >= 32 bytes: no PyJWT warning

# ch-1 holds l-1. boss: owner chain-wide (everything). e-1: administrator at l-1 (calendar,
# appointments, client:view; no client:delete, no report:view). mk: marketer at l-1
# (client:export, which requires mfa; report:view).
SEED: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chains/ch-1", {}),
    ("/v1/locations/l-1", {"chain": "ch-1"}),
    ("/v1/employees/boss", {"active": True}),
    ("/v1/employees/e-1", {"active": True}),
    ("/v1/employees/mk", {"active": True}),
    ("/v1/chains/ch-1/employees/boss", {"roles": ["owner"]}),
    ("/v1/locations/l-1/employees/e-1", {"roles": ["administrator"]}),
    ("/v1/locations/l-1/employees/mk", {"roles": ["marketer"]}),
]


def token(sub: str = "e-1", **claims: Any) -> str:
    # made at collection time: an hour outlives the suite
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600, **claims}, SECRET, algorithm="HS256")


def bearer(sub: str = "e-1", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, **claims)}"}


def nginx(method: str, uri: str) -> dict[str, str]:
    return {"X-Original-Method": method, "X-Original-URI": uri}


def traefik(method: str, uri: str) -> dict[str, str]:
    return {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}


@pytest.fixture
def fa(tmp_path: Path, app_factory) -> Any:
    """An Api whose app has a JWT secret, with SEED written."""
    settings = make_settings(tmp_path, jwt_secret=SECRET)
    api = Api(app_factory(settings), make_tokens(settings))
    for path, body in SEED:
        response = api.put(path, body)
        assert response.status_code == 200, (path, response.get_json())
    return api


def call(api: Api, headers: dict[str, str], *, method: str = "GET", path: str = "/v1/forward-auth") -> Any:
    return api.client.open(path, method=method, headers=headers)


def test_without_a_jwt_key_it_answers_503(api: Api) -> None:
    response = call(api, {**bearer(), **nginx("GET", "/locations/l-1/calendar")})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"


def test_an_allowed_request_answers_200_with_employee_and_decision_headers(fa: Api) -> None:
    response = call(fa, {**bearer("e-1"), **nginx("GET", "/locations/l-1/calendar")})
    assert response.status_code == 200
    assert response.headers["X-Employee-Id"] == "e-1"
    assert response.headers["X-Decision-Id"] == response.get_json()["decision_id"]
    assert response.get_json()["right"] == "calendar:view"


def test_a_denied_request_answers_403_with_the_reason(fa: Api) -> None:
    response = call(fa, {**bearer("e-1"), **nginx("DELETE", "/locations/l-1/clients/c-9")})
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert (error["code"], error["reason"], error["right"]) == ("denied", "not_granted", "client:delete")
    assert "X-Employee-Id" not in response.headers


@pytest.mark.parametrize(("headers", "challenge"), [
    ({}, "Bearer"),
    ({"Authorization": "Bearer not.a.jwt"}, 'Bearer error="invalid_token"'),
    ({"Authorization": "Basic ZTox"}, "Bearer"),
])
def test_a_missing_or_bad_jwt_answers_401_with_a_bearer_challenge(fa: Api, headers: dict[str, str],
                                                                  challenge: str) -> None:
    response = call(fa, {**headers, **nginx("GET", "/locations/l-1/calendar")})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_traefik_headers_name_the_original_request(fa: Api) -> None:
    allowed = call(fa, {**bearer("e-1"), **traefik("GET", "/locations/l-1/calendar")})
    denied = call(fa, {**bearer("e-1"), **traefik("GET", "/locations/l-1/reports")})
    assert (allowed.status_code, denied.status_code) == (200, 403)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/forward-auth/locations/l-1/calendar", 200),
    ("POST", "/v1/forward-auth/locations/l-1/appointments", 200),
    ("PUT", "/v1/forward-auth/locations/l-1/appointments/a-1", 200),
    ("DELETE", "/v1/forward-auth/locations/l-1/appointments/a-1", 200),
    ("HEAD", "/v1/forward-auth/locations/l-1/calendar", 200),
    ("DELETE", "/v1/forward-auth/locations/l-1/clients/c-1", 403),
    ("PATCH", "/v1/forward-auth/locations/l-1/calendar", 403),
    ("OPTIONS", "/v1/forward-auth/locations/l-1/calendar", 403),
    ("GET", "/v1/forward-auth/locations/l-1/calendar?view=week", 200),
])
def test_envoy_sends_the_original_method_and_path_after_the_prefix(fa: Api, method: str, path: str,
                                                                   status: int) -> None:
    assert call(fa, bearer("e-1"), method=method, path=path).status_code == status


@pytest.mark.parametrize("path", [
    "/v1/forward-auth//locations/l-1//calendar",
    "/v1/forward-auth/locations/l-1/calendar/",
])
def test_an_envoy_path_is_normalised_not_redirected(fa: Api, path: str) -> None:
    response = call(fa, bearer("e-1"), path=path)
    assert response.status_code == 200
    assert response.get_json()["right"] == "calendar:view"


@pytest.mark.parametrize("path", [
    "/v1/forward-auth/locations/l-1/clients%2Fexport",
    "/v1/forward-auth/locations/l-1/clients/%252e%252e/export",
    "/v1/forward-auth/locations/l-1;x/calendar",
])
def test_an_envoy_path_trick_is_403(fa: Api, path: str) -> None:
    response = call(fa, bearer("boss", amr=["mfa"]), path=path)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


def test_nginx_and_traefik_headers_that_disagree_are_403(fa: Api) -> None:
    headers = {**bearer("e-1"), **nginx("GET", "/locations/l-1/clients/export"),
               **traefik("GET", "/locations/l-1/calendar")}
    response = call(fa, headers)
    assert response.status_code == 403
    assert response.get_json()["error"]["reason"] == "ambiguous_original_request"


def test_a_header_disagreeing_with_the_envoy_path_is_403(fa: Api) -> None:
    headers = {**bearer("e-1"), **nginx("GET", "/locations/l-1/clients/export")}
    response = call(fa, headers, path="/v1/forward-auth/locations/l-1/calendar")
    assert response.get_json()["error"]["reason"] == "ambiguous_original_request"


@pytest.mark.parametrize(("claims", "status", "reason"), [
    ({"amr": ["pwd", "mfa"]}, 200, "granted"),
    ({"amr": ["pwd"]}, 403, "mfa_required"),
    ({}, 403, "mfa_required"),
    ({"amr": "mfa"}, 403, "mfa_required"),  # amr must be a list
])
def test_amr_with_mfa_satisfies_a_requires_mfa_right(fa: Api, claims: dict[str, Any], status: int,
                                                     reason: str) -> None:
    response = call(fa, {**bearer("mk", **claims), **nginx("GET", "/locations/l-1/clients/export")})
    assert response.status_code == status
    body = response.get_json()
    assert (body if status == 200 else body["error"])["reason"] == reason


@pytest.mark.parametrize(("headers", "status", "reason"), [
    ({"X-Location-Id": "l-1"}, 200, None),
    ({}, 403, "no_location"),
    ({"X-Location-Id": "l 1"}, 403, "invalid_location"),
])
def test_a_route_without_location_takes_it_from_x_location_id(fa: Api, headers: dict[str, str], status: int,
                                                               reason: str | None) -> None:
    response = call(fa, {**bearer("mk"), **nginx("GET", "/reports"), **headers})
    assert response.status_code == status
    if reason is not None:
        assert response.get_json()["error"]["reason"] == reason


def test_an_unmapped_route_is_403_no_route(fa: Api) -> None:
    response = call(fa, {**bearer("boss"), **nginx("GET", "/locations/l-1/nowhere")})
    assert response.status_code == 403
    assert response.get_json()["error"]["reason"] == "no_route"


def test_the_call_needs_no_sidecar_token_but_a_sidecar_token_is_not_a_jwt(fa: Api) -> None:
    response = call(fa, {"Authorization": f"Bearer {fa.tokens['all']}", **nginx("GET", "/locations/l-1/calendar")})
    assert response.status_code == 401


def test_a_method_outside_the_list_is_a_json_405_with_allow(fa: Api) -> None:
    response = call(fa, {**bearer("e-1"), **nginx("GET", "/locations/l-1/calendar"), "X-Request-Id": "rid-405"},
                    method="TRACE")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
    assert response.headers["X-Request-Id"] == "rid-405"


def test_head_answers_the_get_headers_without_a_body(fa: Api) -> None:
    response = call(fa, {**bearer("e-1"), **nginx("GET", "/locations/l-1/calendar")}, method="HEAD")
    assert response.status_code == 200
    assert response.headers["X-Employee-Id"] == "e-1"
    assert int(response.headers["Content-Length"]) > 0
    assert response.get_data() == b""


def test_the_edge_limits_apply_to_forward_auth(fa: Api) -> None:
    headers = {**bearer("e-1"), **nginx("GET", "/locations/l-1/calendar")}
    too_large = fa.client.open("/v1/forward-auth", method="POST", headers=headers, data=b"x" * (1024 * 1024 + 1))
    assert (too_large.status_code, too_large.get_json()["error"]["code"]) == (413, "body_too_large")
    long_header = call(fa, {**headers, "X-Padding": "p" * 9000})
    assert (long_header.status_code, long_header.get_json()["error"]["code"]) == (431, "header_too_large")
    with_body = fa.client.open("/v1/forward-auth", method="POST", headers=headers, data=b'{"ignored": true}')
    assert with_body.status_code == 200  # a body (Envoy may pass the client's) is read and ignored


def test_a_configured_prefix_is_served_beside_the_default(tmp_path: Path, app_factory) -> None:
    settings = make_settings(tmp_path, jwt_secret=SECRET, forward_auth_prefix="/auth")
    api = Api(app_factory(settings), make_tokens(settings))
    for path, body in SEED:
        api.put(path, body)
    for path in ("/auth/locations/l-1/calendar", "/v1/forward-auth/locations/l-1/calendar"):
        response = call(api, bearer("e-1"), path=path)
        assert (response.status_code, response.get_json()["right"]) == (200, "calendar:view"), path
    assert call(api, {**bearer("e-1"), **nginx("GET", "/locations/l-1/calendar")}, path="/auth").status_code == 200
    assert call(api, bearer("e-1"), path="/authx/locations/l-1/calendar").status_code == 404


def test_each_call_logs_one_request_line_with_its_decision(fa: Api, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    call(fa, {**bearer("e-1"), **nginx("GET", "/locations/l-1/calendar"), "X-Request-Id": "rid-log-1"})
    call(fa, bearer("e-1"), path="/v1/forward-auth/locations/l-1/reports")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert [(r["route"], r["status"], r.get("right"), r.get("allowed")) for r in requests] == [
        ("/v1/forward-auth", 200, "calendar:view", True),
        ("/v1/forward-auth/<fa_path:rest>", 403, "report:view", False)]
    assert requests[0]["request_id"] == "rid-log-1"


def test_a_remembered_jwt_stops_working_when_it_expires(fa: Api) -> None:
    """Through the route: the first call verifies and remembers the token; once it has expired
    the call is a 401 ``expired``, not an answer from the cache."""
    runtime = runtime_of(fa.app)
    runtime.jwt_verifier = JwtVerifier(secret=SECRET, leeway=0)  # read per call; no leeway to wait out
    expires = int(time.time()) + 1
    headers = {"Authorization": f"Bearer {token('e-1', exp=expires)}", **nginx("GET", "/locations/l-1/calendar")}
    assert call(fa, headers).status_code == 200
    assert runtime.jwt_verifier.cached(token("e-1", exp=expires))
    while time.time() < expires:
        time.sleep(0.05)
    response = call(fa, headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["reason"] == "expired"


def read_log(url: str, log: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(url)
    try:
        return list(AuditLog(client, 400).newest_first(log))
    finally:
        client.close()


@pytest.mark.parametrize(("employee", "claims", "outcome"), [
    ("boss", {"amr": ["mfa"]}, "allowed"),
    ("mk", {}, "denied"),
])
def test_a_critical_right_is_audited_with_ip_device_and_source(fa: Api, redis_url: str, employee: str,
                                                               claims: dict[str, Any], outcome: str) -> None:
    headers = {**bearer(employee, **claims), **nginx("GET", "/locations/l-1/clients/export"),
               "X-Forwarded-For": "203.0.113.7, 10.0.0.1", "User-Agent": "Browser/1.0", "X-Request-Id": "req-fa-1"}
    response = call(fa, headers)

    def forward_auth_events() -> list[dict[str, Any]]:
        return [e for e in read_log(redis_url, "c:ch-1") if (e.get("details") or {}).get("source") == "forward_auth"]

    assert wait_until(forward_auth_events, timeout_s=5)  # check events are shipped in batches, not inline
    (event,) = forward_auth_events()
    assert (event["action"], event["outcome"], event["employee"], event["location"]) == (
        "client:export", outcome, employee, "l-1")
    assert (event["ip"], event["device"]["user_agent"], event["request_id"]) == ("203.0.113.7", "Browser/1.0",
                                                                                 "req-fa-1")
    assert event["details"]["decision_id"] == response.headers["X-Decision-Id"]


def test_an_ordinary_right_is_not_audited(fa: Api, redis_url: str) -> None:
    call(fa, {**bearer("e-1"), **nginx("GET", "/locations/l-1/calendar")})
    assert [e for e in read_log(redis_url, "c:ch-1") if (e.get("details") or {}).get("source") == "forward_auth"] == []


def copy_policies(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    return policies


def test_the_route_table_follows_a_policy_reload(tmp_path: Path, app_factory) -> None:
    policies = copy_policies(tmp_path)
    settings = make_settings(tmp_path, jwt_secret=SECRET, policy_dir=policies)
    application = app_factory(settings)
    api = Api(application, make_tokens(settings))
    for path, body in SEED:
        api.put(path, body)
    headers = {**bearer("e-1"), **nginx("GET", "/locations/l-1/agenda")}
    assert call(api, headers).get_json()["error"]["reason"] == "no_route"
    routes = policies / "routes.yaml"
    routes.write_text(routes.read_text() + '  - {method: GET, path: "/locations/{location}/agenda", '
                                           'right: "calendar:view"}\n')
    assert runtime_of(application).reload_policies()
    assert call(api, headers).status_code == 200


def test_a_broken_routes_file_fails_the_start_naming_file_and_line(tmp_path: Path, redis_url: str) -> None:
    policies = copy_policies(tmp_path)
    routes = policies / "routes.yaml"
    lines = routes.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "calendar:view" in text)
    lines[line - 1] = lines[line - 1].replace("calendar:view", "calendar:peek")
    routes.write_text("\n".join(lines) + "\n")
    settings = make_settings(tmp_path, jwt_secret=SECRET, policy_dir=policies)
    with pytest.raises(PolicyFileError, match=rf"routes\.yaml:{line}:.*calendar:peek"):
        create_app(settings, redis_url=redis_url)  # fails before anything starts: nothing to stop


@pytest.mark.parametrize(("environ", "target"), [
    ({"RAW_URI": "/v1/forward-auth/a%2Fb?x=1", "PATH_INFO": "/v1/forward-auth/a/b"}, "/v1/forward-auth/a%2Fb?x=1"),
    ({"REQUEST_URI": "/v1/forward-auth/%2e%2e", "PATH_INFO": "/"}, "/v1/forward-auth/%2e%2e"),
    ({"PATH_INFO": "/v1/forward-auth/a b/\u00c3\u00a9", "QUERY_STRING": "x=1"}, "/v1/forward-auth/a%20b/%C3%A9?x=1"),
    ({"SCRIPT_NAME": "/mount", "PATH_INFO": "/v1/forward-auth"}, "/mount/v1/forward-auth"),
])
def test_the_raw_target_comes_from_raw_uri_else_a_requoted_path_info(environ: dict[str, str], target: str) -> None:
    assert _raw_target(environ) == target
