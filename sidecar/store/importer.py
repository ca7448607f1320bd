"""Bulk import of a directory from JSON Lines, for first loads and migrations.

One record per line, ``kind`` first: ``chain`` {id, owner?}, ``location`` {id, chain, owner?},
``employee`` {id, active, email?, name?}, ``membership`` {location, employee, roles, allow?,
deny?, provides_services?}, ``chain_membership`` {chain, employee, roles, allow?, deny?},
``role`` {chain | location, role, rights, inherits?}. The whole file is validated first (an
error names the line and changes nothing), then written in pipelined batches; one change entry
per tenant tells every replica.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sidecar.errors import SidecarError
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.directory import (
    CHAIN_SCOPE,
    CustomRole,
    Membership,
    check_id,
)
from sidecar.policy.tenant import NO_TENANT, Tenant
from sidecar.store.connection import translated_errors
from sidecar.store.directory import (
    CHANGES_MAXLEN,
    CHANGES_STREAM,
    DirectoryStore,
    _dumps,
    chain_key,
    emp_key,
    loc_key,
    tenant_key,
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
            pipe.sadd(f"sc:emp:{employee}:tenants", *tenants)
            pending += 1
            flush()
        flush(force=True)
        progress("written; announcing the change to replicas")
        touched = sorted(key.removeprefix("sc:t:") for key in plan.hashes)
        revision = "0-0"
        for start in range(0, max(len(touched), 1), 200):
            chunk = touched[start:start + 200] or [NO_TENANT]
            fields_ = ["kind", "import", "subject", "import", "tenants", " ".join(chunk), "employees", "*"]
            revision = store._apply(keys=[CHANGES_STREAM],
                                    args=["[]", json.dumps(chunk), json.dumps(fields_), CHANGES_MAXLEN]).decode()
    return {"revision": revision, "tenants": len(touched), **plan.counts}


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
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a record must be a JSON object")
            kind = record.get("kind")
            if kind == "chain":
                chain = check_id(record.get("id"), "id")
                chains.add(chain)
                plan.strings[chain_key(chain)] = _dumps({"owner": _opt_id(record, "owner")})
                plan.hashes[tenant_key(Tenant.chain(chain))]  # the tenant exists
            elif kind == "location":
                location = check_id(record.get("id"), "id")
                in_chain = _opt_id(record, "chain")
                if in_chain is not None and in_chain not in chains:
                    chains.add(in_chain)
                    plan.strings.setdefault(chain_key(in_chain), _dumps({"owner": None}))
                location_chain[location] = in_chain
                plan.strings[loc_key(location)] = _dumps({"chain": in_chain, "owner": _opt_id(record, "owner")})
                tenant = Tenant.chain(in_chain) if in_chain else Tenant.location(location)
                plan.hashes[tenant_key(tenant)][f"loc:{location}"] = "1"
            elif kind == "employee":
                employee = check_id(record.get("id"), "id")
                active = record.get("active", True)
                if not isinstance(active, bool):
                    raise ValueError("active must be true or false")
                employees.add(employee)
                plan.strings[emp_key(employee)] = _dumps(
                    {"active": active, "email": record.get("email"), "name": record.get("name")})
            elif kind in ("membership", "chain_membership", "role"):
                deferred.append((number, record))
                continue  # counted once planned, below
            else:
                raise ValueError(f"unknown kind {kind!r}")
            plan.counts[kind] += 1
        except (ValueError, SidecarError) as exc:
            raise InvalidImport(f"line {number}: {_message(exc)}") from None
    deferred.sort(key=lambda item: item[1]["kind"] != "role")  # roles first: memberships name them
    for number, record in deferred:
        try:
            _plan_deferred(store, bundle, plan, record, location_chain, chains, employees)
            plan.counts[record["kind"]] += 1
        except (ValueError, SidecarError, KeyError) as exc:
            raise InvalidImport(f"line {number}: {_message(exc)}") from None
    return plan


def _plan_deferred(store: DirectoryStore, bundle: PolicyBundle, plan: _Plan, record: dict[str, Any],
                   location_chain: dict[str, str | None], chains: set[str], employees: set[str]) -> None:
    kind = record["kind"]
    body = {k: v for k, v in record.items() if k not in ("kind", "location", "chain", "employee", "role")}
    if kind == "role":
        name = check_id(record.get("role"), "role")
        if name in bundle.templates:
            raise ValueError(f"{name} is a role template's name")
        if record.get("chain"):
            chain = check_id(record["chain"], "chain")
            tenant, scope = Tenant.chain(chain), CHAIN_SCOPE
        else:
            location = check_id(record.get("location"), "location")
            tenant, scope = _tenant_of(store, location, location_chain), location
        role = CustomRole.from_json(name, scope, body)
        _known(bundle, role.rights)
        plan.hashes[tenant_key(tenant)][f"role:{scope}:{name}"] = _dumps(
            {"rights": list(role.rights), "inherits": list(role.inherits)})
        return
    employee = check_id(record.get("employee"), "employee")
    if employee not in employees and store.employee(employee) is None:
        raise ValueError(f"employee {employee} is neither in the file nor in the directory")
    chain_wide = kind == "chain_membership"
    membership = Membership.from_json(body, chain_wide=chain_wide)
    _known(bundle, [*membership.allow, *membership.deny])
    if chain_wide:
        chain = check_id(record.get("chain"), "chain")
        if chain not in chains and store.chain(chain) is None:
            raise ValueError(f"chain {chain} is neither in the file nor in the directory")
        tenant, field_ = Tenant.chain(chain), f"cm:{employee}"
    else:
        location = check_id(record.get("location"), "location")
        tenant, field_ = _tenant_of(store, location, location_chain), f"m:{location}:{employee}"
    unknown_roles = [r for r in membership.roles
                     if r not in bundle.templates and not _custom_role_known(plan, tenant, r)]
    if unknown_roles:
        raise ValueError(f"unknown roles {unknown_roles}")
    plan.hashes[tenant_key(tenant)][field_] = _dumps(membership.to_json(chain_wide=chain_wide))
    plan.member_of[employee].add(tenant)


def _custom_role_known(plan: _Plan, tenant: str, role: str) -> bool:
    return any(f.startswith("role:") and f.endswith(f":{role}") for f in plan.hashes.get(tenant_key(tenant), {}))


def _tenant_of(store: DirectoryStore, location: str, location_chain: dict[str, str | None]) -> Tenant:
    if location in location_chain:
        chain = location_chain[location]
        return Tenant.chain(chain) if chain else Tenant.location(location)
    found = store.location(location)
    if found is None:
        raise ValueError(f"location {location} is neither in the file nor in the directory")
    return found.tenant


def _opt_id(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    return None if value is None else check_id(value, name)


def _known(bundle: PolicyBundle, rights: Iterable[str]) -> None:
    unknown = bundle.catalogue.unknown(rights)
    if unknown:
        raise ValueError(f"unknown rights {unknown}")


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, SidecarError) else str(exc)
