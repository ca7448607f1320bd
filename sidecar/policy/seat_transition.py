"""The account manager's answer: paid seats of a scope under the legacy terms and now (issue 14).

Under the legacy terms only people who provide services were paid (active, ``provides_services``
at a location of the scope). Under the current rule (``policy.seats``) billable rights count
too, and the designated owner may be exempt. ``transition(counter, scope)`` answers both for
every member of the scope, with the current rule's reasons, the totals and who changes.

Pure: imports only ``policy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.policy.seats import Scope, SeatCounter


@dataclass(frozen=True)
class TransitionSeat:
    employee: str
    paid_legacy: bool
    paid: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"employee": self.employee, "paid_legacy": self.paid_legacy, "paid": self.paid,
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Transition:
    scope: Scope
    rule: str
    revision: str
    employees: tuple[TransitionSeat, ...]

    @property
    def legacy_paid_seats(self) -> int:
        return sum(e.paid_legacy for e in self.employees)

    @property
    def paid_seats(self) -> int:
        return sum(e.paid for e in self.employees)

    @property
    def changed(self) -> list[str]:
        """Employees whose paid status differs between the legacy terms and now."""
        return [e.employee for e in self.employees if e.paid != e.paid_legacy]

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope.to_json(), "rule": self.rule, "legacy_paid_seats": self.legacy_paid_seats,
                "paid_seats": self.paid_seats, "changed": self.changed,
                "employees": [e.to_json() for e in self.employees], "revision": self.revision}


def transition(counter: SeatCounter, scope: Scope) -> Transition:
    """Every member of ``scope``: paid under the legacy terms, paid now, and why (now)."""
    now = counter.count(scope)
    directory = counter.directory
    employees = []
    for seat in now.seats:
        person = directory.employees.get(seat.employee)
        legacy = person is not None and person.active and counter.provides_services(seat.employee, scope)
        employees.append(TransitionSeat(seat.employee, legacy, seat.paid, seat.reasons))
    return Transition(scope, now.rule, now.revision, tuple(employees))


def render_transition(report: Transition) -> str:
    """A readable table of a transition report (``sidecar seats --transition``)."""
    rows = [("employee", "legacy", "now", "reasons")]
    rows += [(e.employee, "paid" if e.paid_legacy else "free", "paid" if e.paid else "free", ", ".join(e.reasons))
             for e in report.employees]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"{report.scope.kind} {report.scope.id}: {report.legacy_paid_seats} paid under the legacy terms, "
                 f"{report.paid_seats} now (rule {report.rule}, revision {report.revision}); "
                 f"{len(report.changed)} change")
    return "\n".join(lines)


__all__ = ["Transition", "TransitionSeat", "render_transition", "transition"]
