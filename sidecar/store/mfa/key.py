"""The two-step key's old home in Redis, emptied: the key never sits beside the code hashes.

Releases before issue 11 kept the key of the code hashes in ``sidecar:mfa:key`` when
``SIDECAR_MFA_SECRET`` was unset; whoever read Redis could then recover a pending code. The key
now lives in ``<data_dir>/mfa.key`` (:mod:`sidecar.mfa.key`); this deletes the old copy.

Imports: redis, :mod:`sidecar.store.connection`.
"""

from __future__ import annotations

import redis

from sidecar.store.connection import translated_errors

LEGACY_KEY_IN_REDIS = "sidecar:mfa:key"


def drop_legacy_key(client: redis.Redis[bytes]) -> None:
    with translated_errors():
        client.delete(LEGACY_KEY_IN_REDIS)
