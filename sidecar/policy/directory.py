"""The directory as values: employees, locations, chains, memberships, custom roles.

A **tenant** is a chain, or a standalone location: the unit that is loaded, cached and
evaluated together. ``TenantDirectory`` is everything one tenant's decisions need. Pure data,
no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from sidecar.errors import BadRequest, InvalidId
from sidecar.policy.tenant import Tenant

ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
CHAIN_SCOPE = "*"  # the scope of a chain's custom roles and chain-wide memberships


def is_valid_id(value: object) -> TypeGuard[str]:
    """1-64 characters from ``[A-Za-z0-9._-]`` (fullmatch: ``$`` would let a trailing newline in)."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(value: object, what: str = "id") -> str:
    if not is_valid_id(value):
        raise InvalidId(f"{what} must be 1-64 characters from [A-Za-z0-9._-]", field=what)
    return value


@dataclass(frozen=True, slots=True)
class Employee:
    id: str
    active: bool = True
    email: str | None = None
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"employee": self.id, "active": self.active, "email": self.email, "name": self.name}


@dataclass(frozen=True, slots=True)
class Location:
    id: str
    chain: str | None = None
    owner: str | None = None

    @property
    def tenant(self) -> Tenant:
        return Tenant.chain(self.chain) if self.chain else Tenant.location(self.id)

    def to_json(self) -> dict[str, Any]:
        return {"location": self.id, "chain": self.chain, "owner": self.owner}


@dataclass(frozen=True, slots=True)
class Chain:
    id: str
    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"chain": self.id, "owner": self.owner}


@dataclass(frozen=True, slots=True)
class Membership:
    """Roles and overrides of one employee at one location, or chain-wide."""

    roles: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    provides_services: bool = False

    def to_json(self, *, chain_wide: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"roles": list(self.roles), "allow": list(self.allow), "deny": list(self.deny)}
        if not chain_wide:
            body["provides_services"] = self.provides_services
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, chain_wide: bool = False) -> Membership:
        allowed_keys = {"roles", "allow", "deny"} | (set() if chain_wide else {"provides_services"})
        extra = sorted(set(body) - allowed_keys)
        if extra:
            raise BadRequest(f"unexpected fields {extra}", fields=extra)
        roles = _string_list(body.get("roles"), "roles", required=True)
        for role in roles:
            check_id(role, "role")
        provides = body.get("provides_services", False)
        if not isinstance(provides, bool):
            raise BadRequest("provides_services must be true or false", field="provides_services")
        return cls(
            roles=tuple(dict.fromkeys(roles)),
            allow=tuple(dict.fromkeys(_string_list(body.get("allow"), "allow"))),
            deny=tuple(dict.fromkeys(_string_list(body.get("deny"), "deny"))),
            provides_services=provides,
        )


@dataclass(frozen=True, slots=True)
class CustomRole:
    """A role defined inside one chain (scope ``*``) or one location (scope = location id)."""

    name: str
    scope: str
    rights: tuple[str, ...] = ()
    inherits: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"role": self.name, "rights": list(self.rights), "inherits": list(self.inherits)}

    @classmethod
    def from_json(cls, name: str, scope: str, body: Mapping[str, Any]) -> CustomRole:
        extra = sorted(set(body) - {"rights", "inherits"})
        if extra:
            raise BadRequest(f"unexpected fields {extra}", fields=extra)
        inherits = _string_list(body.get("inherits"), "inherits")
        for parent in inherits:
            check_id(parent, "role")
        return cls(
            name=name,
            scope=scope,
            rights=tuple(dict.fromkeys(_string_list(body.get("rights"), "rights", required=True))),
            inherits=tuple(dict.fromkeys(inherits)),
        )


def _string_list(value: object, name: str, *, required: bool = False) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name} must be a list of strings", field=name)
    if len(value) > 200:
        raise BadRequest(f"{name} has more than 200 entries", field=name)
    return value


@dataclass
class TenantDirectory:
    """One tenant's directory at one revision (the stream id of its last change)."""

    tenant: Tenant
    revision: str
    chain: Chain | None
    locations: dict[str, Location] = field(default_factory=dict)
    employees: dict[str, Employee] = field(default_factory=dict)
    memberships: dict[tuple[str, str], Membership] = field(default_factory=dict)  # (employee, location)
    chain_memberships: dict[str, Membership] = field(default_factory=dict)
    custom_roles: dict[tuple[str, str], CustomRole] = field(default_factory=dict)  # (scope, name)

    def copy(self) -> TenantDirectory:
        """A copy whose tables can change without touching this one (the values are frozen)."""
        return TenantDirectory(self.tenant, self.revision, self.chain, dict(self.locations), dict(self.employees),
                               dict(self.memberships), dict(self.chain_memberships), dict(self.custom_roles))

    def is_member(self, employee: str, location: str) -> bool:
        return (employee, location) in self.memberships or (
            employee in self.chain_memberships and location in self.locations
        )

    def members(self) -> set[str]:
        return {e for e, _ in self.memberships} | set(self.chain_memberships)

    def membership(self, employee: str, scope: str) -> Membership | None:
        """The employee's membership at a location, or chain-wide when ``scope`` is ``CHAIN_SCOPE``."""
        if scope == CHAIN_SCOPE:
            return self.chain_memberships.get(employee)
        return self.memberships.get((employee, scope))

    def set_membership(self, employee: str, scope: str, membership: Membership | None) -> None:
        """Set (or with None, remove) the employee's membership in ``scope`` (a location or ``CHAIN_SCOPE``)."""
        if scope == CHAIN_SCOPE:
            if membership is None:
                self.chain_memberships.pop(employee, None)
            else:
                self.chain_memberships[employee] = membership
        elif membership is None:
            self.memberships.pop((employee, scope), None)
        else:
            self.memberships[(employee, scope)] = membership

    def resolve_role(self, name: str, scope: str, templates: Iterable[str]) -> tuple[str, str] | None:
        """Which definition a role name means in a scope: location's own, chain's, template."""
        if scope != CHAIN_SCOPE and (scope, name) in self.custom_roles:
            return (scope, name)
        if (CHAIN_SCOPE, name) in self.custom_roles:
            return (CHAIN_SCOPE, name)
        if name in templates:
            return ("template", name)
        return None
