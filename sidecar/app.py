"""The application factory: settings, logging, Flask, runtime, blueprints, in that order."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from sidecar import logs, metrics
from sidecar.api import check, directory, health
from sidecar.api.io import reply
from sidecar.config import Settings
from sidecar.errors import SidecarError
from sidecar.runtime import Runtime

MAX_BODY = 1024 * 1024
log = structlog.get_logger("sidecar.http")


def create_app(settings: Settings | None = None, *, redis_url: str | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_format)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
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

    runtime.start()
    return app


def _begin() -> None:
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
    g.started = time.perf_counter()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)
    _runtime().maybe_reload_policies()


def _runtime() -> Runtime:
    from flask import current_app

    runtime: Runtime = current_app.extensions["sidecar"]
    return runtime


def _finish(response: Any) -> Any:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    duration = time.perf_counter() - g.get("started", time.perf_counter())
    metrics.REQUESTS.labels(route, str(response.status_code)).inc()
    metrics.LATENCY.labels(route).observe(duration)
    fields: dict[str, Any] = {"method": request.method, "route": route, "status": response.status_code,
                              "duration_ms": round(duration * 1000, 3)}
    decisions = g.get("decisions")
    if decisions:
        for decision in decisions:
            metrics.DECISIONS.labels("true" if decision.allowed else "false", decision.reason).inc()
        if len(decisions) == 1:
            fields.update(right=decisions[0].right, allowed=decisions[0].allowed, reason=decisions[0].reason)
        else:
            fields.update(checks=len(decisions), allowed_count=sum(d.allowed for d in decisions))
    log.info("request", **fields)
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
