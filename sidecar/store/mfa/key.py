"""The key of the two-step code hashes when ``SIDECAR_MFA_SECRET`` is unset: one shared in Redis.

    sidecar:mfa:key   STRING, created once (SET NX) so every replica uses the same key

Imports: redis, :mod:`sidecar.store.connection`.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from sidecar.store.connection import translated_errors

KEY_IN_REDIS = "sidecar:mfa:key"


def shared_key(client: redis.Redis[bytes], new_key: Callable[[], str]) -> str:
    """The key in Redis; the first caller's ``new_key()`` when there was none."""
    with translated_errors():
        client.set(KEY_IN_REDIS, new_key(), nx=True)
        stored = client.get(KEY_IN_REDIS)
    assert stored is not None  # just set, and keys never expire
    return bytes(stored).decode()
