"""Billing (scope ``billing``): paid seats now, a preview of changes, and their history.

Routes: ``GET /v1/billing/seats``, ``GET /v1/billing/seats/transition``, ``POST /v1/billing/seats/preview``,
``GET /v1/billing/seats/history``; each takes exactly one of ``chain`` / ``location``.

The seat history is written by :class:`sidecar.billing.SeatRecorder` after each write; a
history read first brings its scope's record up to the current revision, so a write whose
recording was lost (a crash) is recorded then.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, request

from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import json_body, reply
from sidecar.errors import BadRequest, NotFound
from sidecar.policy.directory import Membership, check_id
from sidecar.policy.engine import TenantEngine
from sidecar.policy.seat_preview import MAX_CHANGES, MembershipChange, preview
from sidecar.policy.seat_transition import transition
from sidecar.policy.seats import Scope, SeatCounter, check_rule, count_seats
from sidecar.policy.tenant import Tenant
from sidecar.policy.times import now_rfc3339, parse_rfc3339, rfc3339
from sidecar.runtime import Runtime

bp = Blueprint("billing", __name__)


# -- reading the request ---------------------------------------------------------------------
def _scope(values: Any) -> Scope:
    chain, location = values.get("chain"), values.get("location")
    if (chain is None) == (location is None):
        raise BadRequest("name exactly one of chain or location", fields=["chain", "location"])
    return Scope("chain", check_id(chain, "chain")) if chain is not None else \
        Scope("location", check_id(location, "location"))


def parse_changes(changes: object) -> list[MembershipChange]:
    """The preview's ``changes``: a list of ``{"employee", "location" | "chain", "membership"}``,
    ``membership`` being a PUT membership body, or null to remove it."""
    if not isinstance(changes, list) or not changes:
        raise BadRequest("changes must be a non-empty list", field="changes")
    if len(changes) > MAX_CHANGES:
        raise BadRequest(f"at most {MAX_CHANGES} changes", field="changes")
    parsed = []
    for change in changes:
        if not isinstance(change, Mapping):
            raise BadRequest("each change must be an object {employee, location | chain, membership}",
                             field="changes")
        extra = sorted(set(change) - {"employee", "location", "chain", "membership"})
        if extra:
            raise BadRequest(f"unexpected fields {extra}", fields=extra)
        employee = check_id(change.get("employee"), "employee")
        if ("location" in change) == ("chain" in change):
            raise BadRequest("each change names exactly one of location or chain", field="changes")
        chain_wide = "chain" in change
        where = check_id(change["chain"] if chain_wide else change["location"], "chain" if chain_wide else "location")
        body = change.get("membership")
        if body is not None and not isinstance(body, Mapping):
            raise BadRequest("membership must be an object or null", field="membership")
        membership = None if body is None else Membership.from_json(body, chain_wide=chain_wide)
        parsed.append(MembershipChange(employee, where, chain_wide, membership))
    return parsed


def _rule(runtime: Runtime) -> str:
    return check_rule(request.args.get("rule", runtime.settings.billing_rule))


def _engine(runtime: Runtime, scope: Scope) -> TenantEngine:
    if scope.kind == "location":
        engine = runtime.replica.engine_for_location(scope.id)
        if engine is None:
            raise NotFound(f"location {scope.id} does not exist", location=scope.id)
        return engine
    if runtime.directory.chain(scope.id) is None:
        raise NotFound(f"chain {scope.id} does not exist", chain=scope.id)
    return runtime.replica.engine(Tenant.chain(scope.id))


def _time_ms(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    _, ms = parse_rfc3339(name, raw)
    return max(0, ms)


# -- routes ----------------------------------------------------------------------------------
@bp.get("/v1/billing/seats")
@require_scope("billing")
def seats() -> Any:
    runtime = current_runtime()
    scope = _scope(request.args)
    rule = _rule(runtime)
    return reply(count_seats(_engine(runtime, scope), scope, rule).to_json(now_rfc3339()))


@bp.get("/v1/billing/seats/transition")
@require_scope("billing")
def seats_transition() -> Any:
    """Paid under the legacy terms (services only) and now, for every member (issue 14)."""
    runtime = current_runtime()
    scope = _scope(request.args)
    rule = _rule(runtime)
    return reply(transition(SeatCounter(_engine(runtime, scope), rule), scope).to_json())


@bp.post("/v1/billing/seats/preview")
@require_scope("billing")
def seats_preview() -> Any:
    runtime = current_runtime()
    body = json_body()
    extra = sorted(set(body) - {"chain", "location", "changes"})
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    scope = _scope(body)
    rule = _rule(runtime)
    before, after, changed = preview(_engine(runtime, scope), scope, rule, parse_changes(body.get("changes")),
                                     runtime.directory.employee)
    return reply({"scope": scope.to_json(), "rule": rule, "revision": before.revision,
                  "paid_seats_before": before.paid_seats, "paid_seats_after": after.paid_seats,
                  "changed": [c.to_json() for c in changed]})


@bp.get("/v1/billing/seats/history")
@require_scope("billing")
def seats_history() -> Any:
    runtime = current_runtime()
    scope = _scope(request.args)
    since = _time_ms("since", 0)
    until = _time_ms("until", int(time.time() * 1000))
    if until < since:
        raise BadRequest("until is before since", fields=["since", "until"])
    history = runtime.seat_history
    # catch up first: a write whose recording was lost (a crash) is recorded now, at its revision
    engine = _engine(runtime, scope)
    history.record([count_seats(engine, scope, runtime.settings.billing_rule)], engine.bundle.version)
    found = history.history(scope, since, until)
    return reply({"scope": scope.to_json(), "since": rfc3339(since), "until": rfc3339(until), **found.to_json()})
