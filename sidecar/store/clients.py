"""Redis clients for each kind of SIDECAR_REDIS_URL: one server, or a primary found by Sentinel.

* ``redis://``, ``rediss://``, ``unix://``: one server (``rediss`` with the CA, client
  certificate and key named in the URL's query: ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``);
* ``redis+sentinel://[user:pass@]host:port[,host:port...]/service[?db=N]`` (and ``rediss+``):
  the sentinels are asked for the service's primary at each (re)connection; a failover moves
  the client to the new primary, and a demoted primary's ``READONLY`` answer drops the socket.

Every client times out (connect and read) after ``timeout_s``, retries a failed command once
(unless told ``retries=0``) on a fresh socket (a Redis restart leaves stale pooled sockets),
never on a timeout, and, given a :class:`RedisHealth`, goes through its circuit breaker. A
server running in cluster mode is refused by :func:`cluster_refusal` before the sidecar starts
serving.

Imports: redis, ``sidecar.config``, ``sidecar.store.health``.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

from sidecar.config import CLUSTER_REFUSED, RedisTarget, parse_redis_url
from sidecar.store.health import RedisHealth, guarded

try:  # redis-py 7+: without a DriverInfo, every new connection reads redis's version from the
    # installed package metadata (about 1 ms each); one for the process says the same (CLIENT SETINFO).
    from redis.driver_info import DriverInfo

    _DRIVER: dict[str, Any] = {"driver_info": DriverInfo()}
except ImportError:  # older redis-py reads the version once, at import
    _DRIVER = {}


def _tls_options(target: RedisTarget) -> dict[str, Any]:
    options: dict[str, Any] = {k: v for k, v in target.options.items() if k.startswith("ssl_")}
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = options["ssl_check_hostname"].lower() in ("1", "true", "yes")
    return options


def make_client(url: str, *, timeout_s: float, health: RedisHealth | None = None,
                retries: int = 1) -> redis.Redis[bytes]:
    """A client for ``url`` whose commands fail fast when Redis is away or hung.

    ``retries=0`` for a caller whose own loop reconnects (the change-log follower): redis-py's
    retry would reissue a blocking read that ``stop()`` just interrupted by closing its socket.
    """
    target = parse_redis_url(url)
    common: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), retries),  # one on a fresh socket by default; redis-py's: 10 with backoff
        "health_check_interval": 30,
        "health": health,
        **_DRIVER,
    }
    if not target.sentinels:
        kwargs = redis.connection.parse_url(url)  # the ssl_* query parameters included
        base = kwargs.pop("connection_class", redis.Connection)
        pool = redis.ConnectionPool(connection_class=guarded(base), **kwargs, **common)
        return redis.Redis(connection_pool=pool)
    tls = _tls_options(target) if target.tls else {}
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, **tls}
    if tls:
        sentinel_kwargs["ssl"] = True
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
    base_class = SentinelManagedSSLConnection if target.tls else SentinelManagedConnection
    assert target.service is not None
    client: redis.Redis[bytes] = sentinel.master_for(
        target.service, connection_class=guarded(base_class), db=target.db, username=target.username,
        password=target.password, **tls, **common)
    return client


def cluster_refusal(url: str, *, timeout_s: float = 2.0) -> str | None:
    """The one line refusing a Redis that runs in cluster mode; None otherwise (or unreachable)."""
    client = make_client(url, timeout_s=timeout_s)
    try:
        info = client.info("cluster")
    except (redis.RedisError, OSError):
        return None  # not reachable now: readiness reports it; the workers reconnect
    finally:
        client.close()
    if str(info.get("cluster_enabled", 0)) == "1":
        return CLUSTER_REFUSED
    return None


__all__ = ["cluster_refusal", "make_client"]
