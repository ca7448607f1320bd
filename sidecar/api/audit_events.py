"""Audit events in (scope ``audit``): ``POST /v1/audit/events``.

An upstream service reports what it saw happen; 202 ``{"id"}`` only once the event is durable
(in Redis, or fsync'd in this process's spool), else 503. A successful ``login`` event from a
device id never seen for the employee also records ``login.new_device``
(:mod:`sidecar.audit.logins`).

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
from sidecar.errors import BadRequest, NotFound, StoreUnavailable
from sidecar.policy.directory import check_id

bp = Blueprint("audit_events", __name__)

_OUTCOME = re.compile(r"[A-Za-z0-9._-]{1,32}")
_BODY_FIELDS = {"location", "chain", "employee", "action", "outcome", "category", "object", "device", "ip",
                "request_id", "details"}
MAX_DETAILS_BYTES = 16 * 1024
MAX_DETAILS_DEPTH = 32  # orjson writes at most 254 levels; a log reader wants far fewer


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
    if details is not None and _depth(details) > MAX_DETAILS_DEPTH:
        raise BadRequest(f"details may nest at most {MAX_DETAILS_DEPTH} levels deep", field="details")
    if details is not None and len(orjson.dumps(details)) > MAX_DETAILS_BYTES:
        raise BadRequest(f"details must be at most {MAX_DETAILS_BYTES} bytes of JSON", field="details")
    chain = _known_log(location, chain)
    runtime = current_runtime()
    device = _flat(body, "device")
    ip = text_field(body, "ip", 64, required=False, printable=True)
    request_id = text_field(body, "request_id", 128, required=False, printable=True) or g.get("request_id")
    event_id = runtime.auditor.emit(category=category, action=action, outcome=outcome, employee=employee,
                                    location=location, chain=chain, object=_flat(body, "object"), device=device,
                                    ip=ip, request_id=request_id, details=details)
    # A successful login from a device never seen for this employee also records login.new_device.
    runtime.new_devices.reported(category=category, action=action, outcome=outcome, employee=employee,
                                 device=device, ip=ip, request_id=request_id, location=location)
    return reply({"id": event_id}, 202)


def _known_log(location: str | None, chain: str | None) -> str | None:
    """404 for an event naming a location or chain that does not exist (no one could read its log),
    400 for a location outside the chain named; the chain whose log takes the event, if any.

    When Redis cannot say, the event is spooled as before and its log resolved on replay: an
    acknowledged event is never refused for the store's sake."""
    directory = current_runtime().directory
    try:
        if chain is not None and directory.chain(chain) is None:
            raise NotFound(f"chain {chain} does not exist", chain=chain)
        if location is None:
            return chain
        found = directory.location(location)
    except StoreUnavailable:
        return chain
    if found is None:
        raise NotFound(f"location {location} does not exist", location=location)
    if chain is not None and found.chain != chain:
        raise BadRequest(f"location {location} is not in chain {chain}", fields=["location", "chain"])
    return found.chain


def _depth(value: object) -> int:
    """How deeply objects and arrays nest in ``value`` (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DETAILS_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


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
