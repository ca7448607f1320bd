"""One worker process's app: built after the fork, stopped when the worker ends.

Nothing holding threads, sockets or connections exists before a worker starts: each worker
builds its own app (no preload), so its Redis client, change-log follower and audit shipper are
its own. When the worker ends (SIGTERM, a reload, a respawn) its runtime is stopped, which
ships what the audit journal still holds, and its live metric files are marked dead.
(``serve`` chose multiprocess metrics before any worker started: ``metrics.use_multiprocess``.)

Imports: the app factory, ``sidecar.api.context``, config (the entry-point layer).
"""

from __future__ import annotations

import gc
import os
from typing import Any

import structlog
from prometheus_client import multiprocess

from sidecar import logs
from sidecar.api.context import runtime_of
from sidecar.app import create_app
from sidecar.config import Settings

log = structlog.get_logger("sidecar.serve")


class WorkerApp:
    """Picklable recipe for the app (granian may spawn rather than fork); ``load`` runs in the worker."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.app: Any = None

    def load(self) -> Any:
        self.app = create_app(self.settings, redis_url=self.redis_url)
        logs.buffer_lines()
        settle_heap()
        return self.app

    def stop(self) -> None:
        """Stop the runtime (in-flight requests have finished); never raises: the worker is ending."""
        if self.app is not None:
            try:
                runtime_of(self.app).stop()
            except Exception as error:  # the process ends anyway; say why its cleanup failed
                log.exception("worker_stop_failed", error_type=type(error).__name__)
            self.app = None
        logs.unbuffer_lines()  # after the runtime's last lines (the audit journal's)
        mark_dead(os.getpid())


def mark_dead(pid: int) -> None:
    """Drop a worker's live gauges from the multiprocess metrics (counters are kept)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # prometheus_client is untyped here


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
    # The middle generation is kept small, because its collection pauses in proportion to
    # threshold0 x threshold1 objects: (20_000, 10) paused a cold first check for 40-52 ms,
    # (10_000, 3) for 9-15 ms, with less GC time in all (bench/engine.py, issue 10).
    gc.set_threshold(10_000, 3, 10)
