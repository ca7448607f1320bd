"""Open routes: liveness, readiness, metrics, the OpenAPI document, and the policy reload."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from sidecar import metrics
from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import reply
from sidecar.errors import PolicyInvalid
from sidecar.openapi import document

bp = Blueprint("health", __name__)


@bp.get("/livez")
def livez() -> Any:
    return reply({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    ready, state = current_runtime().ready()
    return reply(state, 200 if ready else 503)


@bp.get("/metrics")
def prometheus() -> Any:
    metrics.TENANTS_LOADED.set(current_runtime().replica.tenants_loaded())
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Any:
    return reply(document())


@bp.post("/v1/policies/reload")
@require_scope("admin")
def reload_policies() -> Any:
    """Reload ``policies/`` in this worker now (others notice the change within policy_poll_s)."""
    runtime = current_runtime()
    if not runtime.reload_policies():
        raise PolicyInvalid(runtime.policy_error or "policy reload failed; the last good policy stays")
    return reply({"reloaded": True, "fingerprint": runtime.bundle.fingerprint})
