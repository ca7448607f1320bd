"""Every redis-py failure becomes StoreUnavailable at the store seam; WatchError passes through."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from sidecar.errors import StoreUnavailable
from sidecar.store.connection import connect, translated_errors
from sidecar.store.redis_server import RedisServer


def test_an_unreachable_redis_is_store_unavailable() -> None:
    client = connect("redis://127.0.0.1:1/0", timeout_s=0.2)
    with pytest.raises(StoreUnavailable) as raised, translated_errors():
        client.ping()
    assert raised.value.status == 503
    assert isinstance(raised.value.__cause__, redis.ConnectionError)


def test_a_script_error_is_store_unavailable_not_a_500(redis_client: redis.Redis) -> None:
    with pytest.raises(StoreUnavailable) as raised, translated_errors():
        redis_client.eval("return redis.error_reply('boom')", 0)
    assert raised.value.body()["error"]["code"] == "redis_unavailable"
    assert isinstance(raised.value.__cause__, redis.ResponseError)


def test_a_read_only_replica_is_store_unavailable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "replica", appendonly=False).start()
    try:
        client = connect(server.url)
        client.execute_command("REPLICAOF", "127.0.0.1", "1")  # a replica whose primary is gone
        with pytest.raises(StoreUnavailable) as raised, translated_errors():
            client.set("k", "v")
        assert raised.value.details["reason"] == "read_only"
        client.close()
    finally:
        server.stop()


def test_watch_error_is_the_retry_signal_and_passes_through(redis_client: redis.Redis) -> None:
    with pytest.raises(redis.WatchError), translated_errors():
        raise redis.WatchError("changed")
