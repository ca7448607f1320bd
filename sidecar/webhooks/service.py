"""The webhook worker of one process: fan audit events out to subscriptions, then deliver them.

Every ``POLL_S`` the thread (1) fans out: new entries of each subscribed audit log become
deliveries in the durable Redis queue (:mod:`sidecar.store.webhooks`; exactly once, whatever
the number of workers and replicas); (2) claims the deliveries that are due, each with a lease,
and POSTs them from a small pool of threads. Each delivery is the event's JSON exactly as the
log holds it, with ``Content-Type: application/json``, ``X-Sidecar-Signature``,
``X-Sidecar-Event-Id`` and ``X-Sidecar-Delivery`` (dedupe on either: delivery is at least once).

A 2xx answer delivers. Anything else (a refused connection, a timeout, a 3xx: redirects are
never followed, a 4xx or 5xx) is retried after ``backoff_s * 2**attempt`` seconds, at most
``max_backoff_s``, until ``max_attempts`` attempts; then the delivery is a dead letter with its
last error. With the defaults (1 s doubling to 60 s, 12 attempts) a receiver may be away for
about six minutes and miss nothing. A worker that dies mid-attempt leaves its claimed
deliveries to come due again when their lease ends. A URL that no longer passes the SSRF rule
(the allow-list changed, or its host now resolves to a private, loopback or link-local
address) is a dead letter at once; a host that does not resolve is a failed attempt (retried).
Each attempt resolves the host itself and connects to the address it checked
(:class:`PinnedHTTPConnection`, :class:`PinnedHTTPSConnection`: TLS still verifies the
certificate against the host name), so DNS rebinding cannot steer a delivery inside. A deleted
subscription's deliveries are cancelled.

Imports: the webhook store, rules and signing, config, errors.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog

from sidecar.config import Settings
from sidecar.errors import BadRequest, StoreUnavailable
from sidecar.store.webhooks import Delivery, Subscription, WebhookStore, now_ms
from sidecar.webhooks import rules, signing

POLL_S = 0.25
CLAIM_LIMIT = 16
SENDERS = 4
_RESPONSE_READ_LIMIT = 64 * 1024

log = structlog.get_logger("sidecar.webhooks")
_running: weakref.WeakSet[WebhookService] = weakref.WeakSet()  # for stop_all (tests; a process's exit)


@dataclass(frozen=True)
class Policy:
    allow_http: frozenset[str]
    timeout_s: float
    max_attempts: int
    backoff_s: float
    max_backoff_s: float
    allow_private: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(frozenset(settings.webhook_allow_http), settings.webhook_timeout_s, settings.webhook_max_attempts,
                   settings.webhook_backoff_s, settings.webhook_max_backoff_s,
                   frozenset(settings.webhook_allow_private))

    def delay_s(self, attempts: int) -> float:
        """How long after a failed attempt (``attempts`` made so far, >= 1) the next one comes."""
        return float(min(self.backoff_s * 2 ** (attempts - 1), self.max_backoff_s))


class WebhookService:
    def __init__(self, store: WebhookStore, policy: Policy) -> None:
        self.store = store
        self.policy = policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stop.clear()
                self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="sidecar-webhook-send")
                self._thread = threading.Thread(target=self._loop, name="sidecar-webhooks", daemon=True)
                self._thread.start()
                _running.add(self)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread, pool = self._thread, self._pool
            self._thread = self._pool = None
        if thread is not None:
            thread.join(timeout=self.policy.timeout_s + 5)
        if pool is not None:
            pool.shutdown(wait=True)
        _running.discard(self)


    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except StoreUnavailable:
                pass  # Redis is away: the queue waits in Redis, nothing is lost
            except Exception as exc:  # the worker must outlive any one failure
                log.error("webhook_loop_failed", error=str(exc), error_type=type(exc).__name__)
            self._stop.wait(POLL_S)

    def run_once(self) -> int:
        """One round: fan out, then deliver what is due. The number of deliveries attempted."""
        self.store.fan_out(now_ms())
        lease_ms = int((self.policy.timeout_s + 10) * 1000)
        claimed = self.store.claim(now_ms(), CLAIM_LIMIT, lease_ms)
        if not claimed:
            return 0
        subscriptions: dict[tuple[str, str], Subscription | None] = {}
        for delivery in claimed:
            key = (delivery.tenant, delivery.name)
            if key not in subscriptions:
                subscriptions[key] = self.store.get(*key)
        pool = self._pool
        if pool is None:
            for delivery in claimed:
                self.attempt(delivery, subscriptions[(delivery.tenant, delivery.name)])
        else:
            list(pool.map(lambda d: self.attempt(d, subscriptions[(d.tenant, d.name)]), claimed))
        return len(claimed)

    def attempt(self, delivery: Delivery, subscription: Subscription | None) -> None:
        if subscription is None:
            self.store.finish(delivery, "cancelled", status=None, error="the subscription was deleted", now_ms=now_ms())
            return
        address: str | None = None
        status: int | None = None
        error: str | None
        try:
            rules.check_url(subscription.url, self.policy.allow_http)
            parts = urlsplit(subscription.url)
            host = parts.hostname or ""
            if not rules.trusted(host, self.policy.allow_http, self.policy.allow_private):
                address = rules.resolve_public(host, parts.port or (443 if parts.scheme == "https" else 80))
        except BadRequest as exc:
            self.store.finish(delivery, "dead", status=None, error=exc.message, now_ms=now_ms())
            log.warning("webhook_refused", delivery=delivery.id, error=exc.message)
            return
        except rules.Unresolvable as exc:
            error = str(exc)[:500]
        else:
            status, error = self._post(subscription, delivery, address)
        finished = now_ms()
        if error is None:
            self.store.finish(delivery, "delivered", status=status, error=None, now_ms=finished)
            return
        made = delivery.attempts + 1
        log.info("webhook_attempt_failed", delivery=delivery.id, attempt=made, status=status, error=error)
        if made >= self.policy.max_attempts:
            self.store.finish(delivery, "dead", status=status, error=error, now_ms=finished)
            log.warning("webhook_dead_letter", delivery=delivery.id, attempts=made, error=error)
            return
        self.store.retry_later(delivery, at_ms=finished + int(self.policy.delay_s(made) * 1000), status=status,
                               error=error, now_ms=finished)

    def _post(self, subscription: Subscription, delivery: Delivery,
              address: str | None) -> tuple[int | None, str | None]:
        """(status, error): error is None for a 2xx answer. ``address``: connect there (checked), not
        to whatever the host name resolves to by then; None for a host the operator named."""
        parts = urlsplit(subscription.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Content-Type": "application/json", "User-Agent": "sidecar-webhooks/1",
                   signing.HEADER: signing.sign(subscription.secret, delivery.body, int(time.time())),
                   "X-Sidecar-Event-Id": delivery.id.rsplit("/", 1)[-1], "X-Sidecar-Delivery": delivery.id}
        connection = connect_to(parts.scheme, parts.hostname or "", parts.port, address, self.policy.timeout_s)
        try:
            connection.request("POST", path, body=delivery.body, headers=headers)
            response = connection.getresponse()
            response.read(_RESPONSE_READ_LIMIT)
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        finally:
            connection.close()
        if 200 <= status < 300:
            return status, None
        if 300 <= status < 400:
            return status, f"HTTP {status}: redirects are not followed"
        return status, f"HTTP {status}"


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``host`` (its ``Host`` header) over a connection to ``address``, a checked address."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``host`` over a connection to ``address``: SNI and certificate checks use ``host``."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float,
                 context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.tls = context or ssl.create_default_context()

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def connect_to(scheme: str, host: str, port: int | None, address: str | None,
               timeout_s: float) -> http.client.HTTPConnection:
    """A connection for one delivery: pinned to ``address`` when given."""
    if address is None:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout_s)
        return http.client.HTTPConnection(host, port, timeout=timeout_s)
    if scheme == "https":
        return PinnedHTTPSConnection(host, port, address, timeout_s)
    return PinnedHTTPConnection(host, port, address, timeout_s)


def stop_all() -> None:
    """Stop every running webhook worker of this process (a test's apps must not outlive it)."""
    for service in list(_running):
        service.stop()
