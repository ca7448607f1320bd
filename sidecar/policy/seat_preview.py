"""Seat previews: the seats of a scope before and after hypothetical membership changes.

A :class:`MembershipChange` sets (or, with ``membership=None``, removes) one employee's
membership at a location or chain-wide. The changes are applied to a copy of the tenant's
directory and checked with the directory's own rules (:mod:`sidecar.policy.rules`): unknown
rights and roles are 400, removing a membership that does not exist or naming an unknown
employee is 404, as a real write would answer. Nothing is stored. Reading the request's JSON
into changes is the web layer's job (``sidecar.api.billing``).

Pure: imports ``sidecar.errors`` and ``sidecar.policy`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.errors import BadRequest, NotFound
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.directory import CHAIN_SCOPE, Employee, Membership, TenantDirectory
from sidecar.policy.engine import TenantEngine
from sidecar.policy.rules import validate_membership
from sidecar.policy.seats import Scope, Seats, count_seats

MAX_CHANGES = 1000


@dataclass(frozen=True)
class MembershipChange:
    """Set (or with None, remove) ``employee``'s membership at location ``where``, or in chain ``where``."""

    employee: str
    where: str
    chain_wide: bool
    membership: Membership | None

    @property
    def scope(self) -> str:
        """The directory's role scope: the location, or ``CHAIN_SCOPE``."""
        return CHAIN_SCOPE if self.chain_wide else self.where


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


def apply_changes(directory: TenantDirectory, bundle: PolicyBundle, changes: Sequence[MembershipChange],
                  known_employee: Callable[[str], Employee | None]) -> tuple[TenantDirectory, set[str]]:
    """A copy of ``directory`` with the changes applied, and the employees they touch.

    ``known_employee`` looks up an employee who is not yet a member of the tenant; one who does
    not exist yet is a hire (an active employee of that id, issue 14).
    """
    if not changes:
        raise BadRequest("changes must be a non-empty list", field="changes")
    if len(changes) > MAX_CHANGES:
        raise BadRequest(f"at most {MAX_CHANGES} changes", field="changes")
    copy = directory.copy()
    touched: set[str] = set()
    for change in changes:
        employee, where = change.employee, change.where
        if change.chain_wide and (copy.chain is None or copy.chain.id != where or not copy.tenant.is_chain):
            raise BadRequest(f"chain {where} is not the chain of this scope", field="chain")
        if not change.chain_wide and where not in copy.locations:
            raise BadRequest(f"location {where} is not in this scope's chain", field="location")
        if change.membership is None:
            if copy.membership(employee, change.scope) is None:
                raise NotFound(f"employee {employee} has no membership at {where}", employee=employee)
        else:
            validate_membership(copy, change.membership, change.scope, bundle)
            if employee not in copy.employees:
                person = known_employee(employee)
                copy.employees[employee] = person if person is not None else Employee(employee)  # a hire
        copy.set_membership(employee, change.scope, change.membership)
        touched.add(employee)
    return copy, touched


def preview(engine: TenantEngine, scope: Scope, rule: str, changes: Sequence[MembershipChange],
            known_employee: Callable[[str], Employee | None]) -> tuple[Seats, Seats, list[SeatChange]]:
    """Seats before and after hypothetical membership changes; nothing is stored."""
    before = count_seats(engine, scope, rule)
    changed_directory, touched = apply_changes(engine.directory, engine.bundle, changes, known_employee)
    # cached rights of the employees the changes do not touch stay valid in the copy's engine
    hypothetical = TenantEngine(engine.bundle, changed_directory, reuse=engine, changed_employees=touched)
    after = count_seats(hypothetical, scope, rule)
    return before, after, compare(before, after)
