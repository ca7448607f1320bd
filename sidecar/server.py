"""``sidecar serve``: the embedded Redis (when no URL is set) and gunicorn serving the app.

Nothing holding threads, sockets or connections is created before gunicorn forks: each worker
builds its own app (no preload), so its Redis client and change-log follower are its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import structlog
from gunicorn.app.base import BaseApplication

from sidecar.config import Settings
from sidecar.store.connection import resolve_redis

log = structlog.get_logger("sidecar.serve")


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any], settings: Settings, redis_url: str) -> None:
        self.options = options
        self.settings = settings
        self.redis_url = redis_url
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from sidecar.app import create_app  # imported in the worker, after the fork

        return create_app(self.settings, redis_url=self.redis_url)


def _post_worker_init(worker: Any) -> None:
    from sidecar.runtime import settle_heap

    settle_heap()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    redis_url, private = resolve_redis(settings)
    metrics_dir = Path(settings.data_dir) / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "keepalive": 5,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,  # one structlog line per request instead
        "errorlog": "-",
        "loglevel": "warning",
        "child_exit": _child_exit,
        "post_worker_init": _post_worker_init,
        "proc_name": "sidecar",
        "limit_request_line": 8190,
    }
    log.info("serving", bind=options["bind"], workers=workers, threads=threads,
             redis="embedded" if private else "external", policies=str(settings.policy_dir))
    try:
        _Gunicorn(options, settings, redis_url).run()
    finally:
        if private is not None:
            private.stop()
