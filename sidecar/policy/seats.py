"""Seats: who is a paid seat in a billing scope, and why. Pure domain: no Flask, no Redis.

The rule (DOMAIN.md "Seats"). In a **scope** (a chain, or one location) an employee is paid if
they are active and

1. they provide services at a location of the scope (``provides_services``), or
2. their effective rights at some location of the scope include a billable right
   (``right:<name>`` for each one held; billable = booking/payment rights under the
   ``announced`` rule, every right that writes under ``writes``).

Effective rights are the engine's (``TenantEngine.rights``): inheritance, chain-wide
memberships, custom roles, allow overrides, deny wins. Never role names.

Everyone else is free: ``inactive``, or ``no_billable_rights``. One exemption, ``owner_exempt``
(issue 14). The **designated owner** of a location is the location's own (``Location.owner``),
else its chain's (``Chain.owner``); of a chain, the chain's. The designated owner is exempt only
if they *hold the owner template in the scope*, are active and provide no services there. With
nobody designated, the only member who meets those three conditions is exempt (two: nobody).
A designated owner who does not hold the template (an administrator, say) is billed like anyone.
"Holding the owner template in the scope" means that at every location of the scope an
assignment of ``owner`` applies (a membership there or a chain-wide one), directly or through a
custom role inheriting it at any depth: such a role grants exactly what owner grants, so it is
an owner's assignment under another name. Owner at one location of a chain is not full rights
in the chain.

A chain counts each person once. A location counts everyone who is a member there, chain-wide
members included. Previews of changes are :mod:`sidecar.policy.seat_preview`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sidecar.errors import BadRequest, NotFound
from sidecar.policy.directory import CHAIN_SCOPE, TenantDirectory
from sidecar.policy.engine import TenantEngine

RULES = ("announced", "writes")
OWNER_ROLE = "owner"


@dataclass(frozen=True, order=True)
class Scope:
    """A billing scope: ``Scope("chain", "ch-1")`` or ``Scope("location", "l-1")``."""

    kind: str
    id: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"

    def to_json(self) -> dict[str, str]:
        return {self.kind: self.id}


@dataclass(frozen=True)
class Seat:
    employee: str
    paid: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"employee": self.employee, "paid": self.paid, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Seats:
    """Every member of a scope with their verdict, at one revision of the directory."""

    scope: Scope
    revision: str
    rule: str
    seats: tuple[Seat, ...]

    @property
    def paid(self) -> frozenset[str]:
        return frozenset(s.employee for s in self.seats if s.paid)

    @property
    def paid_seats(self) -> int:
        return sum(s.paid for s in self.seats)

    @property
    def free_seats(self) -> int:
        return len(self.seats) - self.paid_seats

    def to_json(self, computed_at: str) -> dict[str, Any]:
        return {"scope": self.scope.to_json(), "rule": self.rule, "paid_seats": self.paid_seats,
                "free_seats": self.free_seats, "employees": [s.to_json() for s in self.seats],
                "revision": self.revision, "computed_at": computed_at}


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise BadRequest(f"rule must be one of {', '.join(RULES)}", field="rule")
    return rule


def scopes_of(directory: TenantDirectory) -> list[Scope]:
    """The billing scopes a tenant answers for: its chain (if it is one) and each location."""
    scopes = [Scope("chain", directory.chain.id)] if directory.tenant.is_chain and directory.chain else []
    return scopes + [Scope("location", location) for location in sorted(directory.locations)]


class SeatCounter:
    """Counts seats of one tenant's scopes from its engine; index built once, rights from the engine's cache."""

    def __init__(self, engine: TenantEngine, rule: str) -> None:
        self.engine = engine
        self.directory = engine.directory
        self.billable = engine.bundle.catalogue.billable(check_rule(rule))
        self.rule = rule
        self._locations_of: dict[str, list[str]] = {}
        self._members_at: dict[str, list[str]] = {}
        for employee, location in self.directory.memberships:
            if location in self.directory.locations:
                self._locations_of.setdefault(employee, []).append(location)
                self._members_at.setdefault(location, []).append(employee)
        self._owner_roles: dict[tuple[str, str], bool] = {}

    # -- the question ------------------------------------------------------------------------
    def count(self, scope: Scope) -> Seats:
        d = self.directory
        if scope.kind == "location":
            if scope.id not in d.locations:
                raise NotFound(f"location {scope.id} is not in tenant {d.tenant}", location=scope.id)
            members = set(self._members_at.get(scope.id, ())) | set(d.chain_memberships)
        else:
            if d.chain is None or d.chain.id != scope.id:
                raise NotFound(f"chain {scope.id} is not tenant {d.tenant}", chain=scope.id)
            members = d.members()
        exempt = self._exempt_owner(scope, members)
        seats = tuple(self._seat(employee, scope, exempt) for employee in sorted(members))
        return Seats(scope, d.revision, self.rule, seats)

    def count_all(self) -> list[Seats]:
        return [self.count(scope) for scope in scopes_of(self.directory)]

    # -- one employee ------------------------------------------------------------------------
    def _locations(self, employee: str, scope: Scope) -> list[str]:
        if scope.kind == "location":
            return [scope.id]
        if employee in self.directory.chain_memberships:
            return sorted(self.directory.locations)
        return self._locations_of.get(employee, [])

    def provides_services(self, employee: str, scope: Scope) -> bool:
        """Does the employee provide services at some location of the scope?"""
        memberships = self.directory.memberships
        return any(m is not None and m.provides_services
                   for m in (memberships.get((employee, loc)) for loc in self._locations(employee, scope)))

    def _seat(self, employee: str, scope: Scope, exempt: str | None) -> Seat:
        person = self.directory.employees.get(employee)
        if person is None or not person.active:
            return Seat(employee, False, ("inactive",))
        if employee == exempt:
            return Seat(employee, False, ("owner_exempt",))
        held: set[str] = set()
        for location in self._locations(employee, scope):
            held |= self.engine.rights(employee, location) & self.billable
        reasons = (("provides_services",) if self.provides_services(employee, scope) else ()) + tuple(
            f"right:{r}" for r in sorted(held))
        return Seat(employee, True, reasons) if reasons else Seat(employee, False, ("no_billable_rights",))

    # -- the owner exemption -----------------------------------------------------------------
    def designated_owner(self, scope: Scope) -> str | None:
        """The location's own designated owner, else its chain's; a chain's own."""
        d = self.directory
        chain_owner = d.chain.owner if d.chain is not None and d.tenant.is_chain else None
        if scope.kind == "location":
            location = d.locations.get(scope.id)
            own = location.owner if location is not None else None
            return own if own is not None else chain_owner
        return chain_owner

    def _exempt_owner(self, scope: Scope, members: Iterable[str]) -> str | None:
        designated = self.designated_owner(scope)
        if designated is not None:
            return designated if self._qualifies(designated, scope) else None
        qualified = [employee for employee in members if self._qualifies(employee, scope)]
        return qualified[0] if len(qualified) == 1 else None

    def _qualifies(self, employee: str, scope: Scope) -> bool:
        """Active, holding the owner template at every location of the scope, providing no services there."""
        person = self.directory.employees.get(employee)
        return (person is not None and person.active and self.holds_owner(employee, scope)
                and not self.provides_services(employee, scope))

    def holds_owner(self, employee: str, scope: Scope) -> bool:
        d = self.directory
        chain_wide = d.chain_memberships.get(employee)
        if chain_wide is not None and any(self._grants_owner(role, CHAIN_SCOPE) for role in chain_wide.roles):
            return True
        locations = [scope.id] if scope.kind == "location" else sorted(d.locations)
        if not locations:
            return False
        for location in locations:
            own = d.memberships.get((employee, location))
            if own is None or not any(self._grants_owner(role, location) for role in own.roles):
                return False
        return True

    def _grants_owner(self, role: str, where: str, trail: frozenset[tuple[str, str]] = frozenset()) -> bool:
        """Does this role, as resolved at ``where``, assign the owner template (through inheritance too)?"""
        cached = self._owner_roles.get((role, where))
        if cached is not None:
            return cached
        found = self.directory.resolve_role(role, where, self.engine.bundle.templates)
        if found is None or found in trail:
            return False
        kind, name = found
        if kind == "template":
            answer = name == OWNER_ROLE
        else:
            custom = self.directory.custom_roles[found]
            answer = any(self._grants_owner(parent, kind, trail | {found}) for parent in custom.inherits)
        self._owner_roles[(role, where)] = answer
        return answer


def count_seats(engine: TenantEngine, scope: Scope, rule: str) -> Seats:
    return SeatCounter(engine, rule).count(scope)
