"""No escalation: an acting employee may change access only where they hold ``access:manage``,
and may grant only rights they hold there.

"Grant" means what the write adds: for every affected employee and location of the scope, the
rights held after the write but not before. The actor's rights are read from the directory
*before* the write, so nobody can lift themselves with the very write being checked.

Writes that grant no right but still give power are checked by what they change:
- designating an owner (of a location or of a chain) decides who is billed: ``billing:manage``
  where it applies (at the location; at every location of the chain);
- moving a location into a chain: ``access:manage`` at every location of the target chain too
  (the chain's members gain rights there, its log gets the location's events);
- changing another employee's email redirects their two-step codes: ``security:manage``;
- an employee who is a member nowhere is no exception: the actor must still hold
  ``access:manage`` somewhere (and ``security:manage`` there to change an email).
"""

from __future__ import annotations

from collections.abc import Iterable

from sidecar.errors import Escalation
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.directory import TenantDirectory
from sidecar.policy.engine import TenantEngine

MANAGE = "access:manage"
BILLING = "billing:manage"
SECURITY = "security:manage"


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
    holds rights there yet; a chain's members gain rights at a location moved into it),
    ``billing:manage`` there to designate its owner (the owner decides who is billed), and
    ``access:manage`` at every location of a chain it moves into (``after`` is that chain)."""
    rights = check_escalation(bundle, actor, before, after, [location], None)
    stored, changed = before.locations.get(location), after.locations.get(location)
    if (stored.owner if stored else None) != (changed.owner if changed else None) and BILLING not in rights:
        raise Escalation(f"actor {actor} needs {BILLING} to designate the owner", actor=actor)
    target = changed.chain if changed else None
    if target is not None and target != (stored.chain if stored else None):
        others = sorted(set(after.locations) - {location})
        if not others or MANAGE not in actor_rights(TenantEngine(bundle, after), actor, others):
            raise Escalation(f"actor {actor} needs {MANAGE} at every location of chain {target} to move a "
                             "location into it", actor=actor, chain=target)


def check_chain_write(bundle: PolicyBundle, actor: str, before: TenantDirectory, after: TenantDirectory) -> None:
    """A chain write by an actor: ``access:manage`` at every location of the chain, and
    ``billing:manage`` there too to designate (or change, or clear) the chain's owner."""
    rights = check_escalation(bundle, actor, before, after, sorted(before.locations), [])
    owner_before = before.chain.owner if before.chain else None
    owner_after = after.chain.owner if after.chain else None
    if owner_before != owner_after and BILLING not in rights:
        raise Escalation(f"actor {actor} needs {BILLING} at every location of the chain to designate its owner",
                         actor=actor)


def check_employee_write(bundle: PolicyBundle, actor: str, before: TenantDirectory, after: TenantDirectory,
                         employee: str) -> None:
    """An employee write by an actor, in one tenant the employee belongs to: the general rule over
    the tenant's locations, and ``security:manage`` there to change another employee's email."""
    rights = check_escalation(bundle, actor, before, after, sorted(before.locations | after.locations), [employee])
    if actor != employee and _email(before, employee) != _email(after, employee) and SECURITY not in rights:
        raise Escalation(f"actor {actor} needs {SECURITY} to change another employee's email (where two-step "
                         "codes are sent)", actor=actor)


def check_unplaced_employee_write(bundle: PolicyBundle, actor: str, actor_tenants: Iterable[TenantDirectory],
                                  email_changed: bool) -> None:
    """An employee who is a member nowhere: no scope of theirs to check, so the actor's own:
    ``access:manage`` at one location at least (and ``security:manage`` there for an email change)."""
    needed = {MANAGE, SECURITY} if email_changed else {MANAGE}
    for directory in actor_tenants:
        engine = TenantEngine(bundle, directory)
        for location in sorted(directory.locations):
            if needed <= actor_rights(engine, actor, [location]):
                return
    raise Escalation(f"actor {actor} does not hold {' and '.join(sorted(needed))} anywhere", actor=actor)


def _email(directory: TenantDirectory, employee: str) -> str | None:
    person = directory.employees.get(employee)
    return person.email if person else None


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
