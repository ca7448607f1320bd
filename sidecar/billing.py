"""The seat history as a side effect of every seat change: :class:`SeatRecorder` (issue 14).

The runtime subscribes it to ``after_write``. After a committed write it waits until this
replica applied the write's revision, counts the seats of every scope of each tenant the write
touched (from the replica's engines, so cached rights are reused) and hands them to
:class:`~sidecar.store.seat_history.SeatHistory`, which records each change once whatever the
number of replicas doing the same. A failure there never fails the write (it is committed): it
is logged, and the next write or history read of the scope records it. A policy reload and a
start under another billing rule recount every tenant in a background thread.

Imports: policy, store, config, errors, metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from sidecar import metrics
from sidecar.config import Settings
from sidecar.errors import SidecarError
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.engine import TenantEngine
from sidecar.policy.records import WriteRecord
from sidecar.policy.seats import SeatCounter
from sidecar.policy.tenant import NO_TENANT
from sidecar.store.directory import DirectoryStore
from sidecar.store.replica import Replica, parse_revision
from sidecar.store.seat_history import SeatHistory

log = structlog.get_logger("sidecar.billing")


class SeatRecorder:
    """Records seat changes whatever caused them (issue 14).

    * after each write (the ``after_write`` listener): the scopes of the tenants it touched;
    * after a policy reload (:meth:`policy_reloaded`) and when this replica starts with another
      billing rule than the one recorded (:meth:`start`): every tenant, in a background thread
      (one replica does it: ``SeatHistory.claim_sweep``). The Lua script names each cause.
    """

    def __init__(self, replica: Replica, history: SeatHistory, settings: Settings,
                 directory: DirectoryStore, bundle: Callable[[], PolicyBundle]) -> None:
        self.replica = replica
        self.history = history
        self.settings = settings
        self.directory = directory
        self.bundle = bundle
        self.rule = settings.billing_rule
        self._stopping = threading.Event()
        self._sweeps: list[threading.Thread] = []

    def __call__(self, record: WriteRecord) -> None:
        try:
            self.replica.wait_for(record.revision, self.settings.min_revision_wait_s)
            for tenant in record.tenants:
                if tenant == NO_TENANT:  # a write that touched no tenant (an employee with no memberships)
                    continue
                engine = self.replica.engine(tenant)
                if parse_revision(engine.directory.revision) < parse_revision(record.revision):
                    log.warning("seat_history_deferred", revision=record.revision, tenant=tenant,
                                error="the tenant could not be reloaded at this revision")
                    continue
                self.record(engine)
        except SidecarError as exc:  # the store raises StoreUnavailable, never a redis error
            log.warning("seat_history_deferred", revision=record.revision, tenants=list(record.tenants),
                        error=exc.message)

    def record(self, engine: TenantEngine) -> int:
        """Record every scope of one tenant as counted by ``engine`` (its bundle, this replica's rule)."""
        changes = self.history.record(SeatCounter(engine, self.rule).count_all(), engine.bundle.version)
        if changes:
            metrics.SEAT_CHANGES.inc(changes)
        return changes

    # -- changes without a write -----------------------------------------------------------------
    def start(self) -> None:
        """Record under this replica's rule; if it differs from the recorded one, recount every tenant."""
        try:
            previous = self.history.claim_rule(self.rule)
        except SidecarError as exc:
            log.warning("seat_rule_unclaimed", rule=self.rule, error=exc.message)
            return
        if previous is not None and previous != self.rule:
            log.info("seat_rule_changed", before=previous, after=self.rule)
            self.sweep(self.bundle(), f"rule:{previous}:{self.rule}:{time.time_ns()}")

    def policy_reloaded(self, bundle: PolicyBundle) -> None:
        self.sweep(bundle, f"policy:{bundle.version}:{self.rule}")

    def sweep(self, bundle: PolicyBundle, name: str) -> None:
        """Recount every tenant in the background (once across replicas for ``name``)."""
        try:
            if not self.history.claim_sweep(name):
                return
        except SidecarError as exc:  # the next write or history read of each scope records it
            log.warning("seat_sweep_deferred", sweep=name, error=exc.message)
            return
        thread = threading.Thread(target=self._sweep, args=(bundle, name), name="seat-sweep", daemon=True)
        self._sweeps = [t for t in self._sweeps if t.is_alive()] + [thread]
        thread.start()

    def _sweep(self, bundle: PolicyBundle, name: str) -> None:
        changes = tenants = 0
        try:
            for tenant in self.directory.tenants():
                if self._stopping.is_set():
                    return
                changes += self.record(TenantEngine(bundle, self.directory.load_tenant(tenant)))
                tenants += 1
        except SidecarError as exc:
            log.warning("seat_sweep_deferred", sweep=name, error=exc.message)
            return
        log.info("seat_sweep_done", sweep=name, tenants=tenants, changes=changes)

    def wait(self, timeout_s: float = 30.0) -> None:
        """Until the background recounts in flight are done (tests, shutdown)."""
        for thread in list(self._sweeps):
            thread.join(timeout_s)

    def stop(self) -> None:
        self._stopping.set()
        self.wait(5.0)
