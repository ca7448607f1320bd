"""Policy test suites: YAML tables of (employee, location, right, expected) over a small directory.

A suite file in ``policies/tests/``::

    name: what this suite shows
    directory:
      chains:            [{id: ch-1, owner: e-1}]
      locations:         [{id: l-1, chain: ch-1}, {id: l-9}]      # no chain: standalone
      employees:         [{id: e-1}, {id: e-2, active: false}]
      memberships:       [{location: l-1, employee: e-2, roles: [administrator], deny: [payment:process],
                           provides_services: true}]
      chain_memberships: [{chain: ch-1, employee: e-1, roles: [owner]}]
      roles:             [{chain: ch-1, role: senior, rights: [...], inherits: [administrator]}]
    cases:
      - {employee: e-2, location: l-1, right: appointment:create, expected: allow}
      - {employee: e-1, location: l-1, right: client:export, expected: deny, reason: mfa_required}
      - {employee: e-1, location: l-1, right: client:export, mfa: true, expected: allow}

Suites run in memory through the same engine and decision code as the server; no Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.errors import SidecarError
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.decisions import decide
from sidecar.policy.directory import (
    CHAIN_SCOPE,
    Chain,
    CustomRole,
    Employee,
    Location,
    Membership,
    TenantDirectory,
)
from sidecar.policy.engine import TenantEngine
from sidecar.policy.files import PolicyFileError, YamlDocument, read_yaml
from sidecar.policy.tenant import Tenant


@dataclass(frozen=True)
class CaseResult:
    suite: str
    line: int | None
    case: dict[str, Any]
    passed: bool
    got: str


def build_directories(spec: dict[str, Any], bundle: PolicyBundle) -> dict[str, TenantDirectory]:
    """Tenants of a small in-memory directory (also used by tests)."""
    tenants: dict[str, TenantDirectory] = {}

    def tenant(name: Tenant, chain: Chain | None) -> TenantDirectory:
        return tenants.setdefault(name, TenantDirectory(tenant=name, revision="0-0", chain=chain))

    chains = {c["id"]: Chain(c["id"], c.get("owner")) for c in spec.get("chains", [])}
    for chain in chains.values():
        tenant(Tenant.chain(chain.id), chain)
    where: dict[str, TenantDirectory] = {}
    for raw in spec.get("locations", []):
        location = Location(raw["id"], raw.get("chain"), raw.get("owner"))
        in_chain = chains.setdefault(location.chain, Chain(location.chain)) if location.chain else None
        t = tenant(location.tenant, in_chain)
        t.locations[location.id] = location
        where[location.id] = t
    people = {e["id"]: Employee(e["id"], e.get("active", True), e.get("email"), e.get("name"))
              for e in spec.get("employees", [])}
    for raw in spec.get("roles", []):
        body = {k: raw[k] for k in ("rights", "inherits") if k in raw}
        if raw.get("chain"):
            tenant(Tenant.chain(raw["chain"]), chains.get(raw["chain"])).custom_roles[(CHAIN_SCOPE, raw["role"])] = \
                CustomRole.from_json(raw["role"], CHAIN_SCOPE, body)
        else:
            where[raw["location"]].custom_roles[(raw["location"], raw["role"])] = \
                CustomRole.from_json(raw["role"], raw["location"], body)
    for raw in spec.get("memberships", []):
        body = {k: v for k, v in raw.items() if k not in ("location", "employee")}
        t = where[raw["location"]]
        t.memberships[(raw["employee"], raw["location"])] = Membership.from_json(body)
        t.employees[raw["employee"]] = people[raw["employee"]]
    for raw in spec.get("chain_memberships", []):
        body = {k: v for k, v in raw.items() if k not in ("chain", "employee")}
        t = tenant(Tenant.chain(raw["chain"]), chains.get(raw["chain"]))
        t.chain_memberships[raw["employee"]] = Membership.from_json(body, chain_wide=True)
        t.employees[raw["employee"]] = people[raw["employee"]]
    for t in tenants.values():
        unknown = bundle.catalogue.unknown(
            [r for m in [*t.memberships.values(), *t.chain_memberships.values()] for r in (*m.allow, *m.deny)]
            + [r for role in t.custom_roles.values() for r in role.rights])
        if unknown:
            raise ValueError(f"unknown rights {unknown}")
    return tenants


def run_suite(file: Path, bundle: PolicyBundle) -> list[CaseResult]:
    doc = read_yaml(file)
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("cases"), list):
        raise doc.error((), "a suite needs `directory:` and a list of `cases:`")
    name = str(doc.data.get("name", file.stem))
    try:
        tenants = build_directories(doc.data.get("directory") or {}, bundle)
    except (KeyError, ValueError, TypeError, SidecarError) as exc:
        raise doc.error(("directory",), f"bad directory: {getattr(exc, 'message', exc)}") from None
    engines = {name_: TenantEngine(bundle, t) for name_, t in tenants.items()}
    by_location = {loc: engines[t.tenant] for t in tenants.values() for loc in t.locations}
    return [_run_case(doc, name, index, case, by_location) for index, case in enumerate(doc.data["cases"])]


def _run_case(doc: YamlDocument, suite: str, index: int, case: Any,
              by_location: dict[str, TenantEngine]) -> CaseResult:
    path = ("cases", index)
    if not isinstance(case, dict) or case.get("expected") not in ("allow", "deny"):
        raise doc.error(path, "a case needs employee, location, right and expected: allow | deny")
    decision = decide(by_location.get(case.get("location", "")), str(case.get("employee")),
                      str(case.get("location")), str(case.get("right")), mfa=bool(case.get("mfa", False)))
    got = "allow" if decision.allowed else "deny"
    passed = got == case["expected"] and case.get("reason", decision.reason) == decision.reason
    return CaseResult(suite, doc.lines.get(path), case, passed, f"{got} ({decision.reason})")


def run_suites(directory: Path, bundle: PolicyBundle) -> list[CaseResult]:
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not files:
        raise PolicyFileError(directory, None, "no policy test suites (*.yaml) found")
    results: list[CaseResult] = []
    for file in files:
        results.extend(run_suite(file, bundle))
    return results


__all__ = ["CaseResult", "build_directories", "run_suite", "run_suites"]
