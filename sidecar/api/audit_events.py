"""Audit events in (scope ``audit``): ``POST /v1/audit/events``.

An upstream service reports what it saw happen; 202 ``{"id"}`` only once the event is durable
(in Redis, or fsync'd in this process's spool), else 503.

Imports: Flask, the api edge and auth, :mod:`sidecar.audit.events`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Blueprint, g

from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import json_body, matching, reply, text_field
from sidecar.audit.events import ACTION_NAME, CATEGORIES, category_of
from sidecar.errors import BadRequest
from sidecar.policy.directory import check_id

bp = Blueprint("audit_events", __name__)

_OUTCOME = re.compile(r"[A-Za-z0-9._-]{1,32}")
_BODY_FIELDS = {"location", "chain", "employee", "action", "outcome", "category", "object", "device", "ip",
                "request_id", "details"}
MAX_DETAILS_BYTES = 16 * 1024


@bp.post("/v1/audit/events")
@require_scope("audit")
def report_event() -> Any:
    body = json_body()
    extra = sorted(set(body) - _BODY_FIELDS)
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    location = None if body.get("location") is None else check_id(body["location"], "location")
    chain = None if body.get("chain") is None else check_id(body["chain"], "chain")
    if location is None and chain is None:
        raise BadRequest("location (or chain) is required", field="location")
    employee = None if body.get("employee") is None else check_id(body["employee"], "employee")
    action = matching(body.get("action"), ACTION_NAME, "action")
    outcome = matching(body.get("outcome"), _OUTCOME, "outcome")
    category = body.get("category") or category_of(action)
    if category not in CATEGORIES:
        raise BadRequest(f"category must be one of {', '.join(CATEGORIES)}", field="category")
    details = _object(body, "details")
    if details is not None and len(orjson.dumps(details)) > MAX_DETAILS_BYTES:
        raise BadRequest(f"details must be at most {MAX_DETAILS_BYTES} bytes of JSON", field="details")
    event_id = current_runtime().auditor.emit(category=category, action=action, outcome=outcome, employee=employee,
                          location=location, chain=chain, object=_flat(body, "object"), device=_flat(body, "device"),
                          ip=text_field(body, "ip", 64, required=False, printable=True),
                          request_id=text_field(body, "request_id", 128, required=False, printable=True)
                          or g.get("request_id"), details=details)
    return reply({"id": event_id}, 202)


def _object(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise BadRequest(f"{name} must be an object", field=name)
    return value


def _flat(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A small object of scalar fields (``object``, ``device``)."""
    value = _object(body, name)
    if value is None:
        return None
    if len(value) > 16 or not all(isinstance(v, str | int | bool | None) and len(str(v)) <= 512
                                  for v in value.values()):
        raise BadRequest(f"{name} must hold at most 16 fields of short strings or numbers", field=name)
    return value
