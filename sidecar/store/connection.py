"""Connections to Redis: how a client is made, where Redis is, and how its failures are named.

This is the seam between redis-py and the rest of the sidecar (as httpx maps httpcore's
exceptions beside its transport): every store runs its commands inside
:func:`translated_errors`, so nothing above ``store/`` ever sees a ``redis`` exception.
Clients are created lazily so nothing is opened before gunicorn forks.

Imports: redis, ``sidecar.config``, ``sidecar.errors``, ``sidecar.store`` (clients, health, redis_server).
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
from sidecar.store.redis_server import RedisServer

# The client's type, for code above store/ that hands one on without importing redis.
Client: TypeAlias = "redis.Redis[bytes]"


def connect(url: str, *, timeout_s: float = 1.0, health: RedisHealth | None = None) -> redis.Redis[bytes]:
    """A client whose commands fail fast when Redis is away, so decisions never hang on it.

    ``url`` is any SIDECAR_REDIS_URL (Sentinel included, see ``store.clients``); with ``health``
    the client goes through that worker's circuit breaker.
    """
    return make_client(url, timeout_s=timeout_s, health=health)


def resolve_redis(settings: Settings) -> tuple[str, RedisServer | None]:
    """The configured Redis, else the private one under the data dir (started if needed)."""
    if settings.redis_url:
        return settings.redis_url, None
    server = RedisServer(settings.data_dir / "redis")
    server.start()
    return server.url, server


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
