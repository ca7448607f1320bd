"""The directory (scope ``admin``): locations, chains, employees, memberships, custom roles.

Every write answers the new ``revision``. ``?actor=E`` names the acting employee, who then
needs ``access:manage`` in the write's scope and may grant only rights they hold there.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parseaddr
from typing import Any

from flask import Blueprint, g, request

from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import check_ids, json_body, optional_bool, reply, text_field
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
from sidecar.policy.escalation import (
    check_chain_write,
    check_employee_write,
    check_escalation,
    check_location_write,
    check_removal,
    check_unplaced_employee_write,
    removal_scope,
)
from sidecar.policy.records import WriteRecord
from sidecar.policy.tenant import Tenant
from sidecar.store.directory import Guard, UnplacedGuard, WriteResult

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


def _removal_guard(locations: Callable[[TenantDirectory], list[str]]) -> Guard | None:
    """The escalation check of a delete: ``access:manage`` at the locations it concerns."""
    actor = _actor()
    if actor is None:
        return None
    bundle = current_runtime().bundle
    return lambda before, after: check_removal(bundle, actor, before, locations(before))


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


def _employee_guards(record: Employee) -> tuple[Guard | None, tuple[str, UnplacedGuard] | None]:
    """The checks of an employee write: in each tenant they belong to, and when they belong to none."""
    actor = _actor()
    if actor is None:
        return None, None
    bundle = current_runtime().bundle

    def in_tenant(before: TenantDirectory, after: TenantDirectory) -> None:
        check_employee_write(bundle, actor, before, after, record.id)

    def unplaced(stored: dict[str, Any] | None, actor_tenants: list[TenantDirectory]) -> None:
        # a new employee's first address redirects nobody's codes; changing a stored one does
        email_changed = record.id != actor and stored is not None and stored.get("email") != record.email
        check_unplaced_employee_write(bundle, actor, actor_tenants, email_changed)

    return in_tenant, (actor, unplaced)


def _chain_guard() -> Guard | None:
    actor = _actor()
    if actor is None:
        return None
    bundle = current_runtime().bundle
    return lambda before, after: check_chain_write(bundle, actor, before, after)


def _all_locations(before: TenantDirectory, after: TenantDirectory) -> list[str]:
    return sorted(set(before.locations) | set(after.locations))


def _written(result: WriteResult, kind: str, subject: dict[str, str], status: int = 200) -> Any:
    current_runtime().written(WriteRecord(kind, subject, result.revision, result.before, result.after, result.tenants,
                                          _actor(), g.get("request_id"), g.get("token_name")))
    return reply({"revision": result.revision, **subject, "before": result.before, "after": result.after},
                 status)


@bp.get("/v1/roles")
@require_scope("admin")
def list_roles() -> Any:
    bundle = current_runtime().bundle
    return reply({"roles": [{"role": t.name, "rights": sorted(t.rights)} for t in bundle.templates.values()]})


@bp.route("/v1/employees/<employee>", methods=["GET", "PUT", "DELETE"])
@require_scope("admin")
def employee_route(employee: str) -> Any:
    check_ids(employee=employee)
    store = current_runtime().directory
    if request.method == "DELETE":
        result = store.delete_employee(employee, _removal_guard(lambda d: removal_scope(d, employee)))
        return _written(result, "employee", {"employee": employee})
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
    email = text_field(body, "email", 320, required=False, empty=True)
    if email is not None and not _is_address(email):
        raise BadRequest("email must be one plain email address", field="email")
    name = text_field(body, "name", 200, required=False, empty=True)
    record = Employee(employee, optional_bool(body, "active"), email, name)
    result = store.put_employee(record, *_employee_guards(record))
    return _written(result, "employee", {"employee": employee})


@bp.route("/v1/chains/<chain>", methods=["GET", "PUT"])
@require_scope("admin")
def chain_route(chain: str) -> Any:
    check_ids(chain=chain)
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
    result = store.put_chain(Chain(chain, None if owner is None else check_id(owner, "owner")), _chain_guard())
    return _written(result, "chain", {"chain": chain})


@bp.route("/v1/locations/<location>", methods=["GET", "PUT", "DELETE"])
@require_scope("admin")
def location_route(location: str) -> Any:
    check_ids(location=location)
    store = current_runtime().directory
    if request.method == "DELETE":
        cascade = request.args.get("cascade", "0")
        if cascade not in ("0", "1"):
            raise BadRequest("cascade must be 0 or 1", field="cascade")
        result = store.delete_location(location, cascade=cascade == "1",
                                       guard=_removal_guard(lambda d: [location]))
        return _written(result, "location", {"location": location})
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
    check_ids(location=location, employee=employee)
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
    check_ids(chain=chain, employee=employee)
    store = current_runtime().directory
    if request.method == "GET":
        found = store.chain_membership(chain, employee)
        if found is None:
            raise NotFound(f"employee {employee} has no chain-wide membership in {chain}")
        return reply({"chain": chain, "employee": employee, **found.to_json(chain_wide=True)})
    membership = Membership.from_json(json_body(), chain_wide=True) if request.method == "PUT" else None
    result = store.put_chain_membership(chain, employee, membership, _guard(_all_locations, [employee]))
    return _written(result, "chain_membership", {"chain": chain, "employee": employee})


@bp.route("/v1/chains/<chain>/roles/<role>", methods=["GET", "PUT", "DELETE"])
@require_scope("admin")
def chain_role_route(chain: str, role: str) -> Any:
    check_ids(chain=chain, role=role)
    return _custom_role(Tenant.chain(chain), CHAIN_SCOPE, role, {"chain": chain, "role": role}, chain=chain)


@bp.route("/v1/locations/<location>/roles/<role>", methods=["GET", "PUT", "DELETE"])
@require_scope("admin")
def location_role_route(location: str, role: str) -> Any:
    check_ids(location=location, role=role)
    found = current_runtime().directory.location(location)
    if found is None:
        raise NotFound(f"location {location} does not exist")
    return _custom_role(found.tenant, location, role, {"location": location, "role": role})


def _custom_role(tenant: Tenant, scope: str, role: str, subject: dict[str, str], chain: str | None = None) -> Any:
    store = current_runtime().directory
    if request.method == "GET":
        found = store.custom_role(tenant, scope, role)
        if found is None:
            raise NotFound(f"no custom role {role} here")
        return reply({**subject, **found.to_json()})
    if request.method == "DELETE":
        where = (lambda d: sorted(d.locations)) if scope == CHAIN_SCOPE else (lambda d: [scope])
        result = store.delete_custom_role(tenant, scope, role, _removal_guard(where))
        return _written(result, "role", subject)
    if chain is not None and store.chain(chain) is None:
        raise NotFound(f"chain {chain} does not exist")
    record = CustomRole.from_json(role, scope, json_body())
    scope_of = _all_locations if scope == CHAIN_SCOPE else (lambda b, a: [scope])
    result = store.put_custom_role(tenant, scope, record, _guard(scope_of, None))
    return _written(result, "role", subject)


# -- listings ------------------------------------------------------------------------------------
def _page_of(entries: list[dict[str, Any]], revision: str) -> Any:
    """One page of membership entries sorted by employee; the cursor is the last employee shown."""
    raw_limit = request.args.get("limit", "100")
    if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= 500):
        raise BadRequest("limit must be a whole number from 1 to 500", field="limit")
    limit = int(raw_limit)
    cursor = request.args.get("cursor")
    if cursor is not None:
        check_id(cursor, "cursor")
        entries = [e for e in entries if e["employee"] > cursor]
    people = sorted({e["employee"] for e in entries})
    shown = set(people[:limit])
    more = len(people) > limit
    return reply({"employees": [e for e in entries if e["employee"] in shown],
                  "next_cursor": people[limit - 1] if more else None, "revision": revision})


def _entries(directory: TenantDirectory, location: str | None = None,
             employee: str | None = None) -> list[dict[str, Any]]:
    """Memberships as JSON, sorted by employee: at ``location`` (chain-wide ones apply there too),
    or every one of the tenant; only ``employee``'s when given."""
    chain = directory.tenant.id if directory.tenant.is_chain else None
    entries = [{"employee": who, "location": where, **m.to_json()}
               for (who, where), m in directory.memberships.items()
               if (location is None or where == location) and (employee is None or who == employee)]
    if chain is not None:
        entries += [{"employee": who, "chain": chain, **m.to_json(chain_wide=True)}
                    for who, m in directory.chain_memberships.items() if employee is None or who == employee]
    return sorted(entries, key=lambda e: (e["employee"], "chain" in e, e.get("location", "")))


