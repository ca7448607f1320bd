"""Seats: who is a paid seat in a billing scope, and why. Pure domain: no Flask, no Redis.

The rule (DOMAIN.md "Seats"). In a **scope** (a chain, or one location) an employee is paid if
they are active and

1. they provide services at a location of the scope (``provides_services``), or
2. their effective rights at some location of the scope include a billable right
   (``right:<name>`` for each one held; billable = booking/payment rights under the
   ``announced`` rule, every right that writes under ``writes``).

Effective rights are the engine's (``TenantEngine.rights``): inheritance, chain-wide
memberships, custom roles, allow overrides, deny wins. Never role names.

Everyone else is free: ``inactive``, or ``no_billable_rights``. One exemption, ``owner_exempt``:
the scope's designated owner (``Location.owner`` for a location scope, ``Chain.owner`` for a
chain scope) or, when none is designated, the only active member holding the ``owner`` role in
the scope, is free unless they provide services. "Holding owner" means an assignment in a
membership of the scope of the ``owner`` template, directly or through a custom role that
inherits it (at any depth): a custom role that inherits owner grants exactly what owner grants,
so it is an owner's assignment under another name. Two such holders and nobody designated: no
one is exempt, and both are paid.

A chain counts each person once. A location counts everyone who is a member there, chain-wide
members included. Preview helpers apply membership changes to a copy of a tenant's directory,
validated as the directory store validates them (400 for bad ids, unknown rights and roles).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.errors import BadRequest, NotFound
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.directory import CHAIN_SCOPE, Employee, Membership, TenantDirectory, check_id
from sidecar.policy.engine import TenantEngine
from sidecar.policy.rules import validate_membership

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
            designated = d.locations[scope.id].owner
        else:
            if d.chain is None or d.chain.id != scope.id:
                raise NotFound(f"chain {scope.id} is not tenant {d.tenant}", chain=scope.id)
            members = d.members()
            designated = d.chain.owner
        exempt = designated if designated is not None else self._only_owner(scope, members)
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

    def _seat(self, employee: str, scope: Scope, exempt: str | None) -> Seat:
        d = self.directory
        person = d.employees.get(employee)
        if person is None or not person.active:
            return Seat(employee, False, ("inactive",))
        locations = self._locations(employee, scope)
        serves = any(m is not None and m.provides_services
                     for m in (d.memberships.get((employee, loc)) for loc in locations))
        held: set[str] = set()
        for location in locations:
            held |= self.engine.rights(employee, location) & self.billable
        if employee == exempt and not serves:
            return Seat(employee, False, ("owner_exempt",))
        reasons = (("provides_services",) if serves else ()) + tuple(f"right:{r}" for r in sorted(held))
        return Seat(employee, True, reasons) if reasons else Seat(employee, False, ("no_billable_rights",))

    # -- the owner exemption -----------------------------------------------------------------
    def _only_owner(self, scope: Scope, members: Iterable[str]) -> str | None:
        d = self.directory
        holders = []
        for employee in members:
            person = d.employees.get(employee)
            if person is None or not person.active:
                continue
            assignments = [(d.chain_memberships.get(employee), CHAIN_SCOPE)]
            assignments += [(d.memberships.get((employee, loc)), loc) for loc in self._own_locations(employee, scope)]
            if any(m is not None and any(self._grants_owner(role, where) for role in m.roles)
                   for m, where in assignments):
                holders.append(employee)
        return holders[0] if len(holders) == 1 else None

    def _own_locations(self, employee: str, scope: Scope) -> list[str]:
        """Locations of the scope where the employee has a membership of their own."""
        if scope.kind == "location":
            return [scope.id] if (employee, scope.id) in self.directory.memberships else []
        return self._locations_of.get(employee, [])

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


# -- previews --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeatChange:
    employee: str
    paid_before: bool
    paid_after: bool

    def to_json(self) -> dict[str, Any]:
        return {"employee": self.employee, "paid_before": self.paid_before, "paid_after": self.paid_after}


def compare(before: Seats, after: Seats) -> list[SeatChange]:
    """Employees whose paid status differs (someone absent from a side counts as free there)."""
    was, now = before.paid, after.paid
    return [SeatChange(e, e in was, e in now) for e in sorted(was ^ now)]


def apply_changes(directory: TenantDirectory, bundle: PolicyBundle, changes: object,
                  known_employee: Callable[[str], Employee | None]) -> tuple[TenantDirectory, set[str]]:
    """A copy of ``directory`` with membership changes applied, and the employees they touch.

    ``changes`` is the request's list of ``{"employee", "location" | "chain", "membership"}``;
    ``membership`` is a PUT membership body, or null to remove it. ``known_employee`` looks up
    an employee who is not yet a member of the tenant (None: 404, as the directory answers).
    """
    if not isinstance(changes, list) or not changes:
        raise BadRequest("changes must be a non-empty list", field="changes")
    if len(changes) > 1000:
        raise BadRequest("at most 1000 changes", field="changes")
    copy = directory.copy()
    touched: set[str] = set()
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
        if chain_wide and (copy.chain is None or copy.chain.id != where or not copy.tenant.is_chain):
            raise BadRequest(f"chain {where} is not the chain of this scope", field="chain")
        if not chain_wide and where not in copy.locations:
            raise BadRequest(f"location {where} is not in this scope's chain", field="location")
        body = change.get("membership")
        if body is not None and not isinstance(body, Mapping):
            raise BadRequest("membership must be an object or null", field="membership")
        membership = None if body is None else Membership.from_json(body, chain_wide=chain_wide)
        table: dict[Any, Membership] = copy.chain_memberships if chain_wide else copy.memberships
        key: Any = employee if chain_wide else (employee, where)
        if membership is None:
            if key not in table:
                raise NotFound(f"employee {employee} has no membership at {where}", employee=employee)
            del table[key]
        else:
            validate_membership(copy, membership, CHAIN_SCOPE if chain_wide else where, bundle)
            if employee not in copy.employees:
                person = known_employee(employee)
                if person is None:
                    raise NotFound(f"employee {employee} does not exist", employee=employee)
                copy.employees[employee] = person
            table[key] = membership
        touched.add(employee)
    return copy, touched


def preview(engine: TenantEngine, scope: Scope, rule: str, changes: object,
            known_employee: Callable[[str], Employee | None]) -> tuple[Seats, Seats, list[SeatChange]]:
    """Seats before and after hypothetical membership changes; nothing is stored."""
    before = count_seats(engine, scope, rule)
    changed_directory, touched = apply_changes(engine.directory, engine.bundle, changes, known_employee)
    # cached rights of the employees the changes do not touch stay valid in the copy's engine
    hypothetical = TenantEngine(engine.bundle, changed_directory, reuse=engine, changed_employees=touched)
    after = count_seats(hypothetical, scope, rule)
    return before, after, compare(before, after)


# -- for people ------------------------------------------------------------------------------
def render_table(seats: Seats, *, explain: bool = False) -> str:
    """A readable table of a scope's seats (``sidecar seats``)."""
    rows = [("employee", "seat", *(("reasons",) if explain else ()))]
    rows += [(s.employee, "paid" if s.paid else "free", *((", ".join(s.reasons),) if explain else ()))
             for s in seats.seats]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"{seats.scope.kind} {seats.scope.id}: {seats.paid_seats} paid, {seats.free_seats} free "
                 f"(rule {seats.rule}, revision {seats.revision})")
    return "\n".join(lines)


__all__ = ["RULES", "Scope", "Seat", "SeatChange", "SeatCounter", "Seats", "apply_changes", "check_rule",
           "compare", "count_seats", "preview", "render_table", "scopes_of"]
