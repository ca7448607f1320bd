"""Employee JWTs for forward-auth: verify a token, return who it names, or raise InvalidToken.

Contract
--------
* ``JwtVerifier(secret=..., public_key=..., issuer=..., audience=..., leeway=5)`` is built
  once from configuration. The algorithms it accepts come from the configured key(s), never
  from a token: a secret allows HS256 (and HS384 / HS512 when the secret is long enough for
  them, RFC 7518 3.2); an RSA public key allows RS256/384/512 and PS256/384/512; an EC key
  allows the one ES algorithm of its curve (P-256: ES256, P-384: ES384, P-521: ES512,
  secp256k1: ES256K); an Ed25519/Ed448 key allows EdDSA. ``none`` is never accepted. When
  both a secret and a public key are configured, each key only ever verifies its own
  algorithms, so an HS256 token is never checked against the bytes of a public key (the
  classic key-confusion attack).
* ``verify(token)`` requires a signature by the configured key, ``exp`` (a number), honours
  ``nbf`` and a future ``iat`` (``not_yet_valid``) with ``leeway`` seconds of clock skew, and
  checks ``iss`` / ``aud`` only when an issuer / audience is configured (when none is, an
  ``aud`` in the token is not checked). ``sub`` must be an id (1-64 of ``[A-Za-z0-9._-]``).
* The result is an :class:`Identity`: ``employee`` (``sub``), ``mfa`` (true only when ``amr``
  is a list containing ``"mfa"``), ``location`` (the ``loc`` claim when it is a valid id,
  else None: informational, the route and ``X-Location-Id`` decide the location), ``expires_at``
  and the verified ``claims``.
* Every failure raises :class:`InvalidToken` (HTTP 401, code ``invalid_token``) whose
  ``reason`` is one of :data:`REASONS`. Nothing here returns a partial identity.
* ``load_verifier(settings)`` returns None when neither ``SIDECAR_JWT_SECRET`` nor
  ``SIDECAR_JWT_PUBLIC_KEY`` is set (forward-auth then answers 503) and raises
  :class:`~sidecar.config.ConfigError` for a key it cannot use.

* **Verified tokens are remembered** (a proxy sends the same JWT with every request of a
  session, and a signature check is most of a forward-auth call's cost). The cache is keyed by
  the SHA-256 of the exact token text, so any other token, tampered or re-encoded, is verified
  in full. An entry is served only from the moment its token passed a full verification until
  the earliest of its ``exp`` (without the leeway) and ``cache_ttl_s`` later (default 30 s), so
  it never accepts a token that a full verification would now refuse for time reasons (``exp``
  is never extended; ``nbf`` / ``iat`` only become more satisfied as time moves on; a clock
  stepped back makes entries unusable until it catches up). Failures are never remembered. At
  most ``cache_size`` entries (default 4096), the oldest dropped first. The cache belongs to the
  verifier, and a verifier to its keys: new keys (a restart or SIGHUP of the workers: keys are
  settings) mean a new verifier and an empty cache; :meth:`JwtVerifier.clear_cache` empties it.

Pure: no Flask, no Redis. Thread-safe (the keys are immutable after construction; the cache
is read without a lock and written under one).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from sidecar.config import ConfigError, Settings
from sidecar.errors import Unauthorized
from sidecar.policy.directory import is_valid_id

DEFAULT_LEEWAY_S = 5.0
MAX_TOKEN_LENGTH = 16 * 1024
CACHE_SIZE = 4096  # verified tokens remembered per verifier
CACHE_TTL_S = 30.0  # the longest a verified token is remembered (never past its exp)

REASONS = (
    "missing_token",  # no Authorization header, or not the Bearer scheme, or an empty token
    "malformed",  # not a JWS compact token, bad base64/JSON, wrong claim types, unknown `crit`
    "bad_algorithm",  # `alg` missing, `none`, or not allowed for the configured key(s)
    "bad_signature",  # signature does not verify with the configured key
    "expired",  # `exp` is in the past (beyond the leeway)
    "missing_exp",  # no `exp` claim: tokens without an expiry are refused
    "not_yet_valid",  # `nbf` or `iat` is in the future (beyond the leeway)
    "bad_issuer",  # issuer configured and `iss` missing or different
    "bad_audience",  # audience configured and `aud` missing or not containing it
    "bad_subject",  # `sub` missing, not a string, or not an id
)

_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}


class InvalidToken(Unauthorized):
    """The bearer JWT is missing or unusable. ``reason`` is a snake_case entry of REASONS."""

    code = "invalid_token"

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason.replace("_", " "), reason=reason)
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    """Who a verified token names."""

    employee: str
    mfa: bool
    location: str | None
    expires_at: int
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value (scheme case-insensitive)."""
    if not authorization:
        raise InvalidToken("missing_token", "Authorization: Bearer <jwt> is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("missing_token", "Authorization: Bearer <jwt> is required")
    return token


def _load_public_key(pem: str) -> Any:
    data = pem.strip().encode("ascii", "replace")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"SIDECAR_JWT_PUBLIC_KEY is not a PEM public key or certificate: {exc}") from None


