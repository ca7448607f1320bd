"""The runtime: the composition root. What one worker (or one CLI command) holds, built after the fork.

It builds and owns every service: the Redis client, the current policy bundle (reloaded into a
copy, then swapped; a broken reload keeps the last good one), the directory store, this
replica's tenant cache, the token file, the audit trail (the Auditor and its listeners, new
devices), the seat history and its recorder, the two-step service and the forward-auth JWT
verifier, the webhook worker. It
subscribes the audit and billing listeners to checks and writes itself. ``start()`` starts every
thread (the change-log follower, the audit shipper); ``stop()`` stops them and closes Redis.

No Flask here: the web layer reaches the runtime through ``sidecar.api.context``.

Imports: policy, store, audit, mfa, billing, forward_auth, tokens, config, errors, metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from sidecar import metrics
from sidecar.audit import Auditor
from sidecar.audit.archiver import Archiver
from sidecar.audit.listeners import CheckEvents, WriteEvents
from sidecar.audit.logins import NewDevices
from sidecar.billing import SeatRecorder
from sidecar.config import Settings
from sidecar.forward_auth.jwt_auth import JwtVerifier, load_verifier
from sidecar.mfa.service import TwoStep
from sidecar.mfa.trail import Trail
from sidecar.policy.bundle import PolicyBundle, fingerprint, load_bundle
from sidecar.policy.decisions import Decision, decide
from sidecar.policy.engine import TenantEngine
from sidecar.policy.files import PolicyFileError
from sidecar.policy.records import CheckRecord, WriteRecord
from sidecar.store.audit_archive import ArchiveStore
from sidecar.store.audit_log import AuditLog
from sidecar.store.connection import Client, connect
from sidecar.store.directory import DirectoryStore
from sidecar.store.health import RedisHealth, RedisWatch, readiness
from sidecar.store.replica import Replica
from sidecar.store.seat_history import SeatHistory
from sidecar.store.seen_devices import SeenDevices
from sidecar.store.spool import Spool
from sidecar.store.webhooks import WebhookStore
from sidecar.tokens import TokenFile
from sidecar.webhooks.service import Policy as WebhookPolicy
from sidecar.webhooks.service import WebhookService

log = structlog.get_logger("sidecar.runtime")


class Runtime:
    """Every service of one process, built in dependency order; nothing runs until ``start()``.

    A bad setting (an unusable JWT key) or a broken policy file fails the construction.
    ``redis_timeout_s`` is how long a Redis command may take (default ``SIDECAR_REDIS_TIMEOUT_S``;
    longer for a bulk CLI command).
    """

    def __init__(self, settings: Settings, redis_url: str, *, redis_timeout_s: float | None = None) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.bundle: PolicyBundle = load_bundle(settings.policy_dir)  # a broken policy fails the start
        self.policy_error: str | None = None
        # One breaker per worker: a hung or lost Redis costs this worker one timeout, then writes
        # fail fast (503) and decisions come from memory until the probe sees Redis again.
        timeout_s = redis_timeout_s if redis_timeout_s is not None else settings.redis_timeout_s
        self.redis_health = RedisHealth(on_outage=metrics.REDIS_OUTAGES.inc)
        self.redis: Client = connect(redis_url, timeout_s=timeout_s, health=self.redis_health)
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
        self.audit_log = AuditLog(self.redis, settings.audit_retention_days, min_replicas=settings.redis_min_replicas,
                                  wait_timeout_s=settings.redis_wait_timeout_s,
                                  archived=settings.audit_database_url is not None, hot_s=settings.audit_hot_s)
        # The PostgreSQL archive, when configured: the Security section reads it, the archiver fills it.
        self.audit_archive = ArchiveStore(settings.audit_database_url) if settings.audit_database_url else None
        self.archiver = (Archiver(self.audit_log, self.audit_archive, hot_s=settings.audit_hot_s,
                                  retention_days=settings.audit_retention_days)
                         if self.audit_archive is not None else None)
        self.auditor = Auditor(self.audit_log, Spool(settings.data_dir / "audit-spool"), self.directory,
                               ship_every_s=settings.audit_ship_interval_s)
        self.seat_history = SeatHistory(self.redis)
        self.two_step = TwoStep(settings, self.redis, self.directory, Trail(self.auditor, self.directory))
        self.jwt_verifier: JwtVerifier | None = load_verifier(settings)  # None: forward-auth answers 503
        self.webhooks = WebhookService(WebhookStore(self.redis), WebhookPolicy.from_settings(settings))
        # login.new_device: allowed login checks (a listener) and reported logins (api/audit_events)
        self.new_devices = NewDevices(self.auditor, SeenDevices(self.redis), self.directory)
        # Listeners of checks and writes: the core publishes records, unaware of audit and seats.
        self.after_check: list[Callable[[CheckRecord], None]] = [
            CheckEvents(self.auditor, lambda: self.bundle, self.replica), self.new_devices]
        self.seat_recorder = SeatRecorder(self.replica, self.seat_history, settings, self.directory,
                                          lambda: self.bundle)
        self.after_write: list[Callable[[WriteRecord], None]] = [WriteEvents(self.auditor), self.seat_recorder]

    def start(self) -> None:
        """Start background work (the change-log follower, the audit shipper). Idempotent."""
        if not self._started:
            self._started = True
            self.redis_watch.probe_once()  # know at once whether this worker starts in an outage
            self.redis_watch.start()
            self.replica.start()
            self.auditor.start()
            if self.archiver is not None:
                self.archiver.start()
            self.webhooks.start()
            self.seat_recorder.start()

    def stop(self) -> None:
        """Stop every thread this runtime started (shipping pending audit records first), close Redis.

        Idempotent; also right for a runtime that was never started.
        """
        self.seat_recorder.stop()
        if self.archiver is not None:
            self.archiver.stop()
        self.webhooks.stop()
        self.auditor.stop()
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
        self.seat_recorder.policy_reloaded(bundle)  # template changes move seats: recorded as policy_reload
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

    def decide_many(self, asks: Sequence[tuple[str, str, str]], *, mfa: bool = False) -> list[Decision]:
        """Decide ``(employee, location, right)`` asks in order, looking each location's engine
        up once (a batch usually names one location)."""
        engines: dict[str, TenantEngine | None] = {}
        decisions = []
        for employee, location, right in asks:
            if location in engines:
                engine = engines[location]
            else:
                engine = engines[location] = self.replica.engine_for_location(location)
            decisions.append(decide(engine, employee, location, right, mfa=mfa))
        return decisions

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
        during an outage has nothing to decide from). Not ready either while the tokens file is
        corrupt (the last good tokens still work, but no new one does): ``tokens_error``.
        """
        state = readiness(self.redis_health, self.settings.stale_max_s)
        tokens_error = self.tokens.check()
        body: dict[str, Any] = {
            "status": state.status, "reason": state.reason, "redis": state.redis_up,
            "redis_unreachable_s": state.unreachable_s, "redis_error": state.cause,
            "tokens_error": tokens_error, "policies": "loaded", "policy_reload_error": self.policy_error,
            "replica": self.replica.snapshot(),
            # Informational: decisions never wait for the archive; it does not make us unready.
            "audit_archive": self.archiver.status() if self.archiver is not None else {"state": "off"}}
        if tokens_error is not None and state.ready:
            body.update(status="unavailable", reason="tokens_file_invalid")
        return state.ready and tokens_error is None, body

