"""Decisions: may employee E use right R at location L? A deny is a value, never an error.

Reasons, in the order they are tried:
``unknown_location``, ``unknown_right``, ``unknown_employee`` (not known in the location's
tenant), ``inactive_employee``,
``not_a_member``, ``denied_by_override``, ``not_granted``, ``mfa_required``, ``granted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.policy.catalogue import covers
from sidecar.policy.engine import TenantEngine


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    right: str
    explanation: dict[str, Any] | None = None


def decide(engine: TenantEngine | None, employee: str, location: str, right: str,
           *, mfa: bool = False, explain: bool = False) -> Decision:
    """Decide one right. ``engine`` is the location's tenant, or None for an unknown location."""
    if engine is None:
        return Decision(False, "unknown_location", right)
    catalogue_right = engine.bundle.catalogue.rights.get(right)
    if catalogue_right is None:
        return Decision(False, "unknown_right", right)
    d = engine.directory
    if location not in d.locations:
        return Decision(False, "unknown_location", right)
    person = d.employees.get(employee)
    if person is None:
        return Decision(False, "unknown_employee", right)
    if not person.active:
        return _explained(engine, Decision(False, "inactive_employee", right), employee, location, explain)
    if not d.is_member(employee, location):
        return Decision(False, "not_a_member", right)
    if right in engine.rights(employee, location):
        if catalogue_right.requires_mfa and not mfa:
            decision = Decision(False, "mfa_required", right)
        else:
            decision = Decision(True, "granted", right)
    else:
        decision = Decision(False, "denied_by_override" if _denied(engine, employee, location, right)
                            else "not_granted", right)
    return _explained(engine, decision, employee, location, explain)


def _denied(engine: TenantEngine, employee: str, location: str, right: str) -> bool:
    d = engine.directory
    here = d.memberships.get((employee, location))
    chain_wide = d.chain_memberships.get(employee)
    return any(m is not None and any(covers(p, right) for p in m.deny) for m in (here, chain_wide))


def _explained(engine: TenantEngine, decision: Decision, employee: str, location: str, explain: bool) -> Decision:
    if not explain:
        return decision
    evidence = engine.explain(employee, location, decision.right).to_json()
    return Decision(decision.allowed, decision.reason, decision.right, evidence)
