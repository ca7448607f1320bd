"""Replicas: two app instances on one Redis stay in sync; a cut-off replica catches up."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sidecar.policy.bundle import load_bundle
from sidecar.policy.decisions import decide
from sidecar.store.connection import connect
from sidecar.store.directory import CHANGES_STREAM, DirectoryStore
from sidecar.store.redis_server import RedisServer
from sidecar.store.replica import Replica
from tests.conftest import POLICY_DIR, Api, make_settings, make_tokens, wait_until


def pair(app_factory, tmp_path: Path, redis_url: str, policy_dir: Path = POLICY_DIR) -> tuple[Api, Api]:
    """Two apps (two replicas) on one Redis; the factory stops them after the test."""
    settings = make_settings(tmp_path, policy_dir=policy_dir, policy_poll_s=0.1)
    tokens = make_tokens(settings)
    apps = [app_factory(settings, redis_url=redis_url) for _ in range(2)]
    return Api(apps[0], tokens), Api(apps[1], tokens)


@pytest.fixture
def replicas(tmp_path: Path, redis_url: str, app_factory):
    return pair(app_factory, tmp_path, redis_url)


def seed(api: Api) -> None:
    api.put("/v1/locations/l-1", {"chain": None})
    api.put("/v1/employees/e-1", {"active": True})
    api.put("/v1/locations/l-1/employees/e-1", {"roles": ["viewer"]})


def test_a_write_on_one_replica_is_seen_by_the_other(replicas) -> None:
    writer, reader = replicas
    seed(writer)
    assert reader.check("e-1", "l-1", "calendar:view")["allowed"] is True  # the tenant is now cached there
    writer.put("/v1/locations/l-1/employees/e-1", {"roles": ["viewer"], "deny": ["calendar:view"]})
    assert wait_until(lambda: reader.check("e-1", "l-1", "calendar:view")["allowed"] is False)


def test_min_revision_reads_your_writes_on_another_replica(replicas) -> None:
    writer, reader = replicas
    seed(writer)
    reader.check("e-1", "l-1", "calendar:view")
    revision = writer.put("/v1/locations/l-1/employees/e-1", {"roles": ["owner"]}).get_json()["revision"]
    assert reader.check("e-1", "l-1", "payment:refund", min_revision=revision)["allowed"] is True


def test_min_revision_from_the_future_is_503(tmp_path: Path, app_factory) -> None:
    settings = make_settings(tmp_path, min_revision_wait_s=0.2)
    writer = Api(app_factory(settings), make_tokens(settings))
    seed(writer)
    body = {"employee": "e-1", "location": "l-1", "resource": "calendar", "action": "view",
            "min_revision": "99999999999999-0"}
    response = writer.post("/v1/check", body, scope="check")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "revision_not_reached"


@pytest.mark.e2e  # kills and restarts a real redis-server
def test_a_replica_cut_off_from_redis_keeps_deciding_and_catches_up(tmp_path: Path, app_factory) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        writer, reader = pair(app_factory, tmp_path, server.url)
        seed(writer)
        assert reader.check("e-1", "l-1", "calendar:view")["allowed"] is True
        server.kill()
        assert reader.check("e-1", "l-1", "calendar:view")["allowed"] is True  # from memory
        unknown = reader.post("/v1/check", {"employee": "e-1", "location": "l-9", "resource": "calendar",
                                            "action": "view"}, scope="check")
        assert unknown.status_code == 503  # a tenant not in memory cannot be loaded
        ready = reader.get("/readyz")  # still in the pool: it decides from memory (SIDECAR_STALE_MAX_S)
        assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"
        server.start()
        assert wait_until(lambda: writer.get("/readyz").get_json()["status"] == "ready")
        # writes made while the reader is still reconnecting reach it from the durable log
        writer.put("/v1/locations/l-1/employees/e-1", {"roles": ["viewer"], "deny": ["calendar:view"]})
        writer.put("/v1/employees/e-2", {"active": True})
        last = writer.put("/v1/locations/l-1/employees/e-2", {"roles": ["owner"]}).get_json()["revision"]
        assert reader.check("e-2", "l-1", "calendar:view", min_revision=last)["allowed"] is True
        assert reader.check("e-1", "l-1", "calendar:view")["allowed"] is False
    finally:
        server.stop()


def test_changes_made_while_a_replica_was_away_are_replayed_in_order(tmp_path: Path, app_factory) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        writer, reader = pair(app_factory, tmp_path, server.url)
        seed(writer)
        reader.check("e-1", "l-1", "calendar:view")
        follower = reader.app.extensions["sidecar"].replica
        follower.stop()  # the follower thread is gone: the replica misses everything below
        revisions = [writer.put("/v1/locations/l-1/employees/e-1", {"roles": [role]}).get_json()["revision"]
                     for role in ("owner", "viewer", "smm_manager")]
        assert reader.check("e-1", "l-1", "review:manage")["allowed"] is False  # still the old view
        follower.restart()
        assert reader.check("e-1", "l-1", "review:manage", min_revision=revisions[-1])["allowed"] is True
        assert reader.check("e-1", "l-1", "calendar:view")["allowed"] is False
    finally:
        server.stop()


def test_stopping_the_follower_does_not_reissue_its_blocked_read(tmp_path: Path) -> None:
    # The follower blocks in XREAD; stop() closes that socket. No redis-py retry may reissue the
    # read on a new connection (it did with the hiredis parser: every worker's stop waited it out).
    server = RedisServer(tmp_path / "redis", appendonly=False).start()  # its own: counts connections
    try:
        bundle = load_bundle(POLICY_DIR)
        client = connect(server.url)
        replica = Replica(DirectoryStore(client, lambda: bundle), lambda: bundle, server.url)
        replica.start()
        assert wait_until(lambda: any(c.get("cmd") == "xread" for c in client.client_list()))
        connections = client.info("stats")["total_connections_received"]
        replica.stop()
        assert client.info("stats")["total_connections_received"] == connections
        client.close()
    finally:
        server.stop()


def test_a_broken_policy_reload_keeps_the_last_good_policy(tmp_path: Path, redis_url: str, app_factory) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    api, other = pair(app_factory, tmp_path, redis_url, policies)
    seed(api)
    assert api.check("e-1", "l-1", "calendar:view")["allowed"] is True
    roles = policies / "roles.yaml"
    roles.write_text(roles.read_text().replace("login:mfa, calendar:view, client:view, finance:view",
                                               "login:mfa, calendar:fly, client:view, finance:view"))
    response = api.post("/v1/policies/reload", scope="admin")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "policy_invalid"
    assert "roles.yaml:" in error["message"] and "calendar:fly" in error["message"]
    assert api.check("e-1", "l-1", "calendar:view")["allowed"] is True
    roles.write_text(roles.read_text().replace("calendar:fly, client:view", "client:view"))
    assert api.post("/v1/policies/reload", scope="admin").status_code == 200
    assert api.check("e-1", "l-1", "calendar:view")["allowed"] is False
    # the other worker notices the edit on its own within the poll interval
    assert wait_until(lambda: other.check("e-1", "l-1", "calendar:view")["allowed"] is False)


def test_a_reload_that_sees_writes_the_log_has_not_delivered_yet_keeps_no_stale_rights(tmp_path: Path, redis_url: str,
                                                                                        app_factory) -> None:
    writer, _ = pair(app_factory, tmp_path, redis_url)
    seed(writer)
    writer.put("/v1/employees/e-2", {"active": True})
    writer.put("/v1/locations/l-1/employees/e-2", {"roles": ["administrator"]})
    bundle = load_bundle(POLICY_DIR)
    client = connect(redis_url)
    replica = Replica(DirectoryStore(client, lambda: bundle), lambda: bundle, redis_url)  # follower not started
    engine = replica.engine_for_location("l-1")
    assert decide(engine, "e-2", "l-1", "appointment:create").allowed
    first = writer.put("/v1/locations/l-1/employees/e-1", {"roles": ["owner"]}).get_json()["revision"]
    writer.put("/v1/locations/l-1/employees/e-2", {"roles": ["administrator"], "deny": ["appointment:create"]})
    entries = client.xrange(CHANGES_STREAM, min=first, max=first)
    replica.apply_change(first, entries[0][1])  # the follower has delivered only the first write
    engine = replica.engine_for_location("l-1")  # the reload reads both writes
    assert decide(engine, "e-2", "l-1", "appointment:create").reason == "denied_by_override"
    client.close()
