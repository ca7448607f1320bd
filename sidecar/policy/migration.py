"""Legacy users to employees with roles (issue 14): parsing the input and fitting roles to rights.

Pure: imports only ``policy`` and ``errors``; the store and the routes drive it.

**Input.** One legacy user per line (JSON Lines for the CLI, a list for the API)::

    {"id", "name"?, "email"?, "active"?, "memberships": [{"location" | "chain", "rights": [...],
     "provides_services"?}]}

A bad user is a ``BadRequest`` naming its line (``line N``: the Nth non-empty line, or the
Nth user of the API's list) and the field; nothing is planned from a file with a bad line.

**Legacy rights at a location** are those of the user's membership there plus those of their
chain-wide membership in the location's chain (a chain membership applied at every location).

**Fitting.** For each membership, :func:`fit` chooses role templates plus allow/deny overrides
whose effective rights are exactly the legacy rights: ``(have | rights of roles | allow) - deny
== target``, ``have`` being what a chain-wide membership already grants at a location. Of
every combination of the templates that grant something still missing (at most 2^10) it keeps
the one with the fewest overrides; ties go to fewer denies (a template that grants nothing
extra), then fewer roles, then names. The search is exhaustive in effect but skips branches
that cannot win (bounded on bitmasks: about 0.1 ms a fit instead of 5 ms; the tests compare it
with the plain search). Rights in ``allow``/``deny`` are exactly the
rights that needed an override. A chain-wide membership never denies a right that one of the
user's location memberships in that chain needs (deny wins everywhere), so those templates are
not candidates there; plain allows are always a solution, so a fit always exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sidecar.errors import BadRequest, SidecarError
from sidecar.policy.directory import CHAIN_SCOPE, Employee, Membership, TenantDirectory, check_id

MAX_USERS = 100_000
_USER_FIELDS = {"id", "name", "email", "active", "memberships"}
_MEMBERSHIP_FIELDS = {"location", "chain", "rights", "provides_services"}


@dataclass(frozen=True)
class LegacyMembership:
    where: str  # a location id, or a chain id when chain_wide
    chain_wide: bool
    rights: frozenset[str]
    provides_services: bool = False


@dataclass(frozen=True)
class LegacyUser:
    line: int
    employee: Employee
    memberships: tuple[LegacyMembership, ...]


@dataclass(frozen=True)
class Fit:
    roles: tuple[str, ...]
    allow: tuple[str, ...]
    deny: tuple[str, ...]

    @property
    def overrides(self) -> int:
        return len(self.allow) + len(self.deny)


@dataclass(frozen=True)
class PlannedMembership:
    where: str
    chain_wide: bool
    membership: Membership

    def to_json(self) -> dict[str, Any]:
        m = self.membership
        return {"chain" if self.chain_wide else "location": self.where, "roles": list(m.roles),
                "allow": list(m.allow), "deny": list(m.deny), "provides_services": m.provides_services}


@dataclass(frozen=True)
class PlannedEmployee:
    employee: Employee
    memberships: tuple[PlannedMembership, ...]

    def to_json(self) -> dict[str, Any]:
        return {"employee": self.employee.id, "memberships": [m.to_json() for m in self.memberships]}


# -- input --------------------------------------------------------------------------------------
def parse_users(records: Iterable[tuple[int, object]], known_rights: Iterable[str]) -> list[LegacyUser]:
    """Validate every record (``(line, parsed JSON)``); the first bad one raises, naming its line."""
    rights = frozenset(known_rights)
    users: list[LegacyUser] = []
    seen: set[str] = set()
    for line, record in records:
        try:
            user = _user(line, record, rights)
            if user.employee.id in seen:
                raise BadRequest(f"user {user.employee.id} appears twice", field="id")
        except SidecarError as exc:
            raise BadRequest(f"line {line}: {exc.message}", line=line, **exc.details) from None
        seen.add(user.employee.id)
        users.append(user)
        if len(users) > MAX_USERS:
            raise BadRequest(f"at most {MAX_USERS} users at once", field="users")
    return users


def _user(line: int, record: object, rights: frozenset[str]) -> LegacyUser:
    if not isinstance(record, Mapping):
        raise BadRequest("a legacy user must be a JSON object")
    extra = sorted(set(record) - _USER_FIELDS)
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    employee = check_id(record.get("id"), "id")
    name, email, active = record.get("name"), record.get("email"), record.get("active", True)
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise BadRequest("name must be a string of at most 200 characters", field="name")
    if email is not None and not _is_address(email):
        raise BadRequest("email must be one plain email address", field="email")
    if not isinstance(active, bool):
        raise BadRequest("active must be true or false", field="active")
    raw = record.get("memberships", [])
    if not isinstance(raw, list) or len(raw) > 1000:
        raise BadRequest("memberships must be a list (at most 1000)", field="memberships")
    memberships: list[LegacyMembership] = []
    for item in raw:
        membership = _membership(item, rights)
        if any((m.where, m.chain_wide) == (membership.where, membership.chain_wide) for m in memberships):
            raise BadRequest(f"two memberships at {membership.where}", field="memberships")
        memberships.append(membership)
    return LegacyUser(line, Employee(employee, active, email, name), tuple(memberships))


def _membership(item: object, rights: frozenset[str]) -> LegacyMembership:
    if not isinstance(item, Mapping):
        raise BadRequest("each membership must be an object {location | chain, rights, provides_services?}",
                         field="memberships")
    extra = sorted(set(item) - _MEMBERSHIP_FIELDS)
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    if ("location" in item) == ("chain" in item):
        raise BadRequest("each membership names exactly one of location or chain", field="memberships")
    chain_wide = "chain" in item
    where = check_id(item["chain"] if chain_wide else item["location"], "chain" if chain_wide else "location")
    listed = item.get("rights")
    if not isinstance(listed, list) or not all(isinstance(r, str) for r in listed):
        raise BadRequest("rights must be a list of catalogue rights", field="rights")
    unknown = sorted(set(listed) - rights)
    if unknown:
        raise BadRequest(f"unknown rights {unknown}", field="rights", rights=unknown)
    serves = item.get("provides_services", False)
    if not isinstance(serves, bool):
        raise BadRequest("provides_services must be true or false", field="provides_services")
    if chain_wide and serves:
        raise BadRequest("provides_services belongs to a location membership, not a chain's",
                         field="provides_services")
    return LegacyMembership(where, chain_wide, frozenset(listed), serves)


def _is_address(value: object) -> bool:
    return (isinstance(value, str) and len(value) <= 254 and value.isprintable() and " " not in value
            and value.count("@") == 1 and "<" not in value and all(value.split("@")))


# -- fitting --------------------------------------------------------------------------------------
def fit(target: frozenset[str], templates: Mapping[str, frozenset[str]], have: frozenset[str] = frozenset(),
        keep: frozenset[str] = frozenset()) -> Fit:
    """Roles plus the fewest overrides with ``(have | roles | allow) - deny == target``.

    ``have`` is granted already (by a chain-wide membership; a subset of ``target``); ``keep``
    are rights that must not be denied (another membership needs them where this one applies).
    """
    return _fit(target, tuple(sorted((n, r) for n, r in templates.items())), have, keep)


@lru_cache(maxsize=4096)
def _fit(target: frozenset[str], templates: tuple[tuple[str, frozenset[str]], ...], have: frozenset[str],
         keep: frozenset[str]) -> Fit:
    """The least ``(overrides, denies, roles, names)`` over every combination of the useful templates.

    Combinations are visited depth first in name order (a combination before its extensions,
    so in the order of their names), on bitmasks of the rights involved. A branch is skipped
    when even its best case cannot beat the best found so far: its denies only grow, and it
    still lacks what neither its templates nor the later ones grant. Ties keep the combination
    found first, whose names come first. The answer is the exhaustive search's.
    """
    missing = target - have
    useful = [(name, rights) for name, rights in templates
              if rights & missing and not ((rights - target) & keep)]
    bit = {right: 1 << i for i, right in enumerate(sorted(target.union(have, *(r for _, r in useful))))}
    wanted = _mask(target, bit)
    masks = [_mask(rights, bit) for _, rights in useful]
    later = [0] * (len(masks) + 1)  # later[i]: what templates i.. can still grant
    for i in range(len(masks) - 1, -1, -1):
        later[i] = later[i + 1] | masks[i]
    best_key: tuple[int, int, int] = (len(bit) + 1, 0, 0)
    best: tuple[int, ...] = ()

    def visit(chosen: tuple[int, ...], granted: int) -> None:
        nonlocal best_key, best
        denies = (granted & ~wanted).bit_count()
        key = ((wanted & ~granted).bit_count() + denies, denies, len(chosen))
        if key < best_key:
            best_key, best = key, chosen
        for i in range(chosen[-1] + 1 if chosen else 0, len(masks)):
            more = granted | masks[i]
            denied = (more & ~wanted).bit_count()
            if ((wanted & ~(more | later[i + 1])).bit_count() + denied, denied, len(chosen) + 1) < best_key:
                visit((*chosen, i), more)

    visit((), _mask(have, bit))
    chosen = [useful[i] for i in best]
    held = have.union(*(rights for _, rights in chosen))
    return Fit(tuple(name for name, _ in chosen), tuple(sorted(target - held)), tuple(sorted(held - target)))


def _mask(rights: Iterable[str], bit: Mapping[str, int]) -> int:
    mask = 0
    for right in rights:
        mask |= bit[right]
    return mask


def legacy_rights_at(user: LegacyUser, location: str, chain: str | None) -> frozenset[str]:
    """The legacy rights a user held at a location: its own membership's plus its chain's."""
    held: frozenset[str] = frozenset()
    for m in user.memberships:
        if (not m.chain_wide and m.where == location) or (m.chain_wide and chain is not None and m.where == chain):
            held |= m.rights
    return held


def plan_user(user: LegacyUser, chain_of: Mapping[str, str | None],
              templates: Mapping[str, frozenset[str]]) -> PlannedEmployee:
    """Memberships for one user; ``chain_of`` maps each location they name to its chain (or None)."""
    chain_rights = {m.where: m.rights for m in user.memberships if m.chain_wide}
    local_needs: dict[str, set[str]] = {}
    for m in user.memberships:
        chain = chain_of.get(m.where) if not m.chain_wide else None
        if chain is not None:
            local_needs.setdefault(chain, set()).update(m.rights)
    planned = []
    for m in user.memberships:
        if m.chain_wide:
            found = fit(m.rights, templates, keep=frozenset(local_needs.get(m.where, ())))
        else:
            chain = chain_of.get(m.where)
            have = chain_rights.get(chain, frozenset()) if chain is not None else frozenset()
            found = fit(m.rights | have, templates, have=have)
        planned.append(PlannedMembership(m.where, m.chain_wide, Membership(
            found.roles, found.allow, found.deny, m.provides_services)))
    return PlannedEmployee(user.employee, tuple(planned))


def apply_plan(directory: TenantDirectory, planned: Iterable[PlannedEmployee]) -> TenantDirectory:
    """A copy of one tenant's directory with the planned employees and their memberships in it."""
    copy = directory.copy()
    for person in planned:
        for m in person.memberships:
            if m.chain_wide and copy.chain is not None and copy.chain.id == m.where:
                copy.chain_memberships[person.employee.id] = m.membership
                copy.employees[person.employee.id] = person.employee
            elif not m.chain_wide and m.where in copy.locations:
                copy.memberships[(person.employee.id, m.where)] = m.membership
                copy.employees[person.employee.id] = person.employee
    return copy


def scope_of(membership: PlannedMembership) -> str:
    """The scope a planned membership's roles are resolved in (validation)."""
    return CHAIN_SCOPE if membership.chain_wide else membership.where


__all__ = ["Fit", "LegacyMembership", "LegacyUser", "PlannedEmployee", "PlannedMembership", "apply_plan", "fit",
           "legacy_rights_at", "parse_users", "plan_user", "scope_of"]
