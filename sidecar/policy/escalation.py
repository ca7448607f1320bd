"""No escalation: an acting employee may change access only where they hold ``access:manage``,
and may grant only rights they hold there.

"Grant" means what the write adds: for every affected employee and location of the scope, the
rights held after the write but not before. The actor's rights are read from the directory
*before* the write, so nobody can lift themselves with the very write being checked.
"""

from __future__ import annotations

from collections.abc import Iterable

from sidecar.errors import Escalation
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.directory import TenantDirectory
from sidecar.policy.engine import TenantEngine

MANAGE = "access:manage"


def actor_rights(engine: TenantEngine, actor: str, locations: Iterable[str]) -> frozenset[str]:
    """Rights the actor holds at every one of the locations (the scope's common ground)."""
    person = engine.directory.employees.get(actor)
    if person is None or not person.active:
        return frozenset()
    held: frozenset[str] | None = None
    for location in locations:
        here = engine.rights(actor, location)
        held = here if held is None else held & here
    return held or frozenset()


def check_escalation(bundle: PolicyBundle, actor: str, before: TenantDirectory, after: TenantDirectory,
                     scope: list[str], affected: Iterable[str] | None = None) -> frozenset[str]:
    """Raise ``Escalation`` unless ``actor`` may make the change from ``before`` to ``after``.

    ``scope`` is the locations the write concerns; ``affected`` the employees whose rights may
    change (None: every member of the tenant).
    """
    old = TenantEngine(bundle, before)
    rights = actor_rights(old, actor, scope)
    if not scope or MANAGE not in rights:
        raise Escalation(f"actor {actor} does not hold {MANAGE} here", actor=actor)
    new = TenantEngine(bundle, after)
    people = set(affected) if affected is not None else before.members() | after.members()
    gained: set[str] = set()
    for employee in people:
        for location in scope:
            gained |= _held(new, employee, location) - _held(old, employee, location)
    excess = sorted(gained - rights)
    if excess:
        raise Escalation(f"actor {actor} may not grant rights they do not hold: {excess}", actor=actor,
                         rights=excess)
    return rights


def check_location_write(bundle: PolicyBundle, actor: str, before: TenantDirectory, after: TenantDirectory,
                         location: str) -> None:
    """A location write by an actor: the general rule at that location (so never a new one: nobody
    holds rights there yet; a chain's members gain rights at a location moved into it), and
    ``billing:manage`` there to designate its owner (the owner decides who is billed)."""
    rights = check_escalation(bundle, actor, before, after, [location], None)
    stored, changed = before.locations.get(location), after.locations.get(location)
    if (stored.owner if stored else None) != (changed.owner if changed else None) and "billing:manage" not in rights:
        raise Escalation(f"actor {actor} needs billing:manage to designate the owner", actor=actor)


def _held(engine: TenantEngine, employee: str, location: str) -> frozenset[str]:
    person = engine.directory.employees.get(employee)
    if person is None or not person.active:
        return frozenset()
    return engine.rights(employee, location)


def check_removal(bundle: PolicyBundle, actor: str, before: TenantDirectory, locations: list[str]) -> None:
    """A removal (an employee, a location, a custom role nobody uses) grants no one anything, so
    the actor needs only ``access:manage`` at every location it concerns, read before the write."""
    if not locations or MANAGE not in actor_rights(TenantEngine(bundle, before), actor, locations):
        raise Escalation(f"actor {actor} does not hold {MANAGE} here", actor=actor)


def removal_scope(directory: TenantDirectory, employee: str) -> list[str]:
    """The locations an employee's memberships in this tenant apply to."""
    if employee in directory.chain_memberships:
        return sorted(directory.locations)
    return sorted(location for who, location in directory.memberships if who == employee)
