"""What ``sidecar serve`` does once before serving: refuse a Redis it cannot use, make the first token.

* A Redis running in cluster mode is refused with one line (why, and that Sentinel is the HA
  path); a ``redis+cluster://`` URL is already refused by the settings.
* The first start (no tokens file yet) creates a bootstrap token holding every scope. With
  ``SIDECAR_BOOTSTRAP_TOKEN_FILE`` it is written to that file only (mode 0600, never printed or
  logged: in a container stderr is the log); without it, it is printed once to stderr (``make
  serve`` on a terminal).

Imports: ``sidecar.config``, ``sidecar.store.clients``, ``sidecar.tokens``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sidecar.config import Settings
from sidecar.store.clients import cluster_refusal
from sidecar.tokens import SCOPES, TokenFile


def redis_refusal(settings: Settings) -> str | None:
    """One line saying why the configured Redis cannot be used; None when it can (or is away)."""
    return cluster_refusal(settings.redis_url) if settings.redis_url else None


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` with mode 0600 from the start (atomic rename, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (secret + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def bootstrap_token(settings: Settings) -> None:
    """On the first start, create the bootstrap token and hand it over (file, else stderr)."""
    if settings.tokens_path.exists():
        return
    token = TokenFile(settings.tokens_path).create("bootstrap-admin", list(SCOPES))
    target = settings.bootstrap_token_file
    if target is not None:
        write_secret(target, token)
        print(f"sidecar: created {settings.tokens_path} with a bootstrap token holding every scope; "
              f"the token is in {target} (mode 0600)", file=sys.stderr)
        return
    print(f"sidecar: created {settings.tokens_path} with a bootstrap token holding every scope.\n"
          f"sidecar: it is shown only this once; keep it safe:\n{token}", file=sys.stderr)


__all__ = ["bootstrap_token", "redis_refusal", "write_secret"]
