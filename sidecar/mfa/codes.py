"""One-time codes: drawn from a CSPRNG, stored only as keyed hashes, compared in constant time.

``new_code()`` gives ``DIGITS`` decimal digits from :mod:`secrets`. ``code_hash(secret,
challenge_id, code)`` is HMAC-SHA256 keyed with the server secret over the challenge id and the
code, so a hash says nothing about another challenge's code and cannot be brute-forced without
the secret. ``matches`` compares with :func:`hmac.compare_digest`. Imports nothing from the sidecar.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

DIGITS = 6


def new_code() -> str:
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def new_secret() -> str:
    return secrets.token_hex(32)


def code_hash(secret: str, challenge_id: str, code: str) -> str:
    message = f"{challenge_id}:{code}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def matches(secret: str, challenge_id: str, code: str, stored_hash: str) -> bool:
    return hmac.compare_digest(code_hash(secret, challenge_id, code), stored_hash)


class KeyedCodes:
    """The challenge store's code hasher, keyed by a secret read when first needed."""

    def __init__(self, secret: Callable[[], str]) -> None:
        self._secret = secret

    def hash(self, challenge_id: str, code: str) -> str:
        return code_hash(self._secret(), challenge_id, code)

    def matches(self, challenge_id: str, code: str, stored_hash: str) -> bool:
        return matches(self._secret(), challenge_id, code, stored_hash)

