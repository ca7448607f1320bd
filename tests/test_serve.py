"""`sidecar serve` for real, under each server it can run (granian, the default, and gunicorn) and
on a Unix socket: the embedded Redis, the bootstrap token, several workers, metrics that add up
across workers, one JSON log line per request, keep-alive, graceful shutdown and reload."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.served import ServedSidecar

pytestmark = pytest.mark.e2e

SERVERS = [("granian", False), ("gunicorn", False), ("granian", True), ("gunicorn", True)]


@pytest.fixture(scope="module", params=SERVERS, ids=["granian-tcp", "gunicorn-tcp", "granian-uds", "gunicorn-uds"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSidecar]:
    server, uds = request.param
    sidecar = ServedSidecar.start(tmp_path_factory.mktemp(f"served-{server}"), server=server, uds=uds)
    yield sidecar
    assert sidecar.stop() == 0


def seed(sidecar: ServedSidecar, location: str, employee: str) -> str:
    sidecar.admin("PUT", f"/v1/locations/{location}", {"chain": None})
    sidecar.admin("PUT", f"/v1/employees/{employee}", {"active": True})
    return str(sidecar.admin("PUT", f"/v1/locations/{location}/employees/{employee}",
                             {"roles": ["smm_manager"]})["revision"])


def test_serve_starts_a_private_redis_on_a_unix_socket_under_the_data_dir(served: ServedSidecar) -> None:
    assert (served.data / "redis" / "redis.sock").is_socket()
    assert (served.data / "redis" / "appendonlydir").exists() or (served.data / "redis" / "appendonly.aof").exists()


def test_the_bootstrap_token_is_printed_once_and_stored_as_a_hash(served: ServedSidecar) -> None:
    assert served.token.startswith("sct_") and served.token not in (served.data / "tokens.json").read_text()
    assert served.call("GET", "/v1/roles", token=served.token)[0] == 200


def test_the_listener_is_the_one_asked_for(served: ServedSidecar) -> None:
    if served.uds is not None:
        assert served.uds.is_socket() and oct(served.uds.stat().st_mode & 0o777) == oct(0o660)
    assert served.call("GET", "/livez")[0] == 200


def test_metrics_add_up_across_workers(served: ServedSidecar) -> None:
    revision = seed(served, "m-1", "m-e")
    body = {"employee": "m-e", "location": "m-1", "resource": "review", "action": "manage", "min_revision": revision}
    for _ in range(40):  # a new connection each: the kernel spreads them over both workers
        status, _, answer = served.call("POST", "/v1/check", body, token=served.token)
        assert status == 200 and json.loads(answer)["allowed"] is True
    text = served.call("GET", "/metrics")[2].decode()
    granted = 'sidecar_decisions_total{allowed="true",reason="granted"}'
    line = next(x for x in text.splitlines() if x.startswith(granted))
    assert float(line.split()[-1]) == 40


def test_each_request_is_one_json_line_with_its_request_id(served: ServedSidecar) -> None:
    served.call("POST", "/v1/check", {"employee": "x", "location": "y", "resource": "a", "action": "b"},
                token=served.token, headers={"X-Request-Id": "serve-test-1"})
    def lines() -> list[dict[str, object]]:
        return [x for x in served.logs() if x.get("request_id") == "serve-test-1"]

    wait_until(lines, 5)
    found = lines()
    assert len(found) == 1
    assert found[0]["route"] == "/v1/check" and found[0]["reason"] == "unknown_location"


def test_one_connection_carries_many_requests(served: ServedSidecar) -> None:
    if served.server == "gunicorn":
        pytest.skip("gunicorn's sync worker closes the connection after every request")
    connection = served.connection()
    try:
        for _ in range(5):
            connection.request("POST", "/v1/check", body=b'{"employee":"x","location":"y","resource":"a","action":"b"}',
                               headers={"Authorization": f"Bearer {served.token}"})
            response = connection.getresponse()
            assert response.status == 200 and not response.will_close
            response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_sigterm_lets_an_in_flight_request_finish_then_stops_everything(server: str, tmp_path: Path) -> None:
    sidecar = ServedSidecar.start(tmp_path, server=server, workers=1)
    answers: list[tuple[int, bytes]] = []
    # a check waiting for a revision this replica never reaches answers 503 after the 2 s wait
    body = {"employee": "x", "location": "y", "resource": "a", "action": "b", "min_revision": "99999999999999-0"}

    def ask() -> None:
        status, _, answer = sidecar.call("POST", "/v1/check", body, token=sidecar.token,
                                         headers={"X-Request-Id": "in-flight-1"})
        answers.append((status, answer))

    asking = threading.Thread(target=ask)
    asking.start()
    time.sleep(0.5)  # the request is in the worker, waiting
    sidecar.signal(signal.SIGTERM)
    asking.join(timeout=20)
    assert sidecar.process.wait(timeout=30) == 0
    assert answers and answers[0][0] == 503 and json.loads(answers[0][1])["error"]["code"] == "revision_not_reached"
    assert not (tmp_path / "redis" / "redis.sock").exists(), "the embedded Redis stopped with the server"
    # the worker writes its request lines from a thread; its last ones are written as it ends
    assert [(x["route"], x["status"]) for x in sidecar.logs() if x.get("request_id") == "in-flight-1"] == [
        ("/v1/check", 503)]


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_sighup_replaces_the_workers_and_keeps_serving(server: str, tmp_path: Path) -> None:
    sidecar = ServedSidecar.start(tmp_path, server=server, workers=1)
    try:
        revision = seed(sidecar, "h-1", "h-e")
        before = _worker_pids(sidecar)
        sidecar.signal(signal.SIGHUP)
        wait_until(lambda: _worker_pids(sidecar) and not _worker_pids(sidecar) & before, 30)
        assert _worker_pids(sidecar) and not _worker_pids(sidecar) & before
        sidecar.wait_ready()
        body = {"employee": "h-e", "location": "h-1", "resource": "review", "action": "manage",
                "min_revision": revision}
        status, _, answer = sidecar.call("POST", "/v1/check", body, token=sidecar.token)
        assert status == 200 and json.loads(answer)["allowed"] is True
    finally:
        assert sidecar.stop() == 0


def _worker_pids(sidecar: ServedSidecar) -> set[int]:
    """Python children of the server process (its workers); the embedded redis-server is not one."""
    children = Path(f"/proc/{sidecar.process.pid}/task/{sidecar.process.pid}/children")
    pids = {int(x) for x in children.read_text().split()} if children.exists() else set()
    return {pid for pid in pids if "redis" not in Path(f"/proc/{pid}/comm").read_text()}
