"""The seat history as a side effect of directory writes: :class:`SeatRecorder`.

The runtime subscribes it to ``after_write``. After a committed write it waits until this
replica applied the write's revision, counts the seats of every scope of each tenant the write
touched (from the replica's engines, so cached rights are reused) and hands them to
:class:`~sidecar.store.seat_history.SeatHistory`, which records each change once whatever the
number of replicas doing the same. A failure there never fails the write (it is committed): it
is logged, and the next write or history read of the scope records it.

Imports: policy, store, config, errors, metrics.
"""

from __future__ import annotations

import structlog

from sidecar import metrics
from sidecar.config import Settings
from sidecar.errors import SidecarError
from sidecar.policy.records import WriteRecord
from sidecar.policy.seats import SeatCounter
from sidecar.policy.tenant import NO_TENANT
from sidecar.store.replica import Replica, parse_revision
from sidecar.store.seat_history import SeatHistory

log = structlog.get_logger("sidecar.billing")


class SeatRecorder:
    """The after_write listener: record the seat changes a write caused, in every scope it touched."""

    def __init__(self, replica: Replica, history: SeatHistory, settings: Settings) -> None:
        self.replica = replica
        self.history = history
        self.settings = settings

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
                changes = self.history.record(SeatCounter(engine, self.settings.billing_rule).count_all())
                if changes:
                    metrics.SEAT_CHANGES.inc(changes)
        except SidecarError as exc:  # the store raises StoreUnavailable, never a redis error
            log.warning("seat_history_deferred", revision=record.revision, tenants=list(record.tenants),
                        error=exc.message)
