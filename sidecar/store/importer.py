"""Bulk import of a directory from JSON Lines, for first loads and migrations.

One record per line, ``kind`` first: ``chain`` {id, owner?}, ``location`` {id, chain, owner?},
``employee`` {id, active, email?, name?}, ``membership`` {location, employee, roles, allow?,
deny?, provides_services?}, ``chain_membership`` {chain, employee, roles, allow?, deny?},
``role`` {chain | location, role, rights, inherits?}. The whole file is validated first (an
error names the line and changes nothing), then written in pipelined batches; one change entry
per tenant tells every replica (:meth:`DirectoryStore.announce`).

Roles and memberships pass the API's own rules (:mod:`sidecar.policy.rules`) against each
tenant as the import would leave it: what Redis already holds plus the file's records. A
tenant is read from Redis only when a record names a custom role in it, so a first load of
template roles costs no reads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.errors import SidecarError
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.directory import (
    CHAIN_SCOPE,
    Chain,
    CustomRole,
    Employee,
    Location,
    Membership,
    TenantDirectory,
    check_id,
)
from sidecar.policy.rules import check_rights, check_role_name, validate_custom_role, validate_membership
from sidecar.policy.tenant import Tenant
from sidecar.store.connection import translated_errors
from sidecar.store.directory import (
    DirectoryStore,
    chain_key,
    chain_record,
    emp_key,
    employee_record,
    encode,
    loc_key,
    location_field,
    location_record,
    membership_field,
    membership_record,
    role_field,
    role_record,
    tenant_key,
    tenants_key,
)


class InvalidImport(ValueError):
    """A record that cannot be imported; the message names the line."""


@dataclass
class _Plan:
    strings: dict[str, str] = field(default_factory=dict)  # key -> JSON
    hashes: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    member_of: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def import_lines(store: DirectoryStore, bundle: PolicyBundle, lines: Iterable[str],
                 progress: Callable[[str], None] = lambda _: None, batch: int = 5000) -> dict[str, Any]:
    plan = _validate(store, bundle, lines)
    progress(f"validated {sum(plan.counts.values())} records: {dict(plan.counts)}")
    with translated_errors():
        pipe = store.client.pipeline(transaction=False)
        pending = 0

        def flush(force: bool = False) -> None:
            nonlocal pending
            if pending >= batch or (force and pending):
                pipe.execute()
                pending = 0

        for key, value in plan.strings.items():
            pipe.set(key, value)
            pending += 1
            flush()
        for key, fields in plan.hashes.items():
            items = list(fields.items())
            for start in range(0, len(items), 1000):
                pipe.hset(key, mapping=dict(items[start:start + 1000]))
                pending += 1
                flush()
        for employee, tenants in plan.member_of.items():
            pipe.sadd(tenants_key(employee), *tenants)
            pending += 1
            flush()
        flush(force=True)
    progress("written; announcing the change to replicas")
    touched = sorted(key.removeprefix("sc:t:") for key in plan.hashes)
    revision = store.announce(touched, "import", "import")
    return {"revision": revision, "tenants": len(touched), **plan.counts, "touched": touched}


class _Tenants:
    """Tenants as the import would leave them (Redis, then the file's records), read on first need."""

    def __init__(self, store: DirectoryStore, location_chain: dict[str, str | None]) -> None:
        self.store = store
        self._file_locations: dict[Tenant, list[Location]] = defaultdict(list)
        for location, chain in location_chain.items():
            found = Location(location, chain)
            self._file_locations[found.tenant].append(found)
        self._loaded: dict[Tenant, TenantDirectory] = {}

    def get(self, tenant: Tenant) -> TenantDirectory:
        directory = self._loaded.get(tenant)
        if directory is None:
            directory = self.store.load_tenant(tenant)
            for location in self._file_locations.get(tenant, []):
                directory.locations[location.id] = location
            self._loaded[tenant] = directory
        return directory


_TEMPLATES_ONLY = TenantDirectory(tenant=Tenant.location("-"), revision="0-0", chain=None)


def _validate(store: DirectoryStore, bundle: PolicyBundle, lines: Iterable[str]) -> _Plan:
    plan = _Plan()
    location_chain: dict[str, str | None] = {}
    chains: set[str] = set()
    employees: set[str] = set()
    deferred: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a record must be a JSON object")
            kind = record.get("kind")
            if kind == "chain":
                chain = check_id(record.get("id"), "id")
                chains.add(chain)
                plan.strings[chain_key(chain)] = encode(chain_record(Chain(chain, _opt_id(record, "owner"))))
                plan.hashes[tenant_key(Tenant.chain(chain))]  # the tenant exists
            elif kind == "location":
                location = Location(check_id(record.get("id"), "id"), _opt_id(record, "chain"),
                                    _opt_id(record, "owner"))
                if location.chain is not None and location.chain not in chains:
                    chains.add(location.chain)
                    plan.strings.setdefault(chain_key(location.chain), encode(chain_record(Chain(location.chain))))
                location_chain[location.id] = location.chain
                plan.strings[loc_key(location.id)] = encode(location_record(location))
                plan.hashes[tenant_key(location.tenant)][location_field(location.id)] = "1"
            elif kind == "employee":
                employee = check_id(record.get("id"), "id")
                active = record.get("active", True)
                if not isinstance(active, bool):
                    raise ValueError("active must be true or false")
                employees.add(employee)
                plan.strings[emp_key(employee)] = encode(
                    employee_record(Employee(employee, active, record.get("email"), record.get("name"))))
            elif kind in ("membership", "chain_membership", "role"):
                deferred.append((number, record))
                continue  # counted once planned, below
            else:
                raise ValueError(f"unknown kind {kind!r}")
            plan.counts[kind] += 1
        except (ValueError, SidecarError) as exc:
            raise InvalidImport(f"line {number}: {_message(exc)}") from None
    tenants = _Tenants(store, location_chain)
    roles = [(n, r) for n, r in deferred if r["kind"] == "role"]
    memberships = [(n, r) for n, r in deferred if r["kind"] != "role"]
    planned: list[tuple[int, Tenant, CustomRole]] = []
    for number, record in roles:  # every role first: roles inherit and memberships name each other's
        with _at_line(number):
            tenant, role = _role(store, bundle, record, location_chain)
            tenants.get(tenant).custom_roles[(role.scope, role.name)] = role
            planned.append((number, tenant, role))
    for number, tenant, role in planned:
        with _at_line(number):
            validate_custom_role(tenants.get(tenant), role, bundle)
            plan.hashes[tenant_key(tenant)][role_field(role.scope, role.name)] = encode(role_record(role))
            plan.counts["role"] += 1
    for number, record in memberships:
        with _at_line(number):
            _plan_membership(store, bundle, plan, tenants, record, location_chain, chains, employees)
            plan.counts[record["kind"]] += 1
    return plan


@contextmanager
def _at_line(number: int) -> Iterator[None]:
    """Turn a record's refusal into InvalidImport naming its line."""
    try:
        yield
    except (ValueError, SidecarError, KeyError) as exc:
        raise InvalidImport(f"line {number}: {_message(exc)}") from None


def _role(store: DirectoryStore, bundle: PolicyBundle, record: dict[str, Any],
          location_chain: dict[str, str | None]) -> tuple[Tenant, CustomRole]:
    name = check_id(record.get("role"), "role")
    body = {k: v for k, v in record.items() if k not in ("kind", "location", "chain", "role")}
    if record.get("chain"):
        tenant, scope = Tenant.chain(check_id(record["chain"], "chain")), CHAIN_SCOPE
    else:
        location = check_id(record.get("location"), "location")
        tenant, scope = _tenant_of(store, location, location_chain), location
    role = CustomRole.from_json(name, scope, body)
    check_role_name(role, bundle)
    return tenant, role


def _plan_membership(store: DirectoryStore, bundle: PolicyBundle, plan: _Plan, tenants: _Tenants,
                     record: dict[str, Any], location_chain: dict[str, str | None], chains: set[str],
                     employees: set[str]) -> None:
    body = {k: v for k, v in record.items() if k not in ("kind", "location", "chain", "employee")}
    employee = check_id(record.get("employee"), "employee")
    if employee not in employees and store.employee(employee) is None:
        raise ValueError(f"employee {employee} is neither in the file nor in the directory")
    chain_wide = record["kind"] == "chain_membership"
    membership = Membership.from_json(body, chain_wide=chain_wide)
    if chain_wide:
        chain = check_id(record.get("chain"), "chain")
        if chain not in chains and store.chain(chain) is None:
            raise ValueError(f"chain {chain} is neither in the file nor in the directory")
        tenant, scope = Tenant.chain(chain), CHAIN_SCOPE
    else:
        scope = check_id(record.get("location"), "location")
        tenant = _tenant_of(store, scope, location_chain)
    check_rights(bundle, [*membership.allow, *membership.deny])
    # template roles mean the same in every tenant: only a custom role needs the tenant read
    templates_only = all(r in bundle.templates for r in membership.roles)
    validate_membership(_TEMPLATES_ONLY if templates_only else tenants.get(tenant), membership, scope, bundle)
    plan.hashes[tenant_key(tenant)][membership_field(scope, employee)] = encode(membership_record(membership, scope))
    plan.member_of[employee].add(tenant)


def _tenant_of(store: DirectoryStore, location: str, location_chain: dict[str, str | None]) -> Tenant:
    if location in location_chain:
        return Location(location, location_chain[location]).tenant
    found = store.location(location)
    if found is None:
        raise ValueError(f"location {location} is neither in the file nor in the directory")
    return found.tenant


def _opt_id(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    return None if value is None else check_id(value, name)


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, SidecarError) else str(exc)


class _Overlay:
    """Reads Redis as it would be after the plan is written (``load_tenant``'s reader)."""

    def __init__(self, client: Any, plan: _Plan) -> None:
        self.client = client
        self.plan = plan

    def get(self, key: str) -> bytes | None:
        planned = self.plan.strings.get(key)
        return planned.encode() if planned is not None else self.client.get(key)

    def mget(self, keys: list[str]) -> list[bytes | None]:
        stored = self.client.mget(keys) if keys else []
        return [self.plan.strings[k].encode() if k in self.plan.strings else v for k, v in zip(keys, stored,
                                                                                               strict=True)]

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        fields = dict(self.client.hgetall(key))
        fields.update({f.encode(): v.encode() for f, v in self.plan.hashes.get(key, {}).items()})
        return fields


def preview_import(store: DirectoryStore, bundle: PolicyBundle,
                   lines: Iterable[str]) -> list[tuple[TenantDirectory, TenantDirectory]]:
    """Each tenant the file touches, as stored and as it would be after the import; nothing is written.

    The file is validated exactly as ``import_lines`` validates it (InvalidImport names the line).
    """
    plan = _validate(store, bundle, lines)
    overlay = _Overlay(store.client, plan)
    touched = sorted(Tenant.parse(key.removeprefix("sc:t:")) for key in plan.hashes)
    with translated_errors():
        return [(store.load_tenant(tenant), store.load_tenant(tenant, overlay)) for tenant in touched]
