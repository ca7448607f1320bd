"""The runtime a Flask app serves: ``current_runtime()`` inside a request, ``runtime_of(app)`` outside.

The app holds its runtime under one extension key, set by :func:`attach`; every service is
reached through the runtime, never through other extension keys.

Imports: Flask, :mod:`sidecar.runtime`.
"""

from __future__ import annotations

from flask import Flask, current_app

from sidecar.runtime import Runtime

_KEY = "sidecar"


def attach(app: Flask, runtime: Runtime) -> None:
    app.extensions[_KEY] = runtime


def runtime_of(app: Flask) -> Runtime:
    runtime: Runtime = app.extensions[_KEY]
    return runtime


def current_runtime() -> Runtime:
    return runtime_of(current_app)
