"""A hung, dead or unusable Redis, against real redis-server processes paused, killed and restarted.

D3 (a hung Redis must cost decisions nothing, writes fail fast), D19 (a worker started during
an outage says so in /readyz), readiness within SIDECAR_STALE_MAX_S, one log line per outage,
WAIT for SIDECAR_REDIS_MIN_REPLICAS, and a Redis Cluster refused at start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.app import create_app
from sidecar.config import ConfigError, Settings
from sidecar.errors import StoreUnavailable
from sidecar.policy.directory import Employee
from sidecar.store.health import CircuitOpen
from sidecar.store.replication import acknowledged
from tests.conftest import POLICY_DIR, Api, free_port, make_settings, make_tokens, wait_until
from tests.redis_nodes import REDIS_DOWN, RedisNode

pytestmark = pytest.mark.e2e  # real processes / many generated examples: `pytest -m 'not e2e'` skips it

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RedisNode]:
    server = RedisNode(tmp_path / "redis").start()
    yield server
    server.stop()


def make_api(tmp_path: Path, url: str, **overrides: object) -> Api:
    settings = make_settings(tmp_path, redis_timeout_s=0.2, **overrides)
    return Api(create_app(settings, redis_url=url), make_tokens(settings))


def seed(api: Api) -> None:
    for path, body in (("/v1/locations/l-1", {"chain": None}), ("/v1/employees/e-1", {"active": True}),
                       ("/v1/locations/l-1/employees/e-1", {"roles": ["viewer"]})):
        assert api.put(path, body).status_code == 200


def events(output: str, name: str) -> list[dict[str, object]]:
    found = []
    for line in output.splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            record = json.loads(line)
            if record.get("event") == name:
                found.append(record)
    return found


def test_a_hung_redis_costs_decisions_nothing_and_writes_fail_without_being_sent(
        tmp_path: Path, node: RedisNode, capsys: pytest.CaptureFixture[str]) -> None:
    api = make_api(tmp_path, node.url)
    runtime = api.app.extensions["sidecar"]
    try:
        seed(api)
        assert api.check("e-1", "l-1", "calendar:view")["allowed"] is True  # l-1 is now in memory
        node.pause()
        try:
            first = api.put("/v1/employees/e-2", {"active": True})  # waits one timeout, opens the circuit
            assert first.status_code == 503
            assert first.get_json()["error"]["code"] == "redis_unavailable"
            assert runtime.redis_health.circuit_open
            later = api.put("/v1/employees/e-3", {"active": True})
            assert later.status_code == 503 and later.get_json()["error"]["code"] == "redis_unavailable"
            with pytest.raises(StoreUnavailable) as raised:
                runtime.directory.put_employee(Employee("e-4"))
            assert isinstance(raised.value.__cause__, CircuitOpen)  # refused before touching the socket
            for _ in range(50):
                assert api.check("e-1", "l-1", "calendar:view")["allowed"] is True  # from memory
            ready = api.get("/readyz")
            assert ready.status_code == 200
            body = ready.get_json()
            assert body["status"] == "degraded" and body["redis"] is False
            assert "Timeout" in body["redis_error"] and "memory" in body["reason"]
        finally:
            node.resume()
        assert wait_until(lambda: api.get("/readyz").get_json()["status"] == "ready")
        assert api.put("/v1/employees/e-5", {"active": True}).status_code == 200
        # What the circuit refused never reached Redis, even once it answered again.
        assert api.get("/v1/employees/e-3", scope="admin").status_code == 404
        assert api.get("/v1/employees/e-4", scope="admin").status_code == 404
    finally:
        runtime.stop()
    output = capsys.readouterr().out
    assert len(events(output, "redis_unreachable")) == 1  # once per outage, not per request or probe
    assert len(events(output, "redis_reachable")) == 1


def test_a_worker_started_while_redis_hangs_is_not_ready_and_says_why(tmp_path: Path, node: RedisNode) -> None:
    node.pause()
    try:
        api = make_api(tmp_path, node.url)  # starting does not wait on the hung server beyond one timeout
        try:
            assert api.get("/livez").status_code == 200  # the process is fine
            ready = api.get("/readyz")
            assert ready.status_code == 503
            body = ready.get_json()
            assert body["status"] == "unavailable"
            assert "since it started" in body["reason"] and "Timeout" in body["redis_error"]
        finally:
            node.resume()
        assert wait_until(lambda: api.get("/readyz").status_code == 200)
        assert api.get("/readyz").get_json()["status"] == "ready"
    finally:
        api.app.extensions["sidecar"].stop()


def test_a_worker_started_while_redis_is_down_is_not_ready(tmp_path: Path, node: RedisNode) -> None:
    node.kill()
    api = make_api(tmp_path, node.url)
    try:
        ready = api.get("/readyz")
        assert ready.status_code == 503 and "since it started" in ready.get_json()["reason"]
        assert "refused" in ready.get_json()["redis_error"].lower()
        node.start()
        assert wait_until(lambda: api.get("/readyz").status_code == 200)
    finally:
        api.app.extensions["sidecar"].stop()


def test_readiness_fails_once_redis_has_been_away_longer_than_stale_max(tmp_path: Path, node: RedisNode) -> None:
    api = make_api(tmp_path, node.url, stale_max_s=0.0)
    try:
        seed(api)
        assert api.get("/readyz").get_json()["status"] == "ready"
        node.kill()
        assert wait_until(lambda: api.get("/readyz").status_code == 503)
        body = api.get("/readyz").get_json()
        assert body["status"] == "unavailable" and "SIDECAR_STALE_MAX_S" in body["reason"]
        assert api.get("/livez").status_code == 200
    finally:
        api.app.extensions["sidecar"].stop()


def test_a_write_not_copied_to_min_replicas_is_not_acknowledged(tmp_path: Path) -> None:
    primary = RedisNode(tmp_path / "primary").start()
    replica = RedisNode(tmp_path / "replica", args=("--replicaof", "127.0.0.1", str(primary.port))).start()
    try:
        assert wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up",
                          ignoring=REDIS_DOWN)
        api = make_api(tmp_path, primary.url, redis_min_replicas=1, redis_wait_timeout_s=0.3)
        try:
            seed(api)  # acknowledged: each write is on the replica too
            assert replica.client().exists("sc:e:e-1") or replica.client().dbsize() > 0
            replica.pause()
            refused = api.put("/v1/employees/e-2", {"active": True})
            assert refused.status_code == 503
            assert refused.get_json()["error"]["reason"] == "not_replicated"
            replica.resume()
            assert wait_until(lambda: api.put("/v1/employees/e-2", {"active": True}).status_code == 200)
        finally:
            api.app.extensions["sidecar"].stop()
        with pytest.raises(StoreUnavailable), acknowledged(primary.client(), 2, 0.1) as client:
            client.set("k", "v")  # there is one replica, never two
    finally:
        replica.stop()
        primary.stop()


def run_serve(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "SIDECAR_DATA_DIR": str(tmp_path / "data"),
           "SIDECAR_POLICY_DIR": str(POLICY_DIR), "SIDECAR_REDIS_URL": url}
    return subprocess.run([sys.executable, "-m", "sidecar", "serve", "--port", "0"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_redis_cluster_url_is_refused_at_start_in_one_line(tmp_path: Path) -> None:
    done = run_serve(tmp_path, "redis+cluster://127.0.0.1:7000")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Cluster is not supported" in lines[0] and "Sentinel" in lines[0]


def test_a_server_running_in_cluster_mode_is_refused_at_start_in_one_line(tmp_path: Path) -> None:
    port = next(p for p in iter(free_port, None) if p <= 55535)  # the cluster bus listens on port + 10000
    cluster = RedisNode(tmp_path / "cluster", port=port, args=("--cluster-enabled", "yes", "--cluster-config-file",
                                                               str(tmp_path / "cluster" / "nodes.conf"))).start()
    try:
        done = run_serve(tmp_path, cluster.url)
    finally:
        cluster.stop()
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Cluster is not supported" in lines[0] and "Sentinel" in lines[0]


def test_an_acl_user_that_may_not_run_role_is_still_seen_as_up(tmp_path: Path) -> None:
    acl = tmp_path / "redis" / "users.acl"
    acl.parent.mkdir(parents=True)
    acl.write_text("user default on nopass ~* &* +@all -role\n")
    node = RedisNode(tmp_path / "redis", args=("--aclfile", str(acl))).start()
    try:
        api = make_api(tmp_path, node.url)
        try:
            seed(api)
            assert api.get("/readyz").get_json()["status"] == "ready"
            watch = api.app.extensions["sidecar"].redis_watch
            assert watch.probe_once() and not api.app.extensions["sidecar"].redis_health.is_down
        finally:
            api.app.extensions["sidecar"].stop()
    finally:
        node.stop()


def test_min_replicas_without_a_redis_url_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="embedded Redis has no replicas"):
        Settings.from_env({"SIDECAR_REDIS_MIN_REPLICAS": "1"})
    assert Settings.from_env({"SIDECAR_REDIS_MIN_REPLICAS": "1",
                              "SIDECAR_REDIS_URL": "redis://127.0.0.1:6379/0"}).redis_min_replicas == 1
