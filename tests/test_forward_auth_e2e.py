"""End to end: a client -> nginx ``auth_request`` (the documented config) -> ``sidecar serve`` -> upstream.

The real sidecar runs as ``<venv>/bin/sidecar serve --workers 1`` on the test Redis, with a
JWT secret; the directory is seeded over HTTP with an admin token made by ``sidecar token
create``. nginx runs the ``## nginx`` block of docs/forward-auth.md (tests/nginx_harness.py)
in front of an echo upstream. Each test states one behaviour: what the client gets and whether
the upstream was reached. One server per module; skipped only when nginx is absent.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecar.store.redis_server import RedisServer
from tests.conftest import POLICY_DIR, free_port, wait_until
from tests.nginx_harness import EchoUpstream, NginxHarness, Response, find_nginx

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (.ci/run installs nginx-light)")]

SECRET = "e2e-forward-auth-secret-0123456789abcdefghij"  # >= 32 bytes
SIDECAR = Path(sys.executable).parent / "sidecar"

# ch-1 holds l-1. e-1: administrator at l-1 (calendar, appointments, client:view; not
# client:export, client:delete, report:view). mk: marketer at l-1 (client:export with mfa,
# report:view). gone: an inactive employee with the same membership as e-1.
SEED: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chains/ch-1", {}),
    ("/v1/locations/l-1", {"chain": "ch-1"}),
    ("/v1/employees/e-1", {"active": True}),
    ("/v1/employees/mk", {"active": True}),
    ("/v1/employees/gone", {"active": False}),
    ("/v1/locations/l-1/employees/e-1", {"roles": ["administrator"]}),
    ("/v1/locations/l-1/employees/mk", {"roles": ["marketer"]}),
    ("/v1/locations/l-1/employees/gone", {"roles": ["administrator"]}),
]


@dataclass
class Sidecar:
    port: int
    admin_token: str
    log: Path


def _http(port: int, path: str, *, method: str = "GET", body: Any = None, token: str | None = None) -> int:
    """The status of one request to 127.0.0.1:port (0 when nothing answers)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=data, headers=headers)
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def _wait_ready(sidecar: Sidecar, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"sidecar exited with {process.returncode}:\n{sidecar.log.read_text()[-3000:]}")
        return _http(sidecar.port, "/readyz") == 200

    if wait_until(ready, timeout_s=timeout_s, step_s=0.2):
        return
    raise RuntimeError(f"sidecar not ready after {timeout_s} s:\n{sidecar.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Sidecar]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()  # the module owns the test Redis while its server runs
    client.close()
    data = tmp_path_factory.mktemp("sidecar")
    env = dict(os.environ, SIDECAR_REDIS_URL=redis_server.url, SIDECAR_DATA_DIR=str(data),
               SIDECAR_POLICY_DIR=str(POLICY_DIR), SIDECAR_JWT_SECRET=SECRET,
               SIDECAR_TOKENS_FILE=str(data / "tokens.json"), SIDECAR_LOG_FORMAT="json")
    made = subprocess.run([str(SIDECAR), "token", "create", "e2e-admin", "--scope", "admin"], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    sidecar = Sidecar(free_port(), made.stdout.strip().splitlines()[-1], data / "sidecar.log")
    with sidecar.log.open("wb") as log:
        process = subprocess.Popen(
            [str(SIDECAR), "serve", "--host", "127.0.0.1", "--port", str(sidecar.port), "--workers", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_ready(sidecar, process)
        for path, body in SEED:
            assert _http(sidecar.port, path, method="PUT", body=body, token=sidecar.admin_token) == 200, path
        yield sidecar
    finally:
        process.terminate()  # gunicorn's master stops its worker
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def upstream() -> Iterator[EchoUpstream]:
    with EchoUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, sidecar: Sidecar, upstream: EchoUpstream) -> Iterator[NginxHarness]:
    with NginxHarness(tmp_path_factory.mktemp("nginx"), auth_port=sidecar.port, upstream_port=upstream.port) as harness:
        yield harness


@pytest.fixture(autouse=True)
def forget(upstream: EchoUpstream) -> None:
    upstream.requests.clear()


def token(sub: str = "e-1", *, key: str = SECRET, algorithm: str = "HS256", ttl: int = 3600,
          **claims: Any) -> str:  # made at collection: outlives the suite
    return jwt.encode({"sub": sub, "exp": int(time.time()) + ttl, **claims}, key, algorithm=algorithm)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def through(nginx: NginxHarness, method: str, target: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> Response:
    return nginx.request(method, target, headers=headers, body=body)


def test_an_allowed_request_reaches_the_upstream_with_employee_and_decision(nginx: NginxHarness,
                                                                            upstream: EchoUpstream) -> None:
    response = through(nginx, "GET", "/locations/l-1/calendar?week=48", bearer(token("e-1")))
    assert response.status == 200
    echoed = response.json()
    assert (echoed["method"], echoed["path"], echoed["employee"]) == ("GET", "/locations/l-1/calendar?week=48", "e-1")
    assert len(echoed["decision"]) == 32


def test_an_allowed_post_reaches_the_upstream_with_its_body(nginx: NginxHarness) -> None:
    response = through(nginx, "POST", "/locations/l-1/appointments", bearer(token("e-1")), body=b'{"at": "10:00"}')
    assert response.status == 200
    assert (response.json()["method"], response.json()["body_length"]) == ("POST", 15)


def test_a_client_sent_employee_header_is_replaced(nginx: NginxHarness) -> None:
    response = through(nginx, "GET", "/locations/l-1/calendar", {**bearer(token("e-1")), "X-Employee-Id": "boss"})
    assert response.json()["employee"] == "e-1"


@pytest.mark.parametrize(("employee", "method", "target"), [
    ("e-1", "DELETE", "/locations/l-1/clients/c-9"),   # not granted
    ("e-1", "GET", "/locations/l-2/calendar"),          # unknown location
    ("gone", "GET", "/locations/l-1/calendar"),         # inactive employee
    ("nobody", "GET", "/locations/l-1/calendar"),       # unknown employee
    ("mk", "GET", "/locations/l-1/clients/export"),     # requires mfa, amr lacks it
])
def test_a_denied_request_is_403_and_never_reaches_the_upstream(nginx: NginxHarness, upstream: EchoUpstream,
                                                                employee: str, method: str, target: str) -> None:
    response = through(nginx, method, target, bearer(token(employee)))
    assert response.status == 403
    assert upstream.requests == []


def test_amr_with_mfa_allows_a_requires_mfa_right(nginx: NginxHarness) -> None:
    response = through(nginx, "GET", "/locations/l-1/clients/export", bearer(token("mk", amr=["pwd", "mfa"])))
    assert response.status == 200


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-token"),
    pytest.param({"Authorization": "Basic ZS0xOng="}, id="not-bearer"),
    pytest.param(bearer(token("e-1", ttl=-60)), id="expired"),
    pytest.param(bearer(token("e-1", key="a-forged-secret-of-enough-length-0123456789")), id="forged"),
    pytest.param(bearer(jwt.encode({"sub": "e-1", "exp": int(time.time()) + 3600}, None, algorithm="none")),
                 id="alg-none"),
    pytest.param(bearer(token("e-1", key=_rsa_pem().decode(), algorithm="RS256")), id="rs256-without-public-key"),
    pytest.param(bearer(jwt.encode({"sub": "e-1"}, SECRET, algorithm="HS256")), id="no-exp"),
    pytest.param(bearer(token("e-1", nbf=int(time.time()) + 3600)), id="not-yet-valid"),
])
def test_a_missing_or_bad_jwt_is_401_with_a_bearer_challenge(nginx: NginxHarness, upstream: EchoUpstream,
                                                             headers: dict[str, str]) -> None:
    response = through(nginx, "GET", "/locations/l-1/calendar", headers)
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert upstream.requests == []


@pytest.mark.parametrize("target", ["/locations/l-1/nowhere", "/Locations/l-1/calendar", "/", "/locations"])
def test_an_unmapped_route_is_403(nginx: NginxHarness, upstream: EchoUpstream, target: str) -> None:
    assert through(nginx, "GET", target, bearer(token("e-1"))).status == 403
    assert upstream.requests == []


@pytest.mark.parametrize(("headers", "status"), [
    ({"X-Location-Id": "l-1"}, 200),
    ({}, 403),
    ({"X-Location-Id": "l-2"}, 403),
])
def test_a_route_without_location_takes_it_from_x_location_id(nginx: NginxHarness, headers: dict[str, str],
                                                               status: int) -> None:
    assert through(nginx, "GET", "/reports", {**bearer(token("mk")), **headers}).status == status


def test_injected_traefik_headers_cannot_change_what_is_authorised(nginx: NginxHarness) -> None:
    headers = {**bearer(token("e-1")), "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/locations/l-1/calendar"}
    assert through(nginx, "DELETE", "/locations/l-1/clients/c-9", headers).status == 403


@pytest.mark.parametrize("target", [
    "/locations/l-1/calendar/../clients/export",
    "/locations/l-1/calendar/%2e%2e/clients/export",
    "/locations/l-1/calendar/..%2Fclients/export",
    "/locations/l-1/calendar/..;/clients/export",
    "/locations/l-1/calendar/%252e%252e/clients/export",
    "/locations/l-1/calendar/..%5Cclients/export",
    "/locations/l-1/calendar%00/../clients/export",
    "/locations/l-1/calendar/%2e%2e%2fclients/export",
    "/locations/l-1/calendar/%EF%BC%8E%EF%BC%8E/clients/export",
])
def test_a_path_trick_never_reaches_a_right_the_employee_lacks(nginx: NginxHarness, upstream: EchoUpstream,
                                                               target: str) -> None:
    response = through(nginx, "GET", target, bearer(token("e-1")))
    assert response.status in (400, 403)  # 400: nginx refused it itself
    assert upstream.requests == []


@pytest.mark.parametrize("target", [
    "//locations/l-1//calendar",
    "/locations/l-1/calendar/",
    "/locations/l-1/%63alendar",
])
def test_a_harmless_spelling_of_an_allowed_path_is_allowed(nginx: NginxHarness, target: str) -> None:
    assert through(nginx, "GET", target, bearer(token("e-1"))).status == 200
