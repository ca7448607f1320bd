"""Redis Sentinel for real: one primary, one replica, three sentinels on loopback, the primary killed.

During the failover decisions go on from memory, directory writes answer 503
``redis_unavailable`` (never 500) until the new primary is found and then succeed, a revoke
acknowledged just before the kill (``SIDECAR_REDIS_MIN_REPLICAS=1``: ``WAIT``) is there
afterwards, replicas resume following the change stream, audit events spool and replay.
A controlled failover (the old primary demoted, answering ``READONLY``) is a 503 too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sidecar.app import create_app
from sidecar.errors import StoreUnavailable
from sidecar.store.replica import parse_revision
from tests.audit_support import read_log, report
from tests.conftest import Api, make_settings, make_tokens, wait_until
from tests.redis_nodes import REDIS_DOWN, SERVICE, SentinelSet

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    nodes = SentinelSet(tmp_path_factory.mktemp("sentinel")).start()
    yield nodes
    nodes.stop()


def primary_url(nodes: SentinelSet) -> str:
    return f"redis://127.0.0.1:{nodes.primary_port()}/0"


def make_api(tmp_path: Path, url: str) -> Api:
    settings = make_settings(tmp_path, redis_timeout_s=0.5, redis_min_replicas=1, redis_wait_timeout_s=1.0)
    return Api(create_app(settings, redis_url=url), make_tokens(settings))


def seed(api: Api) -> None:
    for path, body in (("/v1/chains/ch-1", {}), ("/v1/locations/l-1", {"chain": "ch-1"}),
                       ("/v1/employees/e-1", {"active": True}), ("/v1/employees/e-2", {"active": True}),
                       ("/v1/locations/l-1/employees/e-1", {"roles": ["viewer"]}),
                       ("/v1/locations/l-1/employees/e-2", {"roles": ["viewer"]})):
        response = api.put(path, body)
        assert response.status_code == 200, (path, response.get_json())


def write_until_accepted(writer: Api, reader: Api, nodes: SentinelSet, *, restart_old: int | None) -> dict[str, int]:
    """Writes, checks and audit events in a loop until a write is acknowledged again."""
    seen = {"checks": 0, "refused_writes": 0, "audit_events": 0}
    restarted = restart_old is None
    for _ in range(2000):
        assert reader.check("e-2", "l-1", "calendar:view")["allowed"] is True  # from memory, never stops
        seen["checks"] += 1
        assert reader.get("/readyz").status_code == 200  # degraded at worst: it stays in the pool
        assert report(writer, request_id=f"during-{seen['audit_events']}").status_code == 202
        seen["audit_events"] += 1
        write = writer.put("/v1/employees/e-9", {"active": True})
        if write.status_code == 200:
            return seen
        assert write.status_code == 503, write.get_json()  # never a 500
        assert write.get_json()["error"]["code"] == "redis_unavailable"
        seen["refused_writes"] += 1
        new_port = nodes.primary_port()
        if not restarted and new_port != restart_old:
            # The failover is done: the killed server comes back as a replica of the new primary
            # (as its orchestrator would restart it; the sentinels would convert it too, within
            # ~10 s), so SIDECAR_REDIS_MIN_REPLICAS=1 can be met again.
            old = nodes.primary if nodes.primary.port == restart_old else nodes.replica
            old.args = ("--replicaof", "127.0.0.1", str(new_port))
            old.start()
            restarted = True
    raise AssertionError(f"no write was accepted after the failover: {seen}")


def test_a_killed_primary_loses_no_acknowledged_write_and_decisions_never_stop(
        tmp_path: Path, sentinels: SentinelSet) -> None:
    with redis.Redis.from_url(primary_url(sentinels)) as client:
        client.flushall()
    writer, reader = make_api(tmp_path / "writer", sentinels.url), make_api(tmp_path / "reader", sentinels.url)
    try:
        seed(writer)
        assert reader.check("e-1", "l-1", "calendar:view")["allowed"] is True
        assert reader.check("e-2", "l-1", "calendar:view")["allowed"] is True
        position = reader.app.extensions["sidecar"].replica.position
        revoke = writer.put("/v1/locations/l-1/employees/e-1", {"roles": ["viewer"], "deny": ["calendar:view"]})
        assert revoke.status_code == 200  # acknowledged: on the primary and on the replica (WAIT)
        old_port = sentinels.primary_port()
        (sentinels.primary if sentinels.primary.port == old_port else sentinels.replica).kill()

        seen = write_until_accepted(writer, reader, sentinels, restart_old=old_port)
        assert seen["refused_writes"] > 0 and sentinels.primary_port() != old_port

        # The revoke acknowledged just before the kill survived it.
        stored = writer.get("/v1/locations/l-1/employees/e-1", scope="admin").get_json()
        assert stored["deny"] == ["calendar:view"]
        # The reader follows the new primary's change stream from where it was.
        after = writer.put("/v1/locations/l-1/employees/e-2", {"roles": ["viewer"], "deny": ["client:view"]})
        assert after.status_code == 200
        assert reader.check("e-1", "l-1", "calendar:view", min_revision=after.get_json()["revision"])["allowed"] \
            is False
        assert parse_revision(reader.app.extensions["sidecar"].replica.position) > parse_revision(position)
        # Audit events taken during the failover were spooled, then replayed to the new primary.
        auditor = writer.app.extensions["sidecar"].auditor

        def replayed() -> bool:
            try:
                auditor.replay_now()
            except StoreUnavailable:
                return False
            return not auditor.spool.has_records()

        assert wait_until(replayed, timeout_s=15)
        logged = {e.get("request_id") for e in read_log(primary_url(sentinels), "c:ch-1")}
        assert {f"during-{i}" for i in range(seen["audit_events"])} <= logged
    finally:
        for api in (writer, reader):
            api.app.extensions["sidecar"].stop()


def test_a_demoted_primary_answering_readonly_is_a_503_not_a_500(tmp_path: Path, sentinels: SentinelSet) -> None:
    assert wait_until(lambda: all(
        int(n.client().info("replication")["connected_slaves"]) == 1 for n in (sentinels.primary, sentinels.replica)
        if n.client().info("replication")["role"] == "master"), timeout_s=15, ignoring=REDIS_DOWN)
    writer, reader = make_api(tmp_path / "writer", sentinels.url), make_api(tmp_path / "reader", sentinels.url)
    try:
        seed(writer)
        assert reader.check("e-2", "l-1", "calendar:view")["allowed"] is True
        old_port = sentinels.primary_port()

        def failover() -> bool:  # the old primary becomes a replica; NOGOODSLAVE until the sentinels
            sentinels.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", SERVICE)  # trust the replica
            return True

        assert wait_until(failover, timeout_s=20, step_s=0.5, ignoring=REDIS_DOWN)
        assert wait_until(lambda: sentinels.primary_port() != old_port, timeout_s=15, ignoring=REDIS_DOWN)
        write_until_accepted(writer, reader, sentinels, restart_old=None)
        assert writer.get("/v1/employees/e-9", scope="admin").status_code == 200
    finally:
        for api in (writer, reader):
            api.app.extensions["sidecar"].stop()
