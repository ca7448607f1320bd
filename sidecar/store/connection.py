"""Connections to Redis: how a client is made, where Redis is, and how its failures are named.

This is the seam between redis-py and the rest of the sidecar (as httpx maps httpcore's
exceptions beside its transport): every store runs its commands inside
:func:`translated_errors`, so nothing above ``store/`` ever sees a ``redis`` exception.
Clients are created lazily so nothing is opened before gunicorn forks.

Imports: redis, ``sidecar.config``, ``sidecar.errors``, ``sidecar.store`` (clients, health).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeAlias

import redis
import redis.exceptions

from sidecar.config import Settings
from sidecar.errors import StoreUnavailable
from sidecar.store.clients import make_client
from sidecar.store.health import RedisHealth

# The client's type, for code above store/ that hands one on without importing redis.
Client: TypeAlias = "redis.Redis[bytes]"


def connect(url: str, *, timeout_s: float = 1.0, health: RedisHealth | None = None,
            retries: int = 1) -> redis.Redis[bytes]:
    """A client whose commands fail fast when Redis is away, so decisions never hang on it.

    ``url`` is any SIDECAR_REDIS_URL (Sentinel included, see ``store.clients``); with ``health``
    the client goes through that worker's circuit breaker; ``retries``: see ``make_client``.
    """
    return make_client(url, timeout_s=timeout_s, health=health, retries=retries)


def ping(url: str, *, timeout_s: float) -> bool:
    try:
        client = make_client(url, timeout_s=timeout_s)  # any SIDECAR_REDIS_URL, Sentinel included
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def running_redis_url(settings: Settings, *, timeout_s: float = 2.0) -> str:
    """The Redis a CLI command uses: the configured one, else the embedded one ``sidecar serve`` runs.

    It never starts a server: that is ``sidecar serve``'s alone, so a CLI command cannot put a
    second redis-server on a live AOF. A Redis that does not answer is one clear error.
    """
    if settings.redis_url:
        url = settings.redis_url
        where = "SIDECAR_REDIS_URL"
    else:
        url = f"unix://{(settings.data_dir / 'redis' / 'redis.sock').resolve()}"
        where = (f"the embedded Redis of {settings.data_dir} (start `sidecar serve` with this "
                 "SIDECAR_DATA_DIR, or set SIDECAR_REDIS_URL)")
    if not ping(url, timeout_s=timeout_s):
        raise StoreUnavailable(f"Redis does not answer within {timeout_s:g}s: {where}")
    return url


@contextmanager
def translated_errors() -> Iterator[None]:
    """Redis failures become StoreUnavailable (503): the caller's fault they are not.

    Most specific first. ``WatchError`` is re-raised untouched: it is the optimistic-locking
    signal the stores' retry loops catch, not a failure.
    """
    try:
        yield
    except redis.WatchError:
        raise
    except redis.exceptions.ReadOnlyError as exc:  # a replica after a failover, before clients moved
        raise StoreUnavailable("the directory store (Redis) is read-only; is it a replica after a failover?",
                               reason="read_only") from exc
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:  # incl. BusyLoadingError
        raise StoreUnavailable("the directory store (Redis) is unreachable") from exc
    except redis.ResponseError as exc:  # a script or command refused by the server (OOM, NOSCRIPT, ...)
        raise StoreUnavailable("the directory store (Redis) refused the command", reason="refused") from exc
    except redis.RedisError as exc:  # anything else redis-py raises (a protocol or data error)
        raise StoreUnavailable("the directory store (Redis) failed", reason="error") from exc
