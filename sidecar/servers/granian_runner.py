"""``sidecar serve --server granian`` (the default): granian's Rust HTTP/1.1 server, WSGI workers.

Why granian: its request floor on one core is several times gunicorn's and it keeps connections
alive (README "Benchmarks"). How the sidecar uses it:

* **Workers** are processes; each builds its app after the fork (:class:`WorkerApp`) and stops it
  when it ends. A worker that dies is respawned; SIGHUP respawns them all gracefully (reload).
* **Slow clients cost a connection slot, never the service.** Connections are read by the Rust
  runtime: a client trickling its headers holds no Python thread and is dropped after
  ``HEADER_READ_TIMEOUT_MS``. A client trickling its body holds one blocking thread while the app
  waits for it, without the GIL; each worker has as many blocking threads as it admits
  connections (``max_connections``), so slow clients up to that limit leave threads for everyone
  else. Connections over the limit wait in the kernel's backlog.
* **Graceful shutdown.** SIGTERM stops accepting, lets in-flight requests finish, then each
  worker stops its runtime (shipping the audit journal); a worker still busy after
  ``GRACEFUL_TIMEOUT_S`` is killed.
* **Errors granian itself answers** (a request that is not HTTP/1.1 the parser accepts: a NUL in a
  header, a bad ``Content-Length``, more than 100 headers, a header section over
  ``HEADER_BUFFER_BYTES``) carry the status and no body; everything the parser accepts reaches
  the app, whose edge answers JSON (a header over 8 KiB is a JSON 431 there).
"""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import MPServer

from sidecar.servers.worker import WorkerApp, mark_dead

HEADER_READ_TIMEOUT_MS = 10_000
HEADER_BUFFER_BYTES = 64 * 1024  # room for the app's own 8 KiB header limit to answer in JSON
GRACEFUL_TIMEOUT_S = 10


class _ExpectedThreadCount(logging.Filter):
    """Drop granian's start-up advice against many blocking threads: here they are the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "blocking_threads" not in record.getMessage() and "Python threads" not in record.getMessage()


class _Server(MPServer):
    """granian's process manager, plus: a respawned or reloaded worker's live gauges are dropped."""

    def _respawn_workers(self, workers: list[int], *args: Any, **kwargs: Any) -> None:
        pids = [self.wrks[idx]._id() for idx in workers  # type: ignore[no-untyped-call]  # granian's worker is untyped
                if idx < len(self.wrks)]
        super()._respawn_workers(workers, *args, **kwargs)
        for pid in pids:
            if pid:
                mark_dead(pid)


class _Worker:
    """The spawn target: granian's WSGI worker around the app, then the app's stop."""

    def __init__(self, app: WorkerApp) -> None:
        self.app = app

    def __call__(self, *args: Any) -> None:
        try:
            MPServer._spawn_wsgi_worker(*args)
        finally:
            self.app.stop()
            # A forked multiprocessing child ends with os._exit, skipping atexit handlers; run them
            # here, as a gunicorn worker's normal exit does (they ship what is left to ship).
            atexit._run_exitfuncs()


def run(app: WorkerApp, *, host: str, port: int, uds: Path | None, workers: int, max_connections: int) -> None:
    """Serve until SIGTERM/SIGINT; returns after every worker has stopped."""
    server = _Server(
        "sidecar",  # granian's target name; the app comes from ``app.load`` instead
        address=host,
        port=port,
        uds=uds,
        uds_permissions=0o660 if uds else None,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        workers=workers,
        backpressure=max_connections,
        blocking_threads=max_connections,
        backlog=max(1024, max_connections * workers),
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS, keep_alive=True,
                                     max_buffer_size=HEADER_BUFFER_BYTES),
        log_level=LogLevels.warning,
        log_access=False,  # one structlog line per request instead
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_TIMEOUT_S,
    )
    logging.getLogger("_granian").addFilter(_ExpectedThreadCount())
    server.serve(spawn_target=_Worker(app), target_loader=app.load, wrap_loader=False)
