"""Acknowledged writes: a write counts only once ``min_replicas`` replicas hold it (Redis ``WAIT``).

``WAIT`` waits for the writes made *on its own connection*, so the write and the ``WAIT`` must
share one socket: :func:`acknowledged` takes a connection from the client's pool and hands
back a client pinned to it (pipelines, scripts and ``WATCH`` included), then sends ``WAIT``
on that socket. Fewer copies within the timeout is a :class:`StoreUnavailable` (503): the write
reached the primary but may not survive its loss, so the caller must not report it as done
(directory writes are idempotent ``PUT``/``DELETE``; audit appends are idempotent by event id
and go to the local spool instead).

With ``min_replicas`` 0 (the embedded Redis, one server) nothing is pinned and nothing waits.

Imports: redis, ``sidecar.errors``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from sidecar.errors import StoreUnavailable


class _PinnedPool:
    """A pool view that always lends the same connection and never takes it back."""

    def __init__(self, pool: Any, connection: Any) -> None:
        self._pool = pool
        self._connection = connection

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        return self._connection

    def release(self, connection: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


@contextmanager
def acknowledged(client: redis.Redis[bytes], min_replicas: int, timeout_s: float) -> Iterator[redis.Redis[bytes]]:
    """Run writes on the yielded client; on exit, 503 unless ``min_replicas`` replicas have them."""
    if min_replicas <= 0:
        yield client
        return
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        pinned: Any = _PinnedPool(pool, connection)
        yield redis.Redis(connection_pool=pinned)
        connection.send_command("WAIT", min_replicas, max(1, int(timeout_s * 1000)))
        # WAIT may legitimately block for timeout_s: read with that much more than the socket timeout.
        copies = int(connection.read_response(timeout=timeout_s + (connection.socket_timeout or 1.0)))
    except (redis.RedisError, OSError):
        connection.disconnect()  # a half-read reply must not reach the next borrower
        raise
    finally:
        pool.release(connection)
    if copies < min_replicas:
        raise StoreUnavailable(
            f"the write reached the Redis primary but only {copies} of {min_replicas} replicas within "
            f"{timeout_s}s (SIDECAR_REDIS_MIN_REPLICAS); it may not survive a failover: retry",
            reason="not_replicated")


__all__ = ["acknowledged"]
