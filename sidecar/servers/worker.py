"""One worker process's app: built after the fork, stopped when the worker ends.

Nothing holding threads, sockets or connections exists before a worker starts: each worker
builds its own app (no preload), so its Redis client, change-log follower and audit shipper are
its own. The app, the runtime and prometheus_client are imported inside the worker functions:
prometheus_client picks its multiprocess value class when first imported, which must happen
after ``serve`` has set ``PROMETHEUS_MULTIPROC_DIR``. When the worker ends (SIGTERM, a reload,
a respawn) its runtime is stopped, which ships what the audit journal still holds, and its live
metric files are marked dead.
"""

from __future__ import annotations

import os
from typing import Any

import structlog

from sidecar.config import Settings

log = structlog.get_logger("sidecar.serve")


class WorkerApp:
    """Picklable recipe for the app (granian may spawn rather than fork); ``load`` runs in the worker."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.app: Any = None

    def load(self) -> Any:
        from sidecar.app import create_app  # after PROMETHEUS_MULTIPROC_DIR is set (module docstring)
        from sidecar.runtime import settle_heap

        self.app = create_app(self.settings, redis_url=self.redis_url)
        settle_heap()
        return self.app

    def stop(self) -> None:
        """Stop the runtime (in-flight requests have finished); never raises: the worker is ending."""
        if self.app is not None:
            try:
                self.app.extensions["sidecar"].stop()
            except Exception as error:  # the process ends anyway; say why its cleanup failed
                log.exception("worker_stop_failed", error_type=type(error).__name__)
            self.app = None
        mark_dead(os.getpid())


def mark_dead(pid: int) -> None:
    """Drop a worker's live gauges from the multiprocess metrics (counters are kept)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # after the variable is set (module docstring)

        multiprocess.mark_process_dead(pid)
