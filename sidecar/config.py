"""Settings: one frozen value read once from the ``SIDECAR_*`` environment variables.

A bad value raises :class:`ConfigError` naming the variable, so a start fails with a clear
message instead of a traceback deep inside a request. Imports nothing from the sidecar.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

DEFAULT_FORWARD_AUTH_PREFIX = "/v1/forward-auth"  # always served; SIDECAR_FORWARD_AUTH_PREFIX adds another


class ConfigError(ValueError):
    """A configuration variable holds a value the sidecar cannot use."""


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    data_dir: Path = Path("./var")
    policy_dir: Path = Path("./policies")
    tokens_file: Path | None = None
    smtp_url: str | None = field(default=None, repr=False)  # may carry SMTP credentials
    mfa_secret: str | None = field(default=None, repr=False)  # keys the two-step code hashes
    product_name: str = "Sidecar"  # named in two-step emails
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = field(default=None, repr=False)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    forward_auth_prefix: str = DEFAULT_FORWARD_AUTH_PREFIX
    log_format: str = "auto"  # auto | json | console
    min_revision_wait_s: float = 2.0
    max_tenants: int = 20_000
    billing_rule: str = "announced"  # announced | writes
    audit_retention_days: int = 400
    audit_database_url: str | None = field(default=None, repr=False)  # the PostgreSQL archive; may carry a password
    audit_hot_s: int = 7 * 86400  # events older than this move to the archive
    # Under load the audit shipper sends at most one batch per this long (docs/audit.md): longer
    # means bigger batches and less CPU per event, and a longer window in which a host crash can
    # lose check events that are only in the page cache.
    audit_ship_interval_s: float = 0.2
    policy_poll_s: float = 2.0
    redis_timeout_s: float = 0.5  # connect and read timeout of request-path Redis commands
    redis_min_replicas: int = 0  # WAIT for this many replicas before a write is acknowledged
    redis_wait_timeout_s: float = 1.0  # how long a write waits for them before answering 503
    stale_max_s: float = 30.0  # /readyz stays 200 (degraded) this long into a Redis outage
    bootstrap_token_file: Path | None = None  # the first token goes here (0600), never to a log
    webhook_allow_http: tuple[str, ...] = ()  # hosts a webhook may reach over plain http:// (any address)
    webhook_allow_private: tuple[str, ...] = ()  # https:// hosts allowed to resolve to non-public addresses
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 12
    webhook_backoff_s: float = 1.0
    webhook_max_backoff_s: float = 60.0

    @property
    def tokens_path(self) -> Path:
        return self.tokens_file or self.data_dir / "tokens.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: float, *, minimum: float, maximum: float | None = None,
                   integer: bool = False) -> float:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = int(raw) if integer else float(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number") from None
            if value < minimum:
                raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
            if maximum is not None and value > maximum:
                raise ConfigError(f"{name}={raw!r} must be at most {maximum}")
            return value

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            raw = text(name) or default
            if raw not in allowed:
                raise ConfigError(f"{name}={raw!r} must be one of {', '.join(allowed)}")
            return raw

        redis_url = text("SIDECAR_REDIS_URL")
        if redis_url:
            parse_redis_url(redis_url)

        smtp_url = text("SIDECAR_SMTP_URL")
        if smtp_url and not smtp_url.startswith(("smtp://", "smtps://")):
            raise ConfigError(f"SIDECAR_SMTP_URL={smtp_url!r} must start with smtp:// or smtps://")
        public_key = text("SIDECAR_JWT_PUBLIC_KEY")
        if public_key and not public_key.startswith("-----BEGIN"):
            key_path = Path(public_key)
            if not key_path.is_file():
                raise ConfigError("SIDECAR_JWT_PUBLIC_KEY is neither a PEM key nor a readable file")
            public_key = key_path.read_text()
        prefix = text("SIDECAR_FORWARD_AUTH_PREFIX") or DEFAULT_FORWARD_AUTH_PREFIX
        if not prefix.startswith("/"):
            raise ConfigError(f"SIDECAR_FORWARD_AUTH_PREFIX={prefix!r} must start with /")
        tokens = text("SIDECAR_TOKENS_FILE")
        audit_database_url = text("SIDECAR_AUDIT_DATABASE_URL")
        if audit_database_url and not audit_database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("SIDECAR_AUDIT_DATABASE_URL must start with postgresql:// or postgres://")
        if not redis_url and text("SIDECAR_REDIS_MIN_REPLICAS") not in (None, "0"):
            raise ConfigError("SIDECAR_REDIS_MIN_REPLICAS needs SIDECAR_REDIS_URL: the embedded Redis has no replicas, "
                              "so no write could ever be acknowledged")
        return cls(
            redis_url=redis_url,
            data_dir=Path(text("SIDECAR_DATA_DIR") or "./var"),
            policy_dir=Path(text("SIDECAR_POLICY_DIR") or "./policies"),
            tokens_file=Path(tokens) if tokens else None,
            smtp_url=smtp_url,
            mfa_secret=text("SIDECAR_MFA_SECRET"),
            product_name=text("SIDECAR_PRODUCT_NAME") or "Sidecar",
            jwt_secret=text("SIDECAR_JWT_SECRET"),
            jwt_public_key=public_key,
            jwt_issuer=text("SIDECAR_JWT_ISSUER"),
            jwt_audience=text("SIDECAR_JWT_AUDIENCE"),
            forward_auth_prefix=prefix.rstrip("/"),
            log_format=choice("SIDECAR_LOG_FORMAT", "auto", ("auto", "json", "console")),
            min_revision_wait_s=number("SIDECAR_MIN_REVISION_WAIT_S", 2.0, minimum=0),
            max_tenants=int(number("SIDECAR_MAX_TENANTS", 20_000, minimum=1, integer=True)),
            billing_rule=choice("SIDECAR_BILLING_RULE", "announced", ("announced", "writes")),
            audit_retention_days=int(number("SIDECAR_AUDIT_RETENTION_DAYS", 400, minimum=1, integer=True)),
            audit_database_url=audit_database_url,
            audit_hot_s=int(number("SIDECAR_AUDIT_HOT_S", 7 * 86400, minimum=0, integer=True)),
            audit_ship_interval_s=number("SIDECAR_AUDIT_SHIP_INTERVAL_S", 0.2, minimum=0, maximum=5.0),
            policy_poll_s=number("SIDECAR_POLICY_POLL_S", 2.0, minimum=0.1),
            redis_timeout_s=number("SIDECAR_REDIS_TIMEOUT_S", 0.5, minimum=0.01),
            redis_min_replicas=int(number("SIDECAR_REDIS_MIN_REPLICAS", 0, minimum=0, integer=True)),
            redis_wait_timeout_s=number("SIDECAR_REDIS_WAIT_TIMEOUT_S", 1.0, minimum=0.01),
            stale_max_s=number("SIDECAR_STALE_MAX_S", 30.0, minimum=0),
            bootstrap_token_file=Path(bootstrap) if (bootstrap := text("SIDECAR_BOOTSTRAP_TOKEN_FILE")) else None,
            webhook_allow_http=tuple(h.strip() for h in (text("SIDECAR_WEBHOOK_ALLOW_HTTP") or "").split(",")
                                     if h.strip()),
            webhook_allow_private=tuple(h.strip() for h in (text("SIDECAR_WEBHOOK_ALLOW_PRIVATE") or "").split(",")
                                        if h.strip()),
            webhook_timeout_s=number("SIDECAR_WEBHOOK_TIMEOUT_S", 5.0, minimum=0.1),
            webhook_max_attempts=int(number("SIDECAR_WEBHOOK_MAX_ATTEMPTS", 12, minimum=1, integer=True)),
            webhook_backoff_s=number("SIDECAR_WEBHOOK_BACKOFF_S", 1.0, minimum=0.01),
            webhook_max_backoff_s=number("SIDECAR_WEBHOOK_MAX_BACKOFF_S", 60.0, minimum=0.01),
        )


REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://")
CLUSTER_REFUSED = ("Redis Cluster is not supported: the directory is small and one write changes several keys "
                   "in one script, which a cluster would split across slots; use Redis Sentinel for high "
                   "availability (redis+sentinel://host:port,host:port/service)")
# Query parameters a SIDECAR_REDIS_URL may carry: the database and the TLS files (rediss).
URL_PARAMETERS = ("db", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
_FILE_PARAMETERS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


@dataclass(frozen=True)
class RedisTarget:
    """A parsed SIDECAR_REDIS_URL. ``sentinels`` is set for redis+sentinel:// URLs."""

    url: str = field(repr=False)  # may carry a password
    tls: bool
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, str] = field(default_factory=dict)  # the query parameters (TLS files)


