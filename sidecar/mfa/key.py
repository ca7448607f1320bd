"""The key of the two-step code hashes when ``SIDECAR_MFA_SECRET`` is unset: a file, never Redis.

A code hash is HMAC-SHA256 over 10^6 possible codes, so whoever holds both a hash and its key
recovers the code in about a second. The key therefore lives outside the store that holds the
hashes: ``<data_dir>/mfa.key`` (mode 0600), created once with a CSPRNG. Creation is atomic
(written to a private temporary file, then hard-linked into place), so concurrent workers
agree on one key. Replicas on several hosts sharing one Redis need the same key: set
``SIDECAR_MFA_SECRET`` on each (or give them the same file).

Imports: ``sidecar.mfa.codes``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sidecar.mfa.codes import new_secret


def load_or_create(path: Path) -> tuple[str, bool]:
    """The key stored at ``path`` (created if absent) and whether this call created it."""
    try:
        return _read(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mfa.key.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(new_secret() + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # fails if another process created the key first: theirs wins
            created = True
        except FileExistsError:
            created = False
    finally:
        os.unlink(tmp)
    return _read(path), created


def _read(path: Path) -> str:
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable two-step key (expected 64 hex characters)")
    return key
