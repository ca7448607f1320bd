"""Service tokens: scopes, stored only as SHA-256, compared in constant time.

The tokens file is ``{"tokens": [{"name", "sha256", "scopes"}]}``. It is re-read when its
modification time changes, so ``sidecar token create`` takes effect without a restart. A file
that cannot be read or parsed (a truncated edit) keeps the last good tokens in force and is
reported by :attr:`TokenFile.error` (``/readyz`` then answers 503) until a good file replaces it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("sidecar.tokens")

SCOPES = ("check", "admin", "billing", "audit", "security", "mfa")


@dataclass(frozen=True)
class Token:
    name: str
    sha256: str
    scopes: frozenset[str]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _parse(text: str) -> tuple[Token, ...]:
    data = json.loads(text)
    tokens = tuple(Token(str(t["name"]), t["sha256"].lower(), frozenset(t.get("scopes", ())))
                   for t in data.get("tokens", []))
    if any(len(t.sha256) != 64 for t in tokens):
        raise ValueError("a sha256 is not 64 hex characters")
    return tokens


class TokenFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._tokens: tuple[Token, ...] = ()
        self.error: str | None = None  # why the file on disk is not in force, if it is not

    def _load(self) -> tuple[Token, ...]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._tokens = None, ()
            return self._tokens
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._stamp = stamp  # a bad file is parsed once, not on every request
            try:
                self._tokens = _parse(self.path.read_text())
                self.error = None
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
                self.error = f"{self.path} is not a valid tokens file ({type(exc).__name__}); the last good tokens stay"
                log.error("tokens_file_invalid", path=str(self.path), error=type(exc).__name__,
                          tokens_in_force=len(self._tokens))
        return self._tokens

    def check(self) -> str | None:
        """Re-read the file if it changed; why it is not in force (None when it is)."""
        self._load()
        return self.error

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
