"""The directory (scope ``admin``): locations, chains, employees, memberships, custom roles.

Every write answers the new ``revision``. ``?actor=E`` names the acting employee, who then
needs ``access:manage`` in the write's scope and may grant only rights they hold there.
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

from flask import Blueprint, g, request

from sidecar.api.auth import require_scope
from sidecar.api.io import ids, json_body, optional_bool, optional_str, reply
from sidecar.errors import BadRequest, NotFound
from sidecar.policy.directory import (
    CHAIN_SCOPE,
    Chain,
    CustomRole,
    Employee,
    Location,
    Membership,
    TenantDirectory,
    check_id,
)
from sidecar.policy.escalation import check_escalation, check_location_write
from sidecar.policy.tenant import Tenant
from sidecar.runtime import WriteRecord, current_runtime
from sidecar.store.directory import Guard, WriteResult

bp = Blueprint("directory", __name__)


def _actor() -> str | None:
    actor = request.args.get("actor")
    return None if actor is None else check_id(actor, "actor")


def _guard(scope_of: Any, affected: list[str] | None) -> Guard | None:
    """The escalation check for this request, or None for a trusted service-to-service write."""
    actor = _actor()
    if actor is None:
        return None
    bundle = current_runtime().bundle

    def guard(before: TenantDirectory, after: TenantDirectory) -> None:
        check_escalation(bundle, actor, before, after, scope_of(before, after), affected)

    return guard


def _is_address(text: str) -> bool:
    """One bare address (what two-step emails are sent to): no display name, no line breaks."""
    _, address = parseaddr(text)
    return address == text and text.isprintable() and " " not in text and text.count("@") == 1


def _location_guard(record: Location) -> Guard | None:
    actor = _actor()
    if actor is None:
        return None
    bundle = current_runtime().bundle
    return lambda before, after: check_location_write(bundle, actor, before, after, record.id)


def _all_locations(before: TenantDirectory, after: TenantDirectory) -> list[str]:
    return sorted(set(before.locations) | set(after.locations))


def _written(result: WriteResult, kind: str, subject: dict[str, str], status: int = 200) -> Any:
    current_runtime().written(WriteRecord(kind, subject, result.revision, result.before, result.after, result.tenants,
                                   _actor(), g.get("request_id")))
    return reply({"revision": result.revision, **subject, "before": result.before, "after": result.after},
                 status)


@bp.get("/v1/roles")
@require_scope("admin")
def list_roles() -> Any:
    bundle = current_runtime().bundle
    return reply({"roles": [{"role": t.name, "rights": sorted(t.rights)} for t in bundle.templates.values()]})


@bp.route("/v1/employees/<employee>", methods=["GET", "PUT"])
@require_scope("admin")
def employee_route(employee: str) -> Any:
    ids(employee=employee)
    store = current_runtime().directory
    if request.method == "GET":
        found = store.employee(employee)
        if found is None:
            raise NotFound(f"employee {employee} does not exist")
        return reply(found.to_json())
    body = json_body()
    extra = sorted(set(body) - {"active", "email", "name"})
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    if "active" not in body:
        raise BadRequest("active is required", field="active")
    email = optional_str(body, "email")
    if email is not None and not _is_address(email):
        raise BadRequest("email must be one plain email address", field="email")
    record = Employee(employee, optional_bool(body, "active"), email, optional_str(body, "name", limit=200))
    result = store.put_employee(record, _guard(_all_locations, [employee]))
    return _written(result, "employee", {"employee": employee})


@bp.route("/v1/chains/<chain>", methods=["GET", "PUT"])
@require_scope("admin")
def chain_route(chain: str) -> Any:
    ids(chain=chain)
    store = current_runtime().directory
    if request.method == "GET":
        found = store.chain(chain)
        if found is None:
            raise NotFound(f"chain {chain} does not exist")
        return reply(found.to_json())
    body = json_body()
    extra = sorted(set(body) - {"owner"})
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    owner = body.get("owner")
    result = store.put_chain(Chain(chain, None if owner is None else check_id(owner, "owner")),
                             _guard(_all_locations, []))
    return _written(result, "chain", {"chain": chain})


@bp.route("/v1/locations/<location>", methods=["GET", "PUT"])
@require_scope("admin")
def location_route(location: str) -> Any:
    ids(location=location)
    store = current_runtime().directory
    if request.method == "GET":
        found = store.location(location)
        if found is None:
            raise NotFound(f"location {location} does not exist")
        return reply(found.to_json())
    body = json_body()
    extra = sorted(set(body) - {"chain", "owner"})
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    chain, owner = body.get("chain"), body.get("owner")
    record = Location(location, None if chain is None else check_id(chain, "chain"),
                      None if owner is None else check_id(owner, "owner"))
    result = store.put_location(record, _location_guard(record))
    return _written(result, "location", {"location": location})


@bp.route("/v1/locations/<location>/employees/<employee>", methods=["GET", "PUT", "DELETE"])
@require_scope("admin")
def membership_route(location: str, employee: str) -> Any:
    ids(location=location, employee=employee)
    store = current_runtime().directory
    if request.method == "GET":
        found = store.membership(location, employee)
        if found is None:
            raise NotFound(f"employee {employee} has no membership at {location}")
        return reply({"location": location, "employee": employee, **found.to_json()})
    membership = Membership.from_json(json_body()) if request.method == "PUT" else None
    result = store.put_membership(location, employee, membership, _guard(lambda b, a: [location], [employee]))
    return _written(result, "membership", {"location": location, "employee": employee})


@bp.route("/v1/chains/<chain>/employees/<employee>", methods=["GET", "PUT", "DELETE"])
@require_scope("admin")
def chain_membership_route(chain: str, employee: str) -> Any:
    ids(chain=chain, employee=employee)
    store = current_runtime().directory
    if request.method == "GET":
        found = store.chain_membership(chain, employee)
        if found is None:
            raise NotFound(f"employee {employee} has no chain-wide membership in {chain}")
        return reply({"chain": chain, "employee": employee, **found.to_json(chain_wide=True)})
    membership = Membership.from_json(json_body(), chain_wide=True) if request.method == "PUT" else None
    result = store.put_chain_membership(chain, employee, membership, _guard(_all_locations, [employee]))
    return _written(result, "chain_membership", {"chain": chain, "employee": employee})


@bp.route("/v1/chains/<chain>/roles/<role>", methods=["GET", "PUT"])
@require_scope("admin")
def chain_role_route(chain: str, role: str) -> Any:
    ids(chain=chain, role=role)
    return _custom_role(Tenant.chain(chain), CHAIN_SCOPE, role, {"chain": chain, "role": role}, chain=chain)


@bp.route("/v1/locations/<location>/roles/<role>", methods=["GET", "PUT"])
@require_scope("admin")
def location_role_route(location: str, role: str) -> Any:
    ids(location=location, role=role)
    found = current_runtime().directory.location(location)
    if found is None:
        raise NotFound(f"location {location} does not exist")
    return _custom_role(found.tenant, location, role, {"location": location, "role": role})


def _custom_role(tenant: str, scope: str, role: str, subject: dict[str, str], chain: str | None = None) -> Any:
    store = current_runtime().directory
    if request.method == "GET":
        found = store.custom_role(tenant, scope, role)
        if found is None:
            raise NotFound(f"no custom role {role} here")
        return reply({**subject, **found.to_json()})
    if chain is not None and store.chain(chain) is None:
        raise NotFound(f"chain {chain} does not exist")
    record = CustomRole.from_json(role, scope, json_body())
    scope_of = _all_locations if scope == CHAIN_SCOPE else (lambda b, a: [scope])
    result = store.put_custom_role(tenant, scope, record, _guard(scope_of, None))
    return _written(result, "role", subject)
