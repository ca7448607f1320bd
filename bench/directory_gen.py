"""A seeded salon directory in JSON Lines for ``sidecar import FILE``, plus the check bodies.

``python -m bench.directory_gen PRESET OUT.jsonl [--seed N] [--bodies-dir DIR]``

Presets (chains x locations per chain x employees per chain): ``large`` 500 x 10 x 200
(100,000 employees, 5,000 locations), ``billing`` 1 x 50 x 2,000, ``small`` 5 x 4 x 50.
The same preset and seed give the same bytes. Records, one JSON object a line, in this order:
chains, locations, employees, location memberships, chain memberships::

    {"kind":"chain","id":"ch-1","owner":"e-1"}
    {"kind":"location","id":"l-1","chain":"ch-1"}
    {"kind":"employee","id":"e-1","active":true,"email":"e-1@example.test","name":"..."}
    {"kind":"membership","location":"l-1","employee":"e-2","roles":["administrator"],
     "allow":[],"deny":[],"provides_services":false}
    {"kind":"chain_membership","chain":"ch-1","employee":"e-1","roles":["owner"],"allow":[],"deny":[]}

Each chain: its first employee is the owner (chain-wide ``owner``, and the chain's designated
owner); about one chain in three has one or two chain-wide ``call_center`` operators; every
location's first staff member is an administrator; the rest are mostly service providers, with
a few managers, accountants, marketers, SMM managers, viewers, system managers and stylists
with no role at all. Location staff work at 1.3 locations on average; about 2% of memberships
carry an allow or deny override; about 2% of employees are inactive.

The bodies (``check_single`` and ``check_batch_50``, each with an ``.expect.json``) ask about the
first active administrator without overrides (normally the one of ``l-1``) at that location;
the expected answers are computed from the generated memberships with :mod:`bench.rights`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bench.rights import PLAIN_RIGHTS, decide, effective_rights


@dataclass(frozen=True)
class Preset:
    chains: int
    locations_per_chain: int
    employees_per_chain: int


PRESETS = {
    "large": Preset(500, 10, 200),
    "billing": Preset(1, 50, 2_000),
    "small": Preset(5, 4, 50),
}
DEFAULT_SEED = 42
BATCH_SIZE = 50

# the job of a location staff member beyond each location's first administrator, with its
# weight; "" = a stylist with no role at all (provides services, holds no right)
JOB_MIX = {
    "service_provider": 72,
    "administrator": 7,
    "manager": 3,
    "accountant": 3,
    "marketer": 2,
    "smm_manager": 2,
    "viewer": 4,
    "system_manager": 1,
    "": 3,
}
SERVES_ANYWAY = 0.05  # a manager or administrator who also takes clients
EXTRA_LOCATION = 0.3  # -> 1.3 locations per location staff member
CALL_CENTER_CHAINS = 1 / 3
OVERRIDE_RATE = 0.02
INACTIVE_RATE = 0.02
# role -> plausible overrides (kind, right); other roles draw from "*"
OVERRIDES: dict[str, tuple[tuple[str, str], ...]] = {
    "service_provider": (("allow", "payment:process"),),
    "administrator": (("allow", "payment:refund"), ("deny", "payment:process")),
    "manager": (("deny", "payment:refund"), ("deny", "client:export")),
    "accountant": (("allow", "payment:process"), ("allow", "payment:refund")),
    "marketer": (("deny", "client:export"),),
    "*": (("allow", "payment:process"), ("deny", "client:export")),
}
FIRST = ("Anna", "Maria", "Olga", "Irina", "Elena", "Sofia", "Daria", "Alina", "Ivan", "Pavel", "Nina", "Lev")
LAST = ("Petrova", "Ivanova", "Smirnova", "Kuznetsova", "Popova", "Sokolova", "Novak", "Garcia", "Rossi")


@dataclass
class Membership:
    scope: str  # location id or chain id
    employee: str
    roles: list[str]
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    provides_services: bool = False


@dataclass
class Directory:
    chains: list[tuple[str, str]] = field(default_factory=list)  # (chain, owner)
    locations: list[tuple[str, str]] = field(default_factory=list)  # (location, chain)
    employees: list[tuple[str, bool, str]] = field(default_factory=list)  # (id, active, name)
    memberships: list[Membership] = field(default_factory=list)
    chain_memberships: list[Membership] = field(default_factory=list)


def generate(preset: Preset, seed: int = DEFAULT_SEED) -> Directory:
    rng = random.Random(seed)
    directory = Directory()
    for c in range(1, preset.chains + 1):
        _chain(rng, directory, c, preset)
    return directory


def _chain(rng: random.Random, directory: Directory, c: int, preset: Preset) -> None:
    chain = f"ch-{c}"
    first_location = (c - 1) * preset.locations_per_chain + 1
    locations = [f"l-{first_location + j}" for j in range(preset.locations_per_chain)]
    first_employee = (c - 1) * preset.employees_per_chain + 1
    staff = [f"e-{first_employee + i}" for i in range(preset.employees_per_chain)]
    owner, staff = staff[0], staff[1:]

    directory.chains.append((chain, owner))
    directory.locations.extend((loc, chain) for loc in locations)
    for i, employee in enumerate([owner, *staff]):
        active = i == 0 or rng.random() >= INACTIVE_RATE
        directory.employees.append((employee, active, f"{rng.choice(FIRST)} {rng.choice(LAST)}"))

    directory.chain_memberships.append(Membership(chain, owner, ["owner"]))
    if rng.random() < CALL_CENTER_CHAINS and len(staff) > len(locations) + 2:
        n = rng.randint(1, 2)
        operators, staff = staff[:n], staff[n:]
        directory.chain_memberships.extend(Membership(chain, e, ["call_center"]) for e in operators)

    for i, employee in enumerate(staff):
        job = "administrator" if i < len(locations) else rng.choices(list(JOB_MIX), list(JOB_MIX.values()))[0]
        at = [locations[i % len(locations)]]
        if len(locations) > 1 and rng.random() < EXTRA_LOCATION:
            at.append(rng.choice([loc for loc in locations if loc != at[0]]))
        for location in at:
            serves = job in ("service_provider", "") or rng.random() < SERVES_ANYWAY
            member = Membership(location, employee, [job] if job else [], provides_services=serves)
            if i >= len(locations) and rng.random() < OVERRIDE_RATE:
                kind, right = rng.choice(OVERRIDES.get(job, OVERRIDES["*"]))
                getattr(member, kind).append(right)
            directory.memberships.append(member)


def write_jsonl(directory: Directory, out: TextIO) -> Counter[str]:
    """Write the records in import order; counts per kind."""
    counts: Counter[str] = Counter()

    def emit(record: dict[str, Any]) -> None:
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        counts[record["kind"]] += 1

    for chain, owner in directory.chains:
        emit({"kind": "chain", "id": chain, "owner": owner})
    for location, chain in directory.locations:
        emit({"kind": "location", "id": location, "chain": chain})
    for employee, active, name in directory.employees:
        emit(
            {
                "kind": "employee",
                "id": employee,
                "active": active,
                "email": f"{employee}@example.test",
                "name": name,
            }
        )
    for m in directory.memberships:
        emit(
            {
                "kind": "membership", "location": m.scope, "employee": m.employee, "roles": m.roles,
                "allow": m.allow, "deny": m.deny, "provides_services": m.provides_services,
            }
        )  # fmt: skip
    for m in directory.chain_memberships:
        emit(
            {
                "kind": "chain_membership", "chain": m.scope, "employee": m.employee, "roles": m.roles,
                "allow": m.allow, "deny": m.deny,
            }
        )  # fmt: skip
    return counts


def effective_at(directory: Directory, employee: str, location: str) -> frozenset[str]:
    """The employee's effective rights at ``location`` (its memberships and its chain's)."""
    chain = dict(directory.locations)[location]
    active = next(a for e, a, _ in directory.employees if e == employee)
    held = [m for m in directory.memberships if m.employee == employee and m.scope == location]
    held += [m for m in directory.chain_memberships if m.employee == employee and m.scope == chain]
    return effective_rights(active=active, memberships=[(m.roles, m.allow, m.deny) for m in held])


def bench_subject(directory: Directory) -> tuple[str, str]:
    """(employee, location): the first active administrator with no override anywhere."""
    active = {e for e, a, _ in directory.employees if a}
    overridden = {m.employee for m in directory.memberships + directory.chain_memberships if m.allow or m.deny}
    for m in directory.memberships:
        if m.roles == ["administrator"] and m.employee in active and m.employee not in overridden:
            return m.employee, m.scope
    raise ValueError("no active administrator without overrides")


def check_bodies(directory: Directory, seed: int = DEFAULT_SEED) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (request body, expected answer) for POST /v1/check and /v1/check/batch.

    Only rights that are neither critical nor MFA-gated are asked, so no check writes an audit
    event and none depends on context: the bench measures decisions.
    """
    employee, location = bench_subject(directory)
    effective = effective_at(directory, employee, location)
    single = {"employee": employee, "location": location, "resource": "appointment", "action": "create"}
    order = list(PLAIN_RIGHTS)
    random.Random(seed).shuffle(order)
    rights = list(itertools.islice(itertools.cycle(order), BATCH_SIZE))
    checks = [dict(zip(("resource", "action"), right.split(":"), strict=True)) for right in rights]
    expected = [decide(right, effective) for right in rights]
    return {
        "check_single": (single, {"allowed": decide("appointment:create", effective)}),
        "check_batch_50": (
            {"employee": employee, "location": location, "checks": checks},
            {"allow": sum(expected), "deny": len(expected) - sum(expected), "results": expected},
        ),
    }