def parse_redis_url(url: str) -> RedisTarget:
    """Read a SIDECAR_REDIS_URL; a URL the sidecar cannot use raises ConfigError in one line."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if "cluster" in scheme:
        raise ConfigError(f"SIDECAR_REDIS_URL: {CLUSTER_REFUSED}")
    if not url.startswith(REDIS_SCHEMES):
        raise ConfigError("SIDECAR_REDIS_URL must start with " + ", ".join(REDIS_SCHEMES))
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        if name not in URL_PARAMETERS:
            raise ConfigError(f"SIDECAR_REDIS_URL: unknown parameter {name!r} (known: {', '.join(URL_PARAMETERS)})")
        options[name] = unquote(value)
        if name in _FILE_PARAMETERS and not Path(options[name]).is_file():
            raise ConfigError(f"SIDECAR_REDIS_URL: {name}={options[name]!r} is not a readable file")
    if "db" in options and not options["db"].isdigit():
        raise ConfigError("SIDECAR_REDIS_URL: db must be a number")
    tls = scheme in ("rediss", "rediss+sentinel")
    if not scheme.endswith("+sentinel"):
        return RedisTarget(url=url, tls=tls, options=options)
    userinfo, _, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    service = path.strip("/")
    if not service or "/" in service:
        raise ConfigError("SIDECAR_REDIS_URL: a sentinel URL names its service: redis+sentinel://host:port,.../service")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        if not name or not port.isdigit():
            raise ConfigError(f"SIDECAR_REDIS_URL: sentinel address {host!r} is not host:port")
        sentinels.append((name.strip("[]"), int(port)))
    username, _, password = userinfo.partition(":")
    return RedisTarget(url=url, tls=tls, sentinels=tuple(sentinels), service=unquote(service),
                       db=int(options.pop("db", "0")), username=unquote(username) or None,
                       password=unquote(password) or None, options=options)
