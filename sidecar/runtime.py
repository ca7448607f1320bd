"""The runtime: what one worker holds between requests, created after gunicorn's fork.

It owns the Redis client, the current policy bundle (reloaded into a copy, then swapped; a
broken reload keeps the last good one), the directory store, this replica's tenant cache and
the token file. Blueprints reach it with ``current_runtime()``.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog
from flask import current_app

from sidecar import metrics
from sidecar.config import Settings
from sidecar.errors import StoreUnavailable
from sidecar.policy.bundle import PolicyBundle, fingerprint, load_bundle
from sidecar.policy.decisions import Decision, decide
from sidecar.policy.files import PolicyFileError
from sidecar.store.connection import connect
from sidecar.store.directory import DirectoryStore
from sidecar.store.health import RedisHealth, RedisWatch, readiness
from sidecar.store.replica import Replica
from sidecar.tokens import TokenFile

log = structlog.get_logger("sidecar.runtime")


@dataclass(frozen=True)
class CheckRecord:
    """What a finished check was about: handed to ``Runtime.after_check`` listeners (audit)."""

    employee: str
    location: str
    decisions: list[tuple[Decision, str]]  # (decision, decision_id)
    context: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    source: str = "check"  # check | batch | forward_auth


@dataclass(frozen=True)
class WriteRecord:
    """A committed directory write: handed to ``Runtime.after_write`` listeners (audit, seats)."""

    kind: str  # employee | chain | location | membership | chain_membership | role
    subject: dict[str, str]
    revision: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    tenants: tuple[str, ...]
    actor: str | None
    request_id: str | None = None


class Runtime:
    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.bundle: PolicyBundle = load_bundle(settings.policy_dir)  # a broken policy fails the start
        self.policy_error: str | None = None
        # One breaker per worker: a hung or lost Redis costs this worker one timeout, then writes
        # fail fast (503) and decisions come from memory until the probe sees Redis again.
        self.redis_health = RedisHealth(on_outage=metrics.REDIS_OUTAGES.inc)
        self.redis: redis.Redis = connect(redis_url, timeout_s=settings.redis_timeout_s, health=self.redis_health)
        self.redis_watch = RedisWatch(self.redis_health, connect(redis_url, timeout_s=settings.redis_timeout_s),
                                      on_recovery=[self.redis])
        self.directory = DirectoryStore(self.redis, lambda: self.bundle, min_replicas=settings.redis_min_replicas,
                                        wait_timeout_s=settings.redis_wait_timeout_s)
        self.replica = Replica(self.directory, lambda: self.bundle, redis_url, max_tenants=settings.max_tenants)
        self.tokens = TokenFile(settings.tokens_path)
        self._policy_checked = time.monotonic()
        self._failed_stamp: str | None = None  # a broken edit is reported once, not at every poll
        self._reload_lock = threading.Lock()
        self._started = False
        # Features (audit, seats) subscribe here in their init_app; the core stays unaware of them.
        self.after_check: list[Callable[[CheckRecord], None]] = []
        self.after_write: list[Callable[[WriteRecord], None]] = []

    def start(self) -> None:
        """Start background work (the change-log follower). Idempotent."""
        if not self._started:
            self._started = True
            self.redis_watch.probe_once()  # know at once whether this worker starts in an outage
            self.redis_watch.start()
            self.replica.start()

    def stop(self) -> None:
        self.replica.stop()
        self.redis_watch.stop()
        self.redis.close()

    # -- policies ---------------------------------------------------------------------------
    def reload_policies(self) -> bool:
        """Load ``policies/`` into a new bundle and swap it in; on error keep the last good one."""
        with self._reload_lock:
            try:
                bundle = load_bundle(self.settings.policy_dir)
            except PolicyFileError as exc:
                self.policy_error = str(exc)
                metrics.POLICY_RELOADS.labels("failed").inc()
                log.error("policy_reload_failed", error=str(exc))
                return False
            self.bundle, self.policy_error = bundle, None
            self.replica.mark_all_stale()
            metrics.POLICY_RELOADS.labels("ok").inc()
            log.info("policy_reloaded", fingerprint=bundle.fingerprint[:12])
            return True

    def maybe_reload_policies(self) -> None:
        """Cheap check, at most every ``policy_poll_s``: did a policy file change on disk?"""
        now = time.monotonic()
        if now - self._policy_checked < self.settings.policy_poll_s:
            return
        self._policy_checked = now
        stamp = fingerprint(self.settings.policy_dir)
        if stamp != self.bundle.fingerprint and (self.policy_error is None or stamp != self._failed_stamp):
            self._failed_stamp = stamp
            self.reload_policies()

    # -- decisions --------------------------------------------------------------------------
    def decide(self, employee: str, location: str, right: str, *, mfa: bool = False,
               explain: bool = False) -> Decision:
        engine = self.replica.engine_for_location(location)
        return decide(engine, employee, location, right, mfa=mfa, explain=explain)

    def checked(self, record: CheckRecord) -> None:
        for listener in self.after_check:
            listener(record)

    def written(self, record: WriteRecord) -> None:
        for listener in self.after_write:
            listener(record)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Can this worker answer checks? ``(ready, body)`` for ``/readyz``.

        Ready while Redis answers; still ready but ``degraded`` while it has been unreachable for
        less than ``stale_max_s`` and this worker holds a directory it loaded before (decisions
        come from memory); not ready after that, or when it never reached Redis (a worker started
        during an outage has nothing to decide from).
        """
        state = readiness(self.redis_health, self.settings.stale_max_s)
        return state.ready, {"status": state.status, "reason": state.reason, "redis": state.redis_up,
                             "redis_unreachable_s": state.unreachable_s, "redis_error": state.cause,
                             "policies": "loaded", "policy_reload_error": self.policy_error,
                             "replica": self.replica.snapshot()}


def settle_heap() -> None:
    """Move what a fresh worker holds (modules, the app, the policy bundle) out of the GC's sight.

    A worker's heap grows to hundreds of thousands of long-lived objects as tenants load; each
    full collection scans them all and pauses a request for tens of milliseconds. Objects
    frozen here are never scanned again (the standard gunicorn-worker remedy, gc.freeze).
    """
    gc.collect()
    gc.freeze()
    # A worker allocates in bursts (a tenant load) and keeps most of it: young collections every
    # 700 allocations mostly find nothing, and each one brings the next full collection closer.
    gc.set_threshold(20_000, 10, 10)


def current_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["sidecar"]
    return runtime


__all__ = ["CheckRecord", "Runtime", "StoreUnavailable", "WriteRecord", "current_runtime"]
