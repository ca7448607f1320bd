"""A lease in Redis: at most one holder at a time, for a while, renewed while it works.

``SET key token NX PX ttl`` takes it; renew and release compare the token first (one script
each), so a holder that stalled past its lease never extends or drops someone else's. Used by
the audit archiver: whichever replica holds ``sc:audit:archiver`` moves events, the others wait.

Imports: redis, ``sidecar.store.connection.translated_errors``.
"""

from __future__ import annotations

import uuid

import redis

from sidecar.store.connection import translated_errors

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    def __init__(self, client: redis.Redis[bytes], key: str, ttl_ms: int) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = uuid.uuid4().hex
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        with translated_errors():
            return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (expired and taken, or never held)."""
        with translated_errors():
            return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        with translated_errors():
            self._release(keys=[self.key], args=[self.token])
