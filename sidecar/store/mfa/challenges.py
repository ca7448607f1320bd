"""Two-step challenges in Redis, shared by every replica.

Layout::

    sidecar:mfa:challenge:<id>   HASH employee, channel, status, attempts, created_at,
                                 expires_at, device (JSON), ip, code_hash (email only), answered_by
    sidecar:mfa:rate:<E>         ZSET challenge id -> creation time (the rate-limit window)

``status`` is stored as ``pending``, ``verified``, ``denied`` or ``locked``; a pending challenge
whose ``expires_at`` has passed reads as ``expired``. Expiry is logical, checked against the
injected clock ``now`` (seconds since the epoch), so tests move time instead of sleeping; the
Redis TTL is set generously beyond it (``RETAIN_S``) so an expired challenge answers 410 for an
hour before it is forgotten (404).

Creating a challenge and counting it against the employee's window (``RATE_LIMIT`` per
``RATE_WINDOW_S``) is one Lua script. Verifying and answering run under WATCH/MULTI: the
state read is the state written over, so two concurrent verifies cannot both succeed and no
failed attempt is lost; the code hash is compared in Python with :func:`hmac.compare_digest`.

Refusals that change nothing raise (404, 409, 410, 423); transitions worth an audit event
(verified, failed, locked, approved, denied) are returned as an :class:`Outcome`.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import redis

from sidecar.errors import Conflict, Expired, Locked, NotFound, RateLimited
from sidecar.store.connection import translated_errors

CODE_TTL_S = 300
RETAIN_S = 3600
RATE_LIMIT = 5
RATE_WINDOW_S = 600
MAX_ATTEMPTS = 5
CHANNELS = ("email", "push")

_CREATE = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, oldest[2]}
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 60)
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {1, ''}
"""


def challenge_key(challenge_id: str) -> str:
    return f"sidecar:mfa:challenge:{challenge_id}"


def rate_key(employee: str) -> str:
    return f"sidecar:mfa:rate:{employee}"


class CodeHasher(Protocol):
    """Keyed hashing of one-time codes (:class:`sidecar.mfa.codes.KeyedCodes`): only hashes reach Redis."""

    def hash(self, challenge_id: str, code: str) -> str: ...

    def matches(self, challenge_id: str, code: str, stored_hash: str) -> bool: ...


@dataclass(frozen=True)
class Challenge:
    id: str
    employee: str
    channel: str
    stored_status: str
    attempts: int
    created_at: float
    expires_at: float
    device: dict[str, str]
    ip: str | None
    code_hash: str | None = None

    def status(self, now: float) -> str:
        """pending | verified | denied | locked | expired."""
        if self.stored_status == "pending" and now >= self.expires_at:
            return "expired"
        return self.stored_status

    @property
    def attempts_left(self) -> int:
        return max(MAX_ATTEMPTS - self.attempts, 0)

    @classmethod
    def from_redis(cls, challenge_id: str, raw: dict[bytes, bytes]) -> Challenge:
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(id=challenge_id, employee=fields["employee"], channel=fields["channel"],
                   stored_status=fields["status"], attempts=int(fields["attempts"]),
                   created_at=float(fields["created_at"]), expires_at=float(fields["expires_at"]),
                   device=json.loads(fields.get("device") or "{}"), ip=fields.get("ip") or None,
                   code_hash=fields.get("code_hash") or None)


@dataclass(frozen=True)
class Outcome:
    """An audited transition: verified | failed | locked (a code), approved | denied (a push)."""

    kind: str
    challenge: Challenge


