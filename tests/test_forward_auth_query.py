"""From a forward-auth call to (employee, location, right, mfa): forward_auth.query.build_query."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
import yaml

from sidecar.errors import SidecarError
from sidecar.forward_auth import ForwardAuthQuery, JwtVerifier, RouteTable, build_query, load_routes

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
SECRET = "q" * 40


@pytest.fixture(scope="module")
def routes() -> RouteTable:
    rights = set(yaml.safe_load((POLICY_DIR / "catalogue.yaml").read_text())["rights"])
    return load_routes(POLICY_DIR / "routes.yaml", rights)


def bearer(**claims: object) -> str:
    payload = {"sub": "e-1", "exp": int(time.time()) + 3600, **claims}  # minted at collection: outlive a slow run
    return "Bearer " + jwt.encode(payload, SECRET, algorithm="HS256")


def nginx(method: str, uri: str, **headers: str) -> dict[str, str]:
    return {"X-Original-Method": method, "X-Original-URI": uri, **headers}


def query(
    routes: RouteTable, headers: dict[str, str], target: str = "/v1/forward-auth", method: str = "GET"
) -> ForwardAuthQuery:
    return build_query(
        verifier=JwtVerifier(secret=SECRET), routes=routes, method=method, target=target, headers=headers
    )


def test_location_right_and_mfa_from_nginx_headers(routes: RouteTable) -> None:
    found = query(routes, nginx("GET", "/locations/l-1/clients/export", Authorization=bearer(amr=["mfa"])))
    assert (found.employee, found.location, found.right, found.mfa) == ("e-1", "l-1", "client:export", True)
    assert (found.location_source, found.request.source) == ("path", "nginx")


def test_envoy_call_uses_its_own_method_and_path(routes: RouteTable) -> None:
    found = query(
        routes, {"Authorization": bearer()}, target="/v1/forward-auth/locations/l-2/clients/c-9", method="DELETE"
    )
    assert (found.location, found.right, found.request.source) == ("l-2", "client:delete", "envoy")


def test_route_without_location_takes_x_location_id(routes: RouteTable) -> None:
    found = query(routes, nginx("GET", "/reports", Authorization=bearer(), **{"X-Location-Id": "l-3"}))
    assert (found.location, found.location_source, found.right) == ("l-3", "header", "report:view")


def test_path_location_wins_over_header(routes: RouteTable) -> None:
    found = query(routes, nginx("GET", "/locations/l-1/calendar", Authorization=bearer(), **{"X-Location-Id": "l-9"}))
    assert found.location == "l-1"


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        (nginx("GET", "/locations/l-1/calendar"), 401, "missing_token"),
        (nginx("GET", "/nowhere"), 401, "missing_token"),
        (nginx("GET", "/nowhere", Authorization="Bearer x"), 401, "malformed"),
        (nginx("GET", "/nowhere", Authorization=bearer()), 403, "no_route"),
        (nginx("POST", "/locations/l-1/calendar", Authorization=bearer()), 403, "no_route"),
        (nginx("GET", "/reports", Authorization=bearer()), 403, "no_location"),
        (nginx("GET", "/reports", Authorization=bearer(), **{"X-Location-Id": "l 1"}), 403, "invalid_location"),
        (nginx("GET", "/locations/%C3%BC/calendar", Authorization=bearer()), 403, "invalid_location"),
        (nginx("GET", "/locations/l-1%2F..%2Fl-2/calendar", Authorization=bearer()), 403, "encoded_separator"),
        ({"Authorization": bearer()}, 403, "missing_original_request"),
    ],
    ids=[
        "no_token",
        "no_token_is_401_before_route_check",
        "bad_token",
        "unknown_route",
        "wrong_method",
        "no_location",
        "invalid_header_location",
        "invalid_path_location",
        "path_trick",
        "no_original_request",
    ],
)
def test_refusals(routes: RouteTable, headers: dict[str, str], status: int, reason: str) -> None:
    with pytest.raises(SidecarError) as caught:
        query(routes, headers)
    assert caught.value.status == status
    assert caught.value.details["reason"] == reason


def test_unconfigured_verifier_is_503(routes: RouteTable) -> None:
    with pytest.raises(SidecarError) as caught:
        build_query(
            verifier=None,
            routes=routes,
            method="GET",
            target="/v1/forward-auth",
            headers=nginx("GET", "/locations/l-1/calendar", Authorization=bearer()),
        )
    assert caught.value.status == 503