def _public_key_algorithms(key: Any) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigError(f"SIDECAR_JWT_PUBLIC_KEY: RSA key of {key.key_size} bits; at least 2048 needed")
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = _EC_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise ConfigError(f"SIDECAR_JWT_PUBLIC_KEY: unsupported EC curve {key.curve.name}")
        return (algorithm,)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    raise ConfigError(f"SIDECAR_JWT_PUBLIC_KEY: unsupported key type {type(key).__name__}")


def _number(claims: Mapping[str, Any], name: str) -> None:
    value = claims.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken("malformed", f"claim {name} must be a NumericDate (a number)")


class _Verified(NamedTuple):
    identity: Identity
    since: float  # when the token passed a full verification (the clock, after it)
    until: float  # min(exp, since + ttl): served only in [since, until)


class JwtVerifier:
    """Verifies employee JWTs with the configured key(s); see the module docstring."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = DEFAULT_LEEWAY_S,
        cache_size: int = CACHE_SIZE,
        cache_ttl_s: float = CACHE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret and not public_key:
            raise ConfigError("forward-auth needs SIDECAR_JWT_SECRET or SIDECAR_JWT_PUBLIC_KEY")
        if leeway < 0:
            raise ConfigError("the JWT leeway must not be negative")
        keys: dict[str, Any] = {}
        if secret:
            if secret.lstrip().startswith("-----BEGIN"):
                raise ConfigError("SIDECAR_JWT_SECRET holds a PEM key; put public keys in SIDECAR_JWT_PUBLIC_KEY")
            secret_bytes = secret.encode("utf-8")
            for algorithm, minimum in _HMAC_MIN_BYTES.items():
                # HS256 is always allowed; PyJWT warns when the secret is shorter than 32 bytes.
                if algorithm == "HS256" or len(secret_bytes) >= minimum:
                    keys[algorithm] = secret_bytes
        if public_key:
            key = _load_public_key(public_key)
            for algorithm in _public_key_algorithms(key):
                keys[algorithm] = key
        self._keys = keys
        self.algorithms: frozenset[str] = frozenset(keys)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._jwt = jwt.PyJWT()
        self._cache: dict[bytes, _Verified] = {}  # sha256(token) -> its verified identity, oldest first
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size
        self._cache_ttl_s = cache_ttl_s
        self._clock = clock  # the wall clock (exp is wall time); injectable for tests

    @classmethod
    def from_settings(cls, settings: Settings, *, leeway: float = DEFAULT_LEEWAY_S) -> JwtVerifier:
        return cls(
            secret=settings.jwt_secret,
            public_key=settings.jwt_public_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=leeway,
        )

    def __repr__(self) -> str:
        return f"JwtVerifier(algorithms={sorted(self.algorithms)}, issuer={self.issuer!r}, audience={self.audience!r})"

    def verify_authorization(self, authorization: str | None) -> Identity:
        """Verify the JWT in an ``Authorization`` header value."""
        return self.verify(bearer_token(authorization))

    def verify(self, token: str) -> Identity:
        """Verify ``token`` and return its :class:`Identity`, or raise :class:`InvalidToken`.

        A token that passed a full verification is answered from the cache within its bounds
        (see the module docstring).
        """
        if not token:
            raise InvalidToken("missing_token", "Authorization: Bearer <jwt> is required")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed", "token too long")
        key = _cache_key(token)
        entry = self._cache.get(key)
        if entry is not None and entry.since <= self._clock() < entry.until:
            return entry.identity
        try:
            identity = self._verify(token)
        except InvalidToken:
            if entry is not None:
                with self._cache_lock:
                    self._cache.pop(key, None)
            raise
        self._remember(key, identity)
        return identity

    def cached(self, token: str) -> bool:
        """Whether :meth:`verify` would answer ``token`` from the cache now."""
        entry = self._cache.get(_cache_key(token))
        return entry is not None and entry.since <= self._clock() < entry.until

    def clear_cache(self) -> None:
        """Forget every verified token (each is verified in full again)."""
        with self._cache_lock:
            self._cache.clear()

    def _remember(self, key: bytes, identity: Identity) -> None:
        if self._cache_size <= 0:
            return
        since = self._clock()  # read after the verification: no earlier moment is vouched for
        until = min(float(identity.claims["exp"]), since + self._cache_ttl_s)
        if until <= since:
            return
        with self._cache_lock:
            self._cache.pop(key, None)  # re-inserted at the end: the oldest entry is the first
            while len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = _Verified(identity, since, until)

    def _verify(self, token: str) -> Identity:
        """The full verification: header, algorithm, signature, times, claims."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed", f"not a JWT: {exc}") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._keys:
            raise InvalidToken("bad_algorithm", f"algorithm {algorithm!r} is not accepted")
        try:
            claims = self._jwt.decode(
                token,
                key=self._keys[algorithm],
                algorithms=[algorithm],  # exactly the one bound to this key
                options={
                    "require": ["exp"],
                    "verify_aud": self.audience is not None,
                    "verify_iss": self.issuer is not None,
                },
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
            )
        except jwt.InvalidTokenError as exc:
            raise _translate(exc) from None
        for name in ("exp", "nbf", "iat"):
            _number(claims, name)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not is_valid_id(subject):
            raise InvalidToken("bad_subject", "sub must be an employee id (1-64 of A-Za-z0-9._-)")
        amr = claims.get("amr")
        location = claims.get("loc")
        return Identity(
            employee=subject,
            mfa=isinstance(amr, list) and "mfa" in amr,
            location=location if is_valid_id(location) else None,
            expires_at=int(claims["exp"]),
            claims=MappingProxyType(claims),  # shared by every call the cache answers: read-only
        )


