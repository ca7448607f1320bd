"""The application factory: settings, logging, Flask, runtime, ``api.register``, the decision fast path.

Imports: :mod:`sidecar.api`, :mod:`sidecar.runtime`, config, logs, errors.
"""

from __future__ import annotations

from flask import Flask

from sidecar import api, logs
from sidecar.api.fast_path import DecisionRoutes
from sidecar.config import Settings
from sidecar.errors import SidecarError
from sidecar.runtime import Runtime


def create_app(settings: Settings | None = None, *, redis_url: str | None = None, start: bool = True) -> Flask:
    """A Flask app over a new runtime; ``start=False`` leaves the runtime's threads unstarted
    (the caller starts them with ``runtime.start()``, or drives the work by hand)."""
    settings = settings or Settings.from_env()
    logs.configure(settings.log_format)
    url = redis_url or settings.redis_url
    if url is None:
        raise SidecarError("no Redis URL: `sidecar serve` starts the embedded Redis and passes it in")
    app = Flask(__name__, static_folder=None)  # the console serves its own assets under /console/static
    runtime = Runtime(settings, url)
    api.register(app, runtime)
    app.wsgi_app = DecisionRoutes(app.wsgi_app, runtime)  # type: ignore[method-assign]  # the WSGI fast path
    if start:
        runtime.start()
    return app
