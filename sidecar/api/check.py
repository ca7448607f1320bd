"""Decisions (scope ``check``): single, batch, and an employee's effective rights."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, g, request

from sidecar.api.auth import require_scope
from sidecar.api.io import ids, json_body, reply
from sidecar.errors import BadRequest, TooManyChecks
from sidecar.policy.decisions import Decision
from sidecar.policy.directory import check_id
from sidecar.runtime import CheckRecord, Runtime, current_runtime

bp = Blueprint("check", __name__)
MAX_BATCH = 100


def _text(body: dict[str, Any], name: str, limit: int = 64) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadRequest(f"{name} must be a non-empty string of at most {limit} characters", field=name)
    return value


def _context(body: dict[str, Any]) -> dict[str, Any]:
    context = body.get("context", {})
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise BadRequest("context must be an object", field="context")
    if not isinstance(context.get("mfa", False), bool):
        raise BadRequest("context.mfa must be true or false", field="context.mfa")
    device = context.get("device")
    if device is not None and not isinstance(device, dict):
        raise BadRequest("context.device must be an object", field="context.device")
    return context


def _subject(body: dict[str, Any], runtime: Runtime) -> tuple[str, str, dict[str, Any]]:
    employee = check_id(body.get("employee"), "employee")
    location = check_id(body.get("location"), "location")
    context = _context(body)
    min_revision = body.get("min_revision") or request.args.get("min_revision")
    if min_revision is not None:
        if not isinstance(min_revision, str) or not _is_revision(min_revision):
            raise BadRequest("min_revision must be a revision string such as 1764288000000-0", field="min_revision")
        runtime.replica.wait_for(min_revision, runtime.settings.min_revision_wait_s)
    return employee, location, context


def _is_revision(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(value) <= 40


def _record(decision: Decision) -> None:
    g.decisions = [*getattr(g, "decisions", []), decision]


@bp.post("/v1/check")
@require_scope("check")
def check() -> Any:
    runtime = current_runtime()
    body = json_body()
    employee, location, context = _subject(body, runtime)
    right = f"{_text(body, 'resource')}:{_text(body, 'action')}"
    explain = request.args.get("explain") in ("1", "true")
    decision = runtime.decide(employee, location, right, mfa=context.get("mfa", False), explain=explain)
    _record(decision)
    answer: dict[str, Any] = {"allowed": decision.allowed, "decision_id": uuid.uuid4().hex, "reason": decision.reason}
    if explain:
        answer["explanation"] = decision.explanation or {"roles": [], "overrides": {"allow": [], "deny": []},
                                                          "matched_rule": []}
    runtime.checked(CheckRecord(employee, location, [(decision, answer["decision_id"])], context,
                                g.get("request_id"), "check"))
    return reply(answer)


@bp.post("/v1/check/batch")
@require_scope("check")
def check_batch() -> Any:
    runtime = current_runtime()
    body = json_body()
    checks = body.get("checks")
    if not isinstance(checks, list) or not checks:
        raise BadRequest("checks must be a non-empty list of {resource, action}", field="checks")
    if len(checks) > MAX_BATCH:
        raise TooManyChecks(f"at most {MAX_BATCH} checks per batch", limit=MAX_BATCH)
    rights = []
    for item in checks:
        if not isinstance(item, dict):
            raise BadRequest("each check must be an object {resource, action}", field="checks")
        rights.append((_text(item, "resource"), _text(item, "action")))
    employee, location, context = _subject(body, runtime)
    mfa = context.get("mfa", False)
    batch_id = uuid.uuid4().hex
    decided = [(runtime.decide(employee, location, f"{resource}:{action}", mfa=mfa), f"{batch_id}-{index}")
               for index, (resource, action) in enumerate(rights)]
    g.decisions = [decision for decision, _ in decided]
    runtime.checked(CheckRecord(employee, location, decided, context, g.get("request_id"), "batch"))
    return reply({"results": [{"resource": resource, "action": action, "allowed": decision.allowed,
                               "reason": decision.reason}
                              for (resource, action), (decision, _) in zip(rights, decided, strict=True)]})


@bp.get("/v1/locations/<location>/employees/<employee>/rights")
@require_scope("check")
def rights(location: str, employee: str) -> Any:
    ids(location=location, employee=employee)
    runtime = current_runtime()
    engine = runtime.replica.engine_for_location(location)
    held: list[str] = []
    if engine is not None:
        person = engine.directory.employees.get(employee)
        if person is not None and person.active:
            held = sorted(engine.rights(employee, location))
    return reply({"employee": employee, "location": location, "rights": held,
                  "revision": engine.directory.revision if engine else None})