def _cache_key(token: str) -> bytes:
    """The cache key of a token: SHA-256 of its exact text (a WSGI header value is latin-1)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _translate(exc: jwt.InvalidTokenError) -> InvalidToken:
    """Map a PyJWT exception to an InvalidToken with one of REASONS (most specific first)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return InvalidToken("expired", "token expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return InvalidToken("not_yet_valid", str(exc))
    if isinstance(exc, jwt.InvalidSignatureError):
        return InvalidToken("bad_signature", "signature verification failed")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return InvalidToken("bad_algorithm", str(exc))
    if isinstance(exc, jwt.InvalidIssuerError):
        return InvalidToken("bad_issuer", "issuer not accepted")
    if isinstance(exc, jwt.InvalidAudienceError):
        return InvalidToken("bad_audience", "audience not accepted")
    if isinstance(exc, jwt.exceptions.InvalidSubjectError):
        return InvalidToken("bad_subject", str(exc))
    if isinstance(exc, jwt.MissingRequiredClaimError):
        reason = {"exp": "missing_exp", "iss": "bad_issuer", "aud": "bad_audience", "sub": "bad_subject"}
        return InvalidToken(reason.get(exc.claim, "malformed"), f"claim {exc.claim} is required")
    return InvalidToken("malformed", f"malformed token: {exc}")


def load_verifier(settings: Settings, *, leeway: float = DEFAULT_LEEWAY_S) -> JwtVerifier | None:
    """The verifier for ``settings``, or None when no JWT key is configured (forward-auth: 503)."""
    if not settings.jwt_secret and not settings.jwt_public_key:
        return None
    return JwtVerifier.from_settings(settings, leeway=leeway)
