"""HARNESS SELF-TEST: nginx ``auth_request`` wiring, proven against a stand-in auth server.

These tests do not involve the sidecar. They prove that tests/nginx_harness.py forwards a
request only when the auth server answers 2xx, passes 401/403 through, hands the auth
server the raw original method and URI without a body, and gives the upstream the employee
the auth server named (never one the client sent). The end-to-end tests of the real
``/v1/forward-auth`` endpoint reuse the same harness with ``auth_port`` set to the sidecar.
Skipped only when no nginx binary exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.nginx_harness import EchoUpstream, NginxHarness, Seen, StubServer, find_nginx

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (CI installs nginx-light)")]


class StandInAuth(StubServer):
    """Allows ``Bearer good`` as e-1, refuses ``Bearer bad`` (403), asks for a token otherwise (401)."""

    def respond(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        authorization = seen.headers.get("authorization")
        if authorization == "Bearer good":
            return 200, {"X-Employee-Id": "e-1", "X-Decision-Id": "d-1", "Content-Type": "application/json"}, \
                b'{"allowed":true}'  # a body, as the sidecar's (not sent to a HEAD)
        if authorization is None:
            return 401, {"WWW-Authenticate": "Bearer", "Content-Type": "application/json"}, b'{"error":{}}'
        return 403, {"Content-Type": "application/json"}, b'{"error":{}}'


@pytest.fixture(scope="module")
def auth() -> Iterator[StandInAuth]:
    with StandInAuth() as server:
        yield server


@pytest.fixture(scope="module")
def upstream() -> Iterator[EchoUpstream]:
    with EchoUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, auth: StandInAuth, upstream: EchoUpstream
) -> Iterator[NginxHarness]:
    workdir: Path = tmp_path_factory.mktemp("nginx")
    with NginxHarness(workdir, auth_port=auth.port, upstream_port=upstream.port) as harness:
        yield harness


@pytest.fixture(autouse=True)
def forget(auth: StandInAuth, upstream: EchoUpstream) -> None:
    auth.requests.clear()
    upstream.requests.clear()


GOOD = {"Authorization": "Bearer good"}
BAD = {"Authorization": "Bearer bad"}


def test_harness_self_test_allowed_request_reaches_upstream_with_employee(nginx: NginxHarness) -> None:
    answer = nginx.request("GET", "/locations/l-1/calendar", GOOD)
    assert answer.status == 200
    assert answer.json() == {
        "method": "GET",
        "path": "/locations/l-1/calendar",
        "employee": "e-1",
        "decision": "d-1",
        "body_length": 0,
    }


def test_harness_self_test_denied_request_is_403_and_never_reaches_upstream(
    nginx: NginxHarness, upstream: EchoUpstream
) -> None:
    assert nginx.request("DELETE", "/locations/l-1/clients/c-1", BAD).status == 403
    assert upstream.requests == []


def test_harness_self_test_missing_token_is_401_with_challenge(nginx: NginxHarness, upstream: EchoUpstream) -> None:
    answer = nginx.request("GET", "/locations/l-1/calendar")
    assert answer.status == 401
    assert answer.headers.get("www-authenticate") == "Bearer"
    assert upstream.requests == []


def test_harness_self_test_auth_server_gets_raw_original_request_without_body(
    nginx: NginxHarness, auth: StandInAuth, upstream: EchoUpstream
) -> None:
    body = b"x" * 100_000  # larger than nginx's in-memory body buffer: exercises the temp path
    target = "/locations/l-1/x/%2e%2e/appointments?draft=1"
    answer = nginx.request("POST", target, {**GOOD, "X-Location-Id": "l-1"}, body)
    assert answer.status == 200
    [seen] = auth.requests
    assert (seen.method, seen.path) == ("HEAD", "/v1/forward-auth")
    assert seen.headers["x-original-method"] == "POST"
    assert seen.headers["x-original-uri"] == target
    assert seen.headers["authorization"] == "Bearer good"
    assert seen.headers["x-location-id"] == "l-1"
    assert seen.body == b""
    assert seen.headers.get("content-length", "0") == "0"
    [reached] = upstream.requests
    assert (reached.method, reached.path, len(reached.body)) == ("POST", target, len(body))


def test_harness_self_test_nginx_keeps_its_connection_to_the_auth_server(nginx: NginxHarness,
                                                                          auth: StandInAuth) -> None:
    """The auth subrequest is a HEAD: nginx reuses an upstream connection after a subrequest only
    when the answer has no body (with GET and a JSON body it opened one connection per request)."""
    for _ in range(5):
        assert nginx.request("GET", "/locations/l-1/calendar", GOOD).status == 200
    assert [seen.method for seen in auth.requests] == ["HEAD"] * 5
    assert len({seen.peer_port for seen in auth.requests}) == 1


def test_harness_self_test_client_cannot_spoof_employee_or_original_request(
    nginx: NginxHarness, auth: StandInAuth
) -> None:
    spoof = {
        **GOOD,
        "X-Employee-Id": "e-admin",
        "X-Original-URI": "/locations/l-1/calendar",
        "X-Original-Method": "GET",
        "X-Forwarded-Uri": "/locations/l-1/calendar",
        "X-Forwarded-Method": "GET",
    }
    answer = nginx.request("DELETE", "/locations/l-1/clients/c-1", spoof)
    assert answer.json()["employee"] == "e-1"
    [seen] = auth.requests
    assert seen.headers["x-original-method"] == "DELETE"
    assert seen.headers["x-original-uri"] == "/locations/l-1/clients/c-1"
    assert "x-forwarded-uri" not in seen.headers
    assert "x-forwarded-method" not in seen.headers


def test_harness_self_test_head_and_put_are_forwarded(nginx: NginxHarness, upstream: EchoUpstream) -> None:
    assert nginx.request("HEAD", "/locations/l-1/clients/export", GOOD).status == 200
    assert nginx.request("PUT", "/locations/l-1/settings", GOOD, b"{}").json()["method"] == "PUT"
    assert [r.method for r in upstream.requests] == ["HEAD", "PUT"]


def test_harness_self_test_auth_server_down_fails_closed(tmp_path: Path, upstream: EchoUpstream) -> None:
    with NginxHarness(tmp_path, auth_port=free_port(), upstream_port=upstream.port) as harness:
        assert harness.request("GET", "/locations/l-1/calendar", GOOD).status == 500
    assert upstream.requests == []


def test_harness_self_test_stops_nginx(tmp_path: Path, auth: StandInAuth, upstream: EchoUpstream) -> None:
    harness = NginxHarness(tmp_path, auth_port=auth.port, upstream_port=upstream.port).start()
    port = harness.port
    assert harness.request("GET", "/x", GOOD).status == 200
    harness.stop()
    with pytest.raises(OSError):
        harness.request("GET", "/x", GOOD, timeout=1)
    assert port == harness.port
