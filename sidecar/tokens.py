"""Service tokens: scopes, stored only as SHA-256, compared in constant time.

The tokens file is ``{"tokens": [{"name", "sha256", "scopes"}]}``. It is re-read when its
modification time changes, so ``sidecar token create`` takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

SCOPES = ("check", "admin", "billing", "audit", "security", "mfa")


@dataclass(frozen=True)
class Token:
    name: str
    sha256: str
    scopes: frozenset[str]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._tokens: tuple[Token, ...] = ()

    def _load(self) -> tuple[Token, ...]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._tokens = None, ()
            return self._tokens
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            data = json.loads(self.path.read_text())
            self._tokens = tuple(
                Token(t["name"], t["sha256"].lower(), frozenset(t.get("scopes", ()))) for t in data.get("tokens", [])
            )
            self._stamp = stamp
        return self._tokens

    def authenticate(self, presented: str) -> Token | None:
        """The token whose hash matches, comparing every stored hash in constant time."""
        wanted = digest(presented)
        found = None
        for token in self._load():
            if hmac.compare_digest(token.sha256, wanted):
                found = token
        return found

    def create(self, name: str, scopes: list[str]) -> str:
        """Store a new token's hash and return the token itself (shown once, never stored)."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; scopes are {', '.join(SCOPES)}")
        if not scopes:
            raise ValueError("a token needs at least one scope")
        token = "sct_" + secrets.token_urlsafe(32)
        data: dict[str, list[dict[str, object]]] = {"tokens": []}
        if self.path.exists():
            data = json.loads(self.path.read_text())
        if any(t["name"] == name for t in data["tokens"]):
            raise ValueError(f"a token named {name!r} exists already")
        data["tokens"].append({"name": name, "sha256": digest(token), "scopes": sorted(set(scopes))})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
        os.replace(tmp, self.path)
        return token
