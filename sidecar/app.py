"""The application factory: settings, logging, Flask, runtime, blueprints, in that order."""

from __future__ import annotations

import time
from typing import Any

import structlog
from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from sidecar import audit, logs
from sidecar.api import billing, check, directory, forward_auth, health, mfa, observe
from sidecar.api.io import reply
from sidecar.api.limits import MAX_BODY
from sidecar.config import Settings
from sidecar.errors import SidecarError
from sidecar.runtime import Runtime, current_runtime

log = structlog.get_logger("sidecar.http")


def create_app(settings: Settings | None = None, *, redis_url: str | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_format)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS is a JSON 405, not an HTML 200 (forward-auth takes it)
    url = redis_url or settings.redis_url
    if url is None:
        raise SidecarError("no Redis URL: `sidecar serve` starts the embedded Redis and passes it in")
    runtime = Runtime(settings, url)
    app.extensions["sidecar"] = runtime

    app.before_request(_begin)
    app.after_request(_finish)
    app.register_error_handler(SidecarError, _sidecar_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    for blueprint in (health.bp, check.bp, directory.bp):
        app.register_blueprint(blueprint)
    audit.init_app(app)
    billing.init_app(app)

    mfa.init_app(app)
    forward_auth.init_app(app)
    app.wsgi_app = check.DecisionRoutes(app.wsgi_app, runtime)  # type: ignore[method-assign]  # WSGI layer
    runtime.start()
    return app


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
