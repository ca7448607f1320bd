"""Moving legacy users to employees with roles (issue 14): plan, report, and apply per tenant.

``LegacyMigration(store, bundle, rule).run(users, apply=...)``:

1. resolves every location and chain the users name (an unknown one is a 400 naming the line);
2. fits roles and overrides to each membership (``policy.migration``);
3. builds each touched tenant as it would be after the migration and validates every planned
   membership there as the directory API does (``policy.rules``): all before writing;
4. dry run: answers the plan and a transition report (``policy.seat_transition``) per chain
   and standalone location touched, computed on the planned directories; nothing is stored;
5. apply: writes each tenant atomically (``DirectoryStore.put_migrated``: one Lua call under
   WATCH, only what differs, so a re-run writes nothing), hands each write to ``on_applied``
   (the caller audits it and records seats), and reports the seats as stored.

Imports policy and store only; the caller wires audit and seat history through ``on_applied``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sidecar.errors import BadRequest
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.engine import TenantEngine
from sidecar.policy.migration import (
    LegacyUser,
    PlannedEmployee,
    PlannedMembership,
    apply_plan,
    parse_users,
    plan_user,
    scope_of,
)
from sidecar.policy.rules import validate_membership
from sidecar.policy.seat_transition import Transition, transition
from sidecar.policy.seats import Scope, SeatCounter
from sidecar.policy.tenant import Tenant
from sidecar.store.directory import DirectoryStore, MigratedTenant

OnApplied = Callable[[MigratedTenant], None]


@dataclass(frozen=True)
class MigrationResult:
    applied: bool
    employees: list[PlannedEmployee]
    seats: list[Transition]
    writes: list[MigratedTenant]

    def to_json(self) -> dict[str, Any]:
        return {"applied": self.applied, "employees": [e.to_json() for e in self.employees],
                "seats": [s.to_json() for s in self.seats],
                "revisions": {str(w.tenant): w.revision for w in self.writes if w.revision is not None}}


def read_lines(lines: Iterable[str]) -> Iterator[tuple[int, object]]:
    """JSON Lines to ``(line number, value)``; a line that is not JSON is a 400 naming it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"line {number}: not JSON ({exc.msg})", line=number) from None


class LegacyMigration:
    def __init__(self, store: DirectoryStore, bundle: PolicyBundle, rule: str) -> None:
        self.store = store
        self.bundle = bundle
        self.rule = rule
        self.templates = {name: t.rights for name, t in bundle.templates.items()}

    def parse(self, records: Iterable[tuple[int, object]]) -> list[LegacyUser]:
        return parse_users(records, self.bundle.catalogue.names())

    def run(self, users: list[LegacyUser], *, apply: bool, on_applied: OnApplied | None = None) -> MigrationResult:
        chain_of, tenant_of = self._resolve(users)
        planned = [plan_user(user, chain_of, self.templates) for user in users]
        by_tenant: dict[Tenant, list[PlannedEmployee]] = {}
        for person in planned:
            mine: dict[Tenant, list[PlannedMembership]] = {}
            for m in person.memberships:
                mine.setdefault(tenant_of[(m.where, m.chain_wide)], []).append(m)
            for tenant, memberships in mine.items():
                by_tenant.setdefault(tenant, []).append(PlannedEmployee(person.employee, tuple(memberships)))
        engines: dict[Tenant, TenantEngine] = {}
        for tenant, people in sorted(by_tenant.items()):  # every tenant is validated before anything is written
            desired = apply_plan(self.store.load_tenant(tenant), people)
            for person in people:
                for m in person.memberships:
                    validate_membership(desired, m.membership, scope_of(m), self.bundle)
            engines[tenant] = TenantEngine(self.bundle, desired)
        writes: list[MigratedTenant] = []
        if apply:
            for tenant, people in sorted(by_tenant.items()):
                write = self.store.put_migrated(tenant, people)
                writes.append(write)
                if write.revision is not None and on_applied is not None:
                    on_applied(write)
                engines[tenant] = TenantEngine(self.bundle, self.store.load_tenant(tenant))
        seats = [self._report(engine) for _, engine in sorted(engines.items())]
        return MigrationResult(apply, planned, seats, writes)

    def _report(self, engine: TenantEngine) -> Transition:
        directory = engine.directory
        scope = Scope(directory.tenant.kind, directory.tenant.id)
        return transition(SeatCounter(engine, self.rule), scope)

    def _resolve(self, users: list[LegacyUser]) -> tuple[dict[str, str | None], dict[tuple[str, bool], Tenant]]:
        """Each named location's chain, and the tenant of each (place, chain-wide); 400 naming the line."""
        chain_of: dict[str, str | None] = {}
        tenant_of: dict[tuple[str, bool], Tenant] = {}
        for user in users:
            for m in user.memberships:
                key = (m.where, m.chain_wide)
                if key in tenant_of:
                    continue
                if m.chain_wide:
                    if self.store.chain(m.where) is None:
                        raise BadRequest(f"line {user.line}: chain {m.where} does not exist", line=user.line,
                                         field="chain")
                    tenant_of[key] = Tenant.chain(m.where)
                else:
                    location = self.store.location(m.where)
                    if location is None:
                        raise BadRequest(f"line {user.line}: location {m.where} does not exist", line=user.line,
                                         field="location")
                    chain_of[m.where] = location.chain
                    tenant_of[key] = location.tenant
        return chain_of, tenant_of


__all__ = ["LegacyMigration", "MigrationResult", "read_lines"]
