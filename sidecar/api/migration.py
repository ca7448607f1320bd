"""Migration of legacy users (scope ``admin``): ``POST /v1/migrations/legacy-users`` (issue 14).

Body ``{"users": [legacy user, ...], "apply": false}``; answers ``{"applied", "employees",
"seats", "revisions"}`` (see ``sidecar.billing_migration``). A dry run by default. With ``"apply": true``
each tenant is written atomically; every membership and employee it changed is audited
(category ``access``, actor ``migration``) and the tenant's seats are recorded, as after any
directory write. ``after_migration`` does that wiring for the route and for ``sidecar migrate``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g

from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import json_body, optional_bool, reply
from sidecar.audit.auditor import Auditor
from sidecar.audit.events import new_event
from sidecar.billing_migration import LegacyMigration
from sidecar.errors import BadRequest
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.engine import TenantEngine
from sidecar.policy.seats import SeatCounter
from sidecar.policy.tenant import Tenant
from sidecar.store.directory import DirectoryStore, MigratedTenant
from sidecar.store.seat_history import SeatHistory

bp = Blueprint("migration", __name__)
ACTOR = "migration"
_AUDIT_BATCH = 500


def after_migration(write: MigratedTenant, *, auditor: Auditor, history: SeatHistory, store: DirectoryStore,
                    bundle: PolicyBundle, rule: str, request_id: str | None = None) -> None:
    """Audit each change of one tenant's migration write, then record the tenant's seats."""
    events = []
    for change in write.changes:
        verb = "create" if change.before is None else "update"
        details = {"before": change.before, "after": change.after, "revision": write.revision,
                   "subject": change.subject, "service": ACTOR}
        tenant = Tenant.parse(write.tenant)
        location = change.subject.get("location") or (None if tenant.is_chain else tenant.id)
        chain = tenant.id if tenant.is_chain else None
        events.append((write.tenant, new_event(
            category="access", action=f"{change.kind}:{verb}", outcome="success", employee=ACTOR,
            location=location, chain=chain, object={"type": change.kind, "id": "/".join(change.subject.values())},
            device=None, ip=None, request_id=request_id, details=details)))
    for start in range(0, len(events), _AUDIT_BATCH):
        auditor.record(list(events[start:start + _AUDIT_BATCH]))
    engine = TenantEngine(bundle, store.load_tenant(write.tenant))
    history.record(SeatCounter(engine, rule).count_all(), bundle.version)


@bp.post("/v1/migrations/legacy-users")
@require_scope("admin")
def legacy_users() -> Any:
    runtime = current_runtime()
    body = json_body()
    extra = sorted(set(body) - {"users", "apply"})
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    users = body.get("users")
    if not isinstance(users, list):
        raise BadRequest("users must be a list of legacy users", field="users")
    apply = optional_bool(body, "apply")
    bundle, rule = runtime.bundle, runtime.settings.billing_rule
    migration = LegacyMigration(runtime.directory, bundle, rule)
    parsed = migration.parse(enumerate(users, start=1))
    auditor, history = runtime.auditor, runtime.seat_history
    request_id = g.get("request_id")

    def applied(write: MigratedTenant) -> None:
        after_migration(write, auditor=auditor, history=history, store=runtime.directory, bundle=bundle, rule=rule,
                        request_id=request_id)

    return reply(migration.run(parsed, apply=apply, on_applied=applied).to_json())
