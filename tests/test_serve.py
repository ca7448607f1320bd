"""`sidecar serve` for real: the embedded Redis, the bootstrap token, gunicorn workers, metrics
that add up across workers, one JSON log line per request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POLICY_DIR
from tests.nginx_harness import free_port

REPO = Path(__file__).resolve().parent.parent


def call(port: int, path: str, body: Any = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if body is not None else "GET",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={**({"Authorization": f"Bearer {token}"} if token else {}),
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, Path, Path]]:
    data = tmp_path_factory.mktemp("served")
    port = free_port()
    log_file = data / "stdout.log"
    env = {"PATH": os.environ.get("PATH", ""), "SIDECAR_DATA_DIR": str(data), "SIDECAR_POLICY_DIR": str(POLICY_DIR),
           "SIDECAR_LOG_FORMAT": "json"}
    with open(log_file, "wb") as out, open(data / "stderr.log", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "sidecar", "serve", "--port", str(port), "--workers", "2"],
                                   env=env, stdout=out, stderr=err, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if call(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, (data / "stderr.log").read_text()
            time.sleep(0.1)
        token = next(x for x in (data / "stderr.log").read_text().splitlines() if x.startswith("sct_"))
        yield port, token, data, log_file
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_serve_starts_a_private_redis_on_a_unix_socket_under_the_data_dir(served) -> None:
    _, _, data, _ = served
    assert (data / "redis" / "redis.sock").is_socket()
    assert (data / "redis" / "appendonlydir").exists() or (data / "redis" / "appendonly.aof").exists()


def test_the_bootstrap_token_is_printed_once_and_stored_as_a_hash(served) -> None:
    port, token, data, _ = served
    assert token.startswith("sct_") and token not in (data / "tokens.json").read_text()
    assert call(port, "/v1/roles", token=token)[0] == 200


def test_metrics_add_up_across_workers(served) -> None:
    port, token, _, _ = served
    admin = {"Authorization": f"Bearer {token}"}
    for path, body in [("/v1/locations/m-1", {"chain": None}), ("/v1/employees/m-e", {"active": True}),
                       ("/v1/locations/m-1/employees/m-e", {"roles": ["smm_manager"]})]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="PUT",
                                         data=json.dumps(body).encode(), headers=admin)
        with urllib.request.urlopen(request, timeout=10) as response:
            revision = json.loads(response.read())["revision"]
    body = {"employee": "m-e", "location": "m-1", "resource": "review", "action": "manage",
            "min_revision": revision}
    for _ in range(40):  # a new connection each: the kernel spreads them over both workers
        status, _, answer = call(port, "/v1/check", body, token)
        assert status == 200 and json.loads(answer)["allowed"] is True
    text = call(port, "/metrics")[2].decode()
    granted = 'sidecar_decisions_total{allowed="true",reason="granted"}'
    line = next(x for x in text.splitlines() if x.startswith(granted))
    assert float(line.split()[-1]) == 40


def test_each_request_is_one_json_line_with_its_request_id(served) -> None:
    port, token, _, log_file = served
    call(port, "/v1/check", {"employee": "x", "location": "y", "resource": "a", "action": "b"}, token,
         headers={"X-Request-Id": "serve-test-1"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in log_file.read_text().splitlines() if "serve-test-1" in x]
        if lines:
            break
        time.sleep(0.05)
    assert len(lines) == 1
    assert lines[0]["route"] == "/v1/check" and lines[0]["reason"] == "unknown_location"
