"""HTTP: thin blueprints over the runtime. Validation at the edge, the domain underneath.

:func:`register` is the table of contents of the web layer: the request hooks, the error
handlers and every blueprint, by name, in one list. Blueprint modules only route: the services
they call are built and owned by the :class:`~sidecar.runtime.Runtime`.

Imports: Flask, the api modules, :mod:`sidecar.runtime` (and everything below it).
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from sidecar.api import billing, check, directory, forward_auth, health, mfa, observe, security
from sidecar.api.context import attach, current_runtime
from sidecar.api.io import reply
from sidecar.api.limits import MAX_BODY
from sidecar.errors import SidecarError
from sidecar.runtime import Runtime

log = structlog.get_logger("sidecar.http")


def register(app: Flask, runtime: Runtime) -> None:
    """Serve ``runtime`` from ``app``: hooks, error handlers, every blueprint."""
    attach(app, runtime)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS is a JSON 405, not an HTML 200 (forward-auth takes it)
    app.before_request(_begin)
    app.after_request(_finish)
    app.register_error_handler(SidecarError, _sidecar_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    for blueprint in (
        health.bp,                                       # /livez /readyz /metrics /openapi.json, policy reload
        check.bp,                                        # effective rights (the decisions: check.DecisionRoutes)
        directory.bp,                                    # employees, chains, locations, memberships, roles
        security.bp,                                     # audit events in, the Security section out
        billing.bp,                                      # seats, preview, history
        mfa.bp,                                          # two-step challenges, devices
        forward_auth.blueprint(app, runtime.settings),   # /v1/forward-auth (prefix from settings)
    ):
        app.register_blueprint(blueprint)


def _begin() -> None:
    g.request_id = observe.request_id(request.headers.get("X-Request-Id"))
    g.started = time.perf_counter()
    observe.begin(g.request_id)
    current_runtime().maybe_reload_policies()


def _finish(response: Any) -> Any:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    observe.finish(request.method, route, response.status_code, time.perf_counter() - g.get("started", 0.0),
                   g.get("decisions", ()))
    return response


def _sidecar_error(error: SidecarError) -> Any:
    return reply(error.body(), error.status)


def _http_error(error: HTTPException) -> Any:
    code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
        error.code or 500, (error.name or "error").lower().replace(" ", "_"))
    return reply({"error": {"code": code, "message": error.description or error.name}}, error.code or 500)


def _unexpected_error(error: Exception) -> Any:
    log.exception("unhandled_error", error_type=type(error).__name__)
    return reply({"error": {"code": "internal", "message": "internal error; see the request id in the logs"}}, 500)
