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
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from sidecar.api import (
    audit_events,
    billing,
    console,
    directory,
    health,
    mfa,
    migration,
    rights,
    security,
    tokens,
    webhooks,
)
from sidecar.api.context import attach, current_runtime
from sidecar.api.edge import (
    INTERNAL_ERROR,
    TOO_LARGE_MESSAGE,
    begin,
    error_body,
    finish,
    method_not_allowed,
    reply,
    request_id,
)
from sidecar.api.limits import MAX_BODY
from sidecar.errors import SidecarError
from sidecar.runtime import Runtime

log = structlog.get_logger("sidecar.http")


def register(app: Flask, runtime: Runtime) -> None:
    """Serve ``runtime`` from ``app``: hooks, error handlers, every blueprint."""
    attach(app, runtime)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS is a JSON 405, not an HTML 200
    app.before_request(_begin)
    app.after_request(_finish)
    app.register_error_handler(SidecarError, _sidecar_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    for blueprint in (
        health.bp,                                       # /livez /readyz /metrics /openapi.json, policy reload
        rights.bp,                                       # effective rights (decisions: fast_path.DecisionRoutes)
        directory.bp,                                    # employees, chains, locations, memberships, roles
        audit_events.bp,                                 # POST /v1/audit/events
        security.bp,                                     # the Security section (security-events)
        billing.bp,                                      # seats, preview, history, transition
        migration.bp,                                    # legacy users to employees with roles
        mfa.bp,                                          # two-step challenges, devices
        tokens.bp,                                       # service tokens: create, list, revoke, their trail
        webhooks.bp,                                     # webhook subscriptions of chains and locations
        console.bp,                                      # /console/: the web console (HTML, employee JWT)
    ):  # /v1/check(/batch) and /v1/forward-auth: fast_path.DecisionRoutes, before Flask
        app.register_blueprint(blueprint)


def _begin() -> None:
    g.request_id = request_id(request.headers.get("X-Request-Id"))
    g.started = time.perf_counter()
    begin(g.request_id)
    current_runtime().maybe_reload_policies()


def _finish(response: Any) -> Any:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    finish(request.method, route, response.status_code, time.perf_counter() - g.get("started", 0.0),
                   g.get("decisions", ()))
    return response


def _sidecar_error(error: SidecarError) -> Any:
    return reply(error.body(), error.status)


def _http_error(error: HTTPException) -> Any:
    """werkzeug's own refusals (routing, body size) in the edge's shapes, as the fast path answers them."""
    status = error.code or 500
    if isinstance(error, MethodNotAllowed):
        allowed = sorted(error.valid_methods or ())
        response = reply(method_not_allowed(allowed), 405)
        response.headers["Allow"] = ", ".join(allowed)
        return response
    if status == 413:
        return reply(error_body("body_too_large", TOO_LARGE_MESSAGE), 413)
    code = "not_found" if status == 404 else (error.name or "error").lower().replace(" ", "_")
    return reply(error_body(code, error.description or error.name), status)


def _unexpected_error(error: Exception) -> Any:
    log.exception("unhandled_error", error_type=type(error).__name__)
    return reply(INTERNAL_ERROR, 500)