class ChallengeStore:
    def __init__(self, client: redis.Redis[bytes], codes: CodeHasher, now: Callable[[], float]) -> None:
        self.client = client
        self._codes = codes
        self._now = now
        self._create = client.register_script(_CREATE)

    def create(self, employee: str, channel: str, device: dict[str, str], ip: str | None,
               code: str | None) -> Challenge:
        """Store a new pending challenge, or raise RateLimited (with retry_after) for the employee."""
        now = self._now()
        challenge_id = "ch-" + secrets.token_urlsafe(18)
        challenge = Challenge(challenge_id, employee, channel, "pending", 0, now, now + CODE_TTL_S, device, ip,
                              self._codes.hash(challenge_id, code) if code is not None else None)
        fields = {"employee": employee, "channel": channel, "status": "pending", "attempts": "0",
                  "created_at": repr(now), "expires_at": repr(challenge.expires_at),
                  "device": json.dumps(device, sort_keys=True), "ip": ip or "",
                  "code_hash": challenge.code_hash or ""}
        flat = [item for pair in fields.items() for item in pair]
        with translated_errors():
            created, oldest = self._create(keys=[rate_key(employee), challenge_key(challenge_id)],
                                           args=[repr(now), RATE_WINDOW_S, RATE_LIMIT, CODE_TTL_S + RETAIN_S,
                                                 challenge_id, *flat])
        if not created:
            retry_after = max(1, math.ceil(float(oldest) + RATE_WINDOW_S - now))
            raise RateLimited(f"at most {RATE_LIMIT} challenges per employee in {RATE_WINDOW_S // 60} minutes",
                              retry_after=retry_after)
        return challenge

    def discard(self, challenge_id: str) -> None:
        """Forget a challenge whose message could not be sent (it still counts against the rate limit)."""
        with translated_errors():
            self.client.delete(challenge_key(challenge_id))

    def get(self, challenge_id: str) -> Challenge:
        with translated_errors():
            raw = self.client.hgetall(challenge_key(challenge_id))
        if not raw:
            raise NotFound(f"challenge {challenge_id} does not exist", challenge_id=challenge_id)
        return Challenge.from_redis(challenge_id, raw)

    def now(self) -> float:
        return self._now()

    def verify(self, challenge_id: str, code: str) -> Outcome:
        """Check a code once, atomically: verified, failed (attempt counted) or locked (5th failure)."""

        def decide(challenge: Challenge, pipe: Any) -> Outcome:
            _require(challenge, "email", self._now())
            if challenge.code_hash and self._codes.matches(challenge.id, code, challenge.code_hash):
                pipe.multi()
                pipe.hset(challenge_key(challenge.id), mapping={"status": "verified", "code_hash": ""})
                return Outcome("verified", replace(challenge, stored_status="verified"))
            attempts = challenge.attempts + 1
            status = "locked" if attempts >= MAX_ATTEMPTS else "pending"
            pipe.multi()
            pipe.hset(challenge_key(challenge.id), mapping={"attempts": str(attempts), "status": status,
                                                             **({"code_hash": ""} if status == "locked" else {})})
            return Outcome("locked" if status == "locked" else "failed",
                           replace(challenge, attempts=attempts, stored_status=status))

        return self._transition(challenge_id, decide)

    def answer(self, challenge_id: str, device_id: str, approve: bool) -> Outcome:
        """Record the mobile app's answer to a pending push challenge: approved or denied, once."""

        def decide(challenge: Challenge, pipe: Any) -> Outcome:
            _require(challenge, "push", self._now())
            status = "verified" if approve else "denied"
            pipe.multi()
            pipe.hset(challenge_key(challenge.id), mapping={"status": status, "answered_by": device_id})
            return Outcome("approved" if approve else "denied", replace(challenge, stored_status=status))

        return self._transition(challenge_id, decide)

    def _transition(self, challenge_id: str, decide: Callable[[Challenge, Any], Outcome]) -> Outcome:
        key = challenge_key(challenge_id)
        with translated_errors():
            for _ in range(50):
                with self.client.pipeline() as pipe:
                    try:
                        pipe.watch(key)
                        raw: dict[bytes, bytes] = pipe.hgetall(key)  # type: ignore[assignment]  # immediate under WATCH
                        if not raw:
                            raise NotFound(f"challenge {challenge_id} does not exist", challenge_id=challenge_id)
                        outcome = decide(Challenge.from_redis(challenge_id, raw), pipe)
                        pipe.execute()
                        return outcome
                    except redis.WatchError:
                        continue
        raise Conflict("the challenge changed concurrently too often; try again")


def _require(challenge: Challenge, channel: str, now: float) -> None:
    """Refuse anything but a pending, unexpired challenge of the right channel."""
    if challenge.channel != channel:
        raise Conflict(f"challenge {challenge.id} is a {challenge.channel} challenge", reason="wrong_channel")
    status = challenge.status(now)
    if status == "expired":
        raise Expired(f"challenge {challenge.id} has expired; ask for a new one")
    if status == "locked":
        raise Locked(f"challenge {challenge.id} is locked after {MAX_ATTEMPTS} wrong codes; ask for a new one",
                     attempts_left=0)
    if status != "pending":
        raise Conflict(f"challenge {challenge.id} was already answered ({status})", reason="already_used",
                       status=status)
