"""Every rule a directory write must pass, written once.

The directory store (the API's writes), the bulk importer and the seat preview all call these
on the tenant's directory *as the write would leave it*, so a record one of them accepts the
others accept too:

* a membership names only known rights and roles that mean something in its scope: the
  location's own custom roles, the chain's, or a template (never another location's role);
* a custom role does not take a template's name, names only known rights, inherits only roles
  that exist in its scope, and never inherits itself (at any depth); a location's role belongs
  to a location of the tenant;
* a custom role is removed only once no membership and no other custom role refers to it;
* a designated owner (of a chain or a location) is a member of that scope (issue 14).

Pure: imports ``sidecar.errors`` and ``sidecar.policy`` only.
"""

from __future__ import annotations

from collections.abc import Iterable

from sidecar.errors import BadRequest, Conflict, NotFound, UnknownRight, UnknownRole
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.directory import CHAIN_SCOPE, CustomRole, Membership, TenantDirectory


def check_rights(bundle: PolicyBundle, rights: Iterable[str]) -> None:
    """400 unknown_right for any right the catalogue does not list."""
    unknown = bundle.catalogue.unknown(rights)
    if unknown:
        raise UnknownRight(f"unknown rights {unknown}", rights=unknown)


def validate_membership(directory: TenantDirectory, membership: Membership, scope: str,
                        bundle: PolicyBundle) -> None:
    """Refuse unknown rights (400 unknown_right) and roles that mean nothing in ``scope`` (400 unknown_role).

    ``scope`` is the membership's location, or ``CHAIN_SCOPE`` for a chain-wide one.
    """
    check_rights(bundle, [*membership.allow, *membership.deny])
    missing = [r for r in membership.roles if directory.resolve_role(r, scope, bundle.templates) is None]
    if missing:
        raise UnknownRole(f"unknown roles {missing}", roles=missing)


def check_role_name(role: CustomRole, bundle: PolicyBundle) -> None:
    """What can be checked without the tenant: the name is no template's (409), the rights are known (400)."""
    if role.name in bundle.templates:
        raise Conflict(f"{role.name} is a role template's name; choose another", role=role.name)
    check_rights(bundle, role.rights)


def validate_custom_role(directory: TenantDirectory, role: CustomRole, bundle: PolicyBundle) -> None:
    """Refuse a custom role that cannot be defined in ``directory`` (which already holds it).

    404 for a location that is not the tenant's, 409 for a template's name or an inheritance
    cycle, 400 for unknown rights or an unknown parent role.
    """
    check_role_name(role, bundle)
    if role.scope != CHAIN_SCOPE and role.scope not in directory.locations:
        raise NotFound(f"location {role.scope} does not exist", location=role.scope)
    for parent in role.inherits:
        if directory.resolve_role(parent, role.scope, bundle.templates) is None:
            raise UnknownRole(f"role {role.name} inherits unknown role {parent}", role=parent)
    _check_no_cycle(directory, role, set(bundle.templates))


def check_role_unused(directory: TenantDirectory, role: tuple[str, str], bundle: PolicyBundle) -> None:
    """409 while a membership or another custom role refers to the custom role ``(scope, name)``."""
    resolves = directory.resolve_role
    users = [f"{employee}@{location}" for (employee, location), m in sorted(directory.memberships.items())
             if any(resolves(r, location, bundle.templates) == role for r in m.roles)]
    users += [f"{employee}@chain" for employee, m in sorted(directory.chain_memberships.items())
              if any(resolves(r, CHAIN_SCOPE, bundle.templates) == role for r in m.roles)]
    users += [f"role:{name}" for (scope, name), other in sorted(directory.custom_roles.items())
              if (scope, name) != role and any(resolves(p, scope, bundle.templates) == role for p in other.inherits)]
    if users:
        raise Conflict(f"role {role[1]} is still assigned or inherited: {users[:20]}", role=role[1], used_by=users[:20])


def _check_no_cycle(directory: TenantDirectory, role: CustomRole, templates: set[str]) -> None:
    start = (role.scope, role.name)
    seen: set[tuple[str, str]] = set()
    stack = [start]
    while stack:
        key = stack.pop()
        found_role = directory.custom_roles.get(key)
        if found_role is None:
            continue
        for parent in found_role.inherits:
            found = directory.resolve_role(parent, key[0], templates)
            if found is None or found[0] == "template":
                continue
            if found == start:
                raise Conflict(f"role {role.name} would inherit itself through {found_role.name}", role=role.name)
            if found not in seen:
                seen.add(found)
                stack.append(found)


def check_designated_owner(directory: TenantDirectory, owner: str | None, location: str | None = None) -> None:
    """A designated owner must be a member of the scope: of the location (its own membership or a
    chain-wide one), or of the chain (anywhere in it). 400 otherwise: billing exempts only them."""
    if owner is None:
        return
    member = directory.is_member(owner, location) if location is not None else owner in directory.members()
    if not member:
        chain = directory.chain.id if directory.chain else directory.tenant
        where = f"location {location}" if location is not None else f"chain {chain}"
        raise BadRequest(f"owner {owner} is not a member of {where}; add the membership first", field="owner")