def _location_tenant(location: str) -> TenantDirectory:
    """The directory of a location's tenant, or 404."""
    store = current_runtime().directory
    found = store.location(location)
    if found is None:
        raise NotFound(f"location {location} does not exist")
    return store.load_tenant(found.tenant)


def _chain_tenant(chain: str) -> TenantDirectory:
    """The directory of a chain, or 404."""
    store = current_runtime().directory
    if store.chain(chain) is None:
        raise NotFound(f"chain {chain} does not exist")
    return store.load_tenant(Tenant.chain(chain))


@bp.get("/v1/locations/<location>/employees")
@require_scope("admin")
def location_members(location: str) -> Any:
    check_ids(location=location)
    directory = _location_tenant(location)
    return _page_of(_entries(directory, location=location), directory.revision)


@bp.get("/v1/chains/<chain>/employees")
@require_scope("admin")
def chain_members(chain: str) -> Any:
    check_ids(chain=chain)
    directory = _chain_tenant(chain)
    return _page_of(_entries(directory), directory.revision)


@bp.get("/v1/employees/<employee>/memberships")
@require_scope("admin")
def employee_memberships(employee: str) -> Any:
    check_ids(employee=employee)
    store = current_runtime().directory
    if store.employee(employee) is None:
        raise NotFound(f"employee {employee} does not exist")
    entries = [entry for tenant in store.tenants_of(employee)
               for entry in _entries(store.load_tenant(tenant), employee=employee)]
    return reply({"employee": employee, "memberships": entries})


@bp.get("/v1/chains/<chain>/roles")
@require_scope("admin")
def chain_roles(chain: str) -> Any:
    check_ids(chain=chain)
    return _roles_of(_chain_tenant(chain), CHAIN_SCOPE, {"chain": chain})


@bp.get("/v1/locations/<location>/roles")
@require_scope("admin")
def location_roles(location: str) -> Any:
    check_ids(location=location)
    return _roles_of(_location_tenant(location), location, {"location": location})


def _roles_of(directory: TenantDirectory, scope: str, where: dict[str, str]) -> Any:
    roles = [{**where, **role.to_json()} for (role_scope, _), role in sorted(directory.custom_roles.items())
             if role_scope == scope]
    return reply({"roles": roles})
