"""``sidecar serve --server gunicorn``: the design brief's server, kept selectable.

Sync workers (or gthread with ``--threads`` > 1), each building its app after the fork
(:class:`WorkerApp`); ``worker_exit`` stops it (shipping the audit journal), ``child_exit`` drops
a dead worker's live gauges. SIGHUP reloads the workers, SIGTERM lets in-flight requests finish
within ``graceful_timeout``.

Errors gunicorn writes itself (a bad request line, a header over 8 KiB, a NUL in a header, ...)
are the API's JSON error body, not gunicorn's HTML page: :func:`write_json_error` replaces
``gunicorn.util.write_error``, which gunicorn's workers call for every such answer.

Limits of this server, by design of sync workers: a client trickling its request holds a whole
worker until ``timeout`` (30 s), so a few slow clients stop decisions (README "Slow clients");
granian, the default, does not have this limit.
"""

from __future__ import annotations

import socket
from http import HTTPStatus
from pathlib import Path
from typing import Any

import gunicorn.util
import orjson
from gunicorn.app.base import BaseApplication

from sidecar.errors import BadRequest, BodyTooLarge, HeaderTooLarge, UriTooLong
from sidecar.servers.worker import WorkerApp, mark_dead

_CODES = {  # the codes the sidecar's own edge gives for the same refusals (sidecar/api/limits.py)
    400: BadRequest.code, 413: BodyTooLarge.code, 414: UriTooLong.code, 431: HeaderTooLarge.code}


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answers as ``{"error": {"code", "message"}}`` (same signature as its HTML one)."""
    code = _CODES.get(status_int)
    if code is None:
        try:
            code = HTTPStatus(status_int).phrase.lower().replace(" ", "_")
        except ValueError:
            code = "error"
    body = orjson.dumps({"error": {"code": code, "message": mesg or reason}})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn.util.write_error = write_json_error  # gunicorn's workers look it up at call time


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type information
    def __init__(self, options: dict[str, Any], app: WorkerApp) -> None:
        self.options = options
        self.worker_app = app
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.worker_app.load()


def _worker_exit(server: Any, worker: Any) -> None:
    app: WorkerApp = server.app.worker_app  # the worker's own copy (forked), holding its app
    app.stop()


def _child_exit(server: Any, worker: Any) -> None:
    mark_dead(worker.pid)


def run(app: WorkerApp, *, host: str, port: int, uds: Path | None, workers: int, threads: int) -> None:
    """Serve until SIGTERM/SIGINT (gunicorn's arbiter)."""
    options = {
        "bind": [f"unix:{uds}"] if uds else [f"{host}:{port}"],
        "umask": 0o117,  # the socket file: rw for owner and group (0660), as under granian
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "keepalive": 5,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,  # one structlog line per request instead
        "errorlog": "-",
        "loglevel": "warning",
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        "proc_name": "sidecar",
        "limit_request_line": 8190,
    }
    _Gunicorn(options, app).run()
