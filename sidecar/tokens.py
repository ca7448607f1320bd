"""Service tokens: scopes, stored only as SHA-256, compared in constant time.

The tokens file is ``{"tokens": [{"name", "sha256", "scopes"}]}``. Every authentication stats
it and re-reads it when its identity changes (inode, modification time, size), so a token
created or revoked by ``sidecar token`` or ``/v1/tokens`` counts in every worker at once,
without a restart. A file that cannot be read or parsed (a hand edit gone wrong) keeps the last
good tokens in force and is reported by :attr:`TokenFile.error` (``/readyz`` then answers 503)
until a good file replaces it.

Writers (create, revoke) hold an exclusive ``flock`` on ``<file>.lock`` for the whole
read-modify-write, write the new content to a temporary file of their own in the same
directory, fsync it and ``os.replace`` it over the file: parallel writers never lose each
other's tokens, and readers see the old file or the new one, never half of one.

Imports nothing from the sidecar.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("sidecar.tokens")

SCOPES = ("check", "admin", "billing", "audit", "security", "mfa")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


class TokenError(ValueError):
    """A token change the file refuses: a bad name or scope, a duplicate, an unknown name."""


class TokenExists(TokenError):
    pass


class TokenUnknown(TokenError):
    pass


@dataclass(frozen=True)
class Token:
    name: str
    sha256: str
    scopes: frozenset[str]

    def public(self) -> dict[str, Any]:
        """What may be shown: never the hash."""
        return {"name": self.name, "scopes": sorted(self.scopes)}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise TokenError("a token name is 1-64 characters from [A-Za-z0-9._-]")
    return name


def check_scopes(scopes: object) -> list[str]:
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise TokenError("scopes must be a list of strings")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise TokenError(f"unknown scopes {unknown}; scopes are {', '.join(SCOPES)}")
    if not scopes:
        raise TokenError("a token needs at least one scope")
    return sorted(set(scopes))


class TokenFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._tokens: tuple[Token, ...] = ()
        self.error: str | None = None  # why the file on disk is not in force, if it is not

    def _load(self) -> tuple[Token, ...]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._tokens = None, ()
            return self._tokens
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # a replaced file is a new inode
        if stamp != self._stamp:
            self._stamp = stamp  # a bad file is parsed once, not on every request
            try:
                self._tokens = _parse(json.loads(self.path.read_text()))
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

    def all(self) -> list[Token]:
        return sorted(self._load(), key=lambda t: t.name)

    def create(self, name: str, scopes: list[str]) -> str:
        """Store a new token's hash and return the token itself (shown once, never stored)."""
        check_name(name)
        wanted = check_scopes(scopes)
        token = "sct_" + secrets.token_urlsafe(32)
        with self._locked() as data:
            if any(t.get("name") == name for t in data["tokens"]):
                raise TokenExists(f"a token named {name!r} exists already")
            data["tokens"].append({"name": name, "sha256": digest(token), "scopes": wanted})
        return token

    def revoke(self, name: str) -> Token:
        """Remove the named token; it answers 401 from the next request on. Returns what it was."""
        check_name(name)
        with self._locked() as data:
            kept = [t for t in data["tokens"] if t.get("name") != name]
            if len(kept) == len(data["tokens"]):
                raise TokenUnknown(f"no token named {name!r}")
            gone = next(t for t in data["tokens"] if t.get("name") == name)
            data["tokens"] = kept
        return _parse({"tokens": [gone]})[0]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, list[dict[str, Any]]]]:
        """The file's content under an exclusive lock; written back atomically if the block succeeds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            data: dict[str, list[dict[str, Any]]] = {"tokens": []}
            if self.path.exists():
                data = json.loads(self.path.read_text())
                if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
                    raise TokenError(f"{self.path} is not a tokens file ({{\"tokens\": [...]}})")
            yield data
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600: hashes are not for everyone
                    json.dump(data, out, indent=2)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            _fsync_dir(self.path.parent)
        finally:
            os.close(lock_fd)  # closing releases the lock


def _parse(data: Any) -> tuple[Token, ...]:
    tokens = tuple(Token(str(t["name"]), t["sha256"].lower(), frozenset(t.get("scopes", ())))
                   for t in data.get("tokens", []))
    if any(len(t.sha256) != 64 for t in tokens):
        raise ValueError("a sha256 is not 64 hex characters")
    return tokens


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
