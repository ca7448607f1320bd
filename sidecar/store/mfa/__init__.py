"""The Redis side of two-step authentication (the flows live in :mod:`sidecar.mfa`).

    challenges.py  challenges: status, attempts, expiry, rate limit; atomic verify
    devices.py     employees' registered phones (the mobile app)
    push.py        the push channel's outbox stream ``sidecar:push-outbox``
    key.py         the shared key of the code hashes when ``SIDECAR_MFA_SECRET`` is unset

Imports: redis, ``sidecar.errors`` and ``sidecar.store.connection``; never ``sidecar.mfa``
(the code hashing is handed in as a :class:`~sidecar.store.mfa.challenges.CodeHasher`).
"""