def summary(directory: Directory, counts: Counter[str]) -> dict[str, Any]:
    per_employee = Counter(m.employee for m in directory.memberships)
    roles = Counter(role or "(none)" for m in directory.memberships for role in (m.roles or [""]))
    roles.update(f"{m.roles[0]} (chain-wide)" for m in directory.chain_memberships)
    return {
        "records": dict(counts),
        "locations_per_location_staff": round(sum(per_employee.values()) / max(1, len(per_employee)), 3),
        "chains_with_call_center": len({m.scope for m in directory.chain_memberships if m.roles == ["call_center"]}),
        "inactive_employees": sum(1 for _, active, _ in directory.employees if not active),
        "overrides": sum(len(m.allow) + len(m.deny) for m in directory.memberships),
        "provides_services": sum(m.provides_services for m in directory.memberships),
        "roles": dict(roles.most_common()),
    }


def write_all(preset: str, out: Path, *, seed: int = DEFAULT_SEED, bodies_dir: Path | None = None) -> dict[str, Any]:
    """Generate ``preset`` into ``out`` and the bodies into ``bodies_dir``; the summary."""
    directory = generate(PRESETS[preset], seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        counts = write_jsonl(directory, f)
    bodies_dir = bodies_dir or out.parent
    bodies_dir.mkdir(parents=True, exist_ok=True)
    bodies = check_bodies(directory, seed)
    for name, (body, expect) in bodies.items():
        (bodies_dir / f"{name}.json").write_text(json.dumps(body, separators=(",", ":")))
        (bodies_dir / f"{name}.expect.json").write_text(json.dumps(expect))
    info = {"preset": preset, "seed": seed, "file": str(out), "bodies_dir": str(bodies_dir)}
    info |= summary(directory, counts)
    single = bodies["check_single"][0]
    info["bench_subject"] = {"employee": single["employee"], "location": single["location"]}
    info["batch_expect"] = {k: bodies["check_batch_50"][1][k] for k in ("allow", "deny")}
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.directory_gen", description=__doc__.split("\n")[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("out", type=Path, help="the JSON Lines file to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--bodies-dir", type=Path, help="where the check bodies go (default: next to OUT)")
    args = parser.parse_args(argv)
    info = write_all(args.preset, args.out, seed=args.seed, bodies_dir=args.bodies_dir)
    json.dump(info, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
