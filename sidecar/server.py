"""``sidecar serve``: the embedded Redis (when no URL is set), the metrics directory, the HTTP server.

The HTTP server is granian by default (``sidecar/servers/granian_runner.py``) or gunicorn
(``--server gunicorn``); both run the same app, built in each worker after the fork
(``sidecar/servers/worker.py``). Nothing holding threads, sockets or connections is created here
before the workers start.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog

from sidecar import metrics
from sidecar.config import Settings
from sidecar.servers import granian_runner, gunicorn_runner
from sidecar.servers.worker import WorkerApp
from sidecar.store.redis_server import EmbeddedRedis

log = structlog.get_logger("sidecar.serve")


@dataclass(frozen=True)
class ServeOptions:
    server: str = "granian"
    host: str = "127.0.0.1"
    port: int = 8181
    uds: Path | None = None  # listen on this Unix socket instead of host:port
    workers: int = 2
    threads: int = 1  # gunicorn only: gthread when > 1
    max_connections: int = 256  # granian only: connections (and Python threads) per worker


def _count_redis_restart() -> None:
    metrics.EMBEDDED_REDIS_RESTARTS.inc()  # looked up now: use_multiprocess makes it again


def serve(settings: Settings, options: ServeOptions) -> None:
    # The only place a redis-server is started: this process owns it (a lock file) and restarts it.
    # Taken first, so a second serve on the same data dir stops here, before touching its metrics.
    private = None if settings.redis_url else EmbeddedRedis(settings.data_dir / "redis", _count_redis_restart).start()
    redis_url = private.url if private is not None else str(settings.redis_url)
    try:
        metrics_dir = Path(settings.data_dir) / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        metrics.use_multiprocess(metrics_dir)  # whatever imported prometheus_client first (the CLI did)
        if options.uds is not None and options.uds.is_socket():
            options.uds.unlink()  # left by a server that was killed; never a regular file
        bind = f"unix:{options.uds}" if options.uds else f"{options.host}:{options.port}"
        log.info("serving", server=options.server, bind=bind, workers=options.workers,
                 redis="embedded" if private else "external", policies=str(settings.policy_dir))
        if settings.audit_database_url is None:
            log.info("audit_retention_bounded_by_redis_memory", retention_days=settings.audit_retention_days,
                     hint="every audit event stays in Redis (about 850 bytes each); set SIDECAR_AUDIT_DATABASE_URL "
                          "to move events older than SIDECAR_AUDIT_HOT_S to PostgreSQL (docs/audit.md)")
        app = WorkerApp(settings, redis_url)
        if options.server == "gunicorn":
            gunicorn_runner.run(app, host=options.host, port=options.port, uds=options.uds,
                                workers=options.workers, threads=options.threads)
        else:
            granian_runner.run(app, host=options.host, port=options.port, uds=options.uds,
                               workers=options.workers, max_connections=options.max_connections)
    finally:
        if private is not None:
            private.stop()
