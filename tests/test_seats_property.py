"""On random directories, the seat answer equals a plain recount from casbin's own decisions.

The oracle asks casbin ``enforce`` directly, one billable right at a time, at each location of
the scope where the employee is a member, and applies DOMAIN.md's rule written out plainly;
it shares nothing with ``SeatCounter`` but the directory and the compiled model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.policy.bundle import load_bundle
from sidecar.policy.engine import TenantEngine
from sidecar.policy.seats import Scope, SeatCounter
from sidecar.policy.suites import build_directories

pytestmark = pytest.mark.e2e  # real processes / many generated examples: `pytest -m 'not e2e'` skips it

BUNDLE = load_bundle(Path(__file__).resolve().parent.parent / "policies")
LOCATIONS = ("l-1", "l-2", "l-3")
PEOPLE = ("e-1", "e-2", "e-3", "e-4", "e-5", "e-6")
ROLES = ("owner", "manager", "administrator", "call_center", "service_provider", "accountant", "marketer",
         "viewer", "senior", "front", "founder")
OVERRIDES = ("appointment:create", "payment:process", "payment:refund", "deposit:topup", "client:view",
             "marketing:send")
CUSTOM = [  # chain roles senior/founder, and l-1's own role front
    {"chain": "ch-1", "role": "senior", "rights": ["client:view"], "inherits": ["service_provider"]},
    {"chain": "ch-1", "role": "founder", "rights": [], "inherits": ["owner"]},
    {"location": "l-1", "role": "front", "rights": ["deposit:topup"], "inherits": ["viewer"]},
]
OWNER_ROLES = {"owner", "founder"}  # founder inherits owner


def membership() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "roles": st.lists(st.sampled_from(ROLES), max_size=2, unique=True),
        "allow": st.lists(st.sampled_from(OVERRIDES), max_size=2, unique=True),
        "deny": st.lists(st.sampled_from(OVERRIDES), max_size=2, unique=True),
    })


@st.composite
def directories(draw: st.DrawFn) -> dict[str, Any]:
    members = []
    for employee in PEOPLE:
        for location in draw(st.lists(st.sampled_from(LOCATIONS), max_size=3, unique=True)):
            body = draw(membership())
            if location != "l-1":  # `front` exists only at l-1
                body["roles"] = [r for r in body["roles"] if r != "front"]
            members.append({"location": location, "employee": employee, **body,
                            "provides_services": draw(st.booleans())})
    chain_members = []
    for employee in draw(st.lists(st.sampled_from(PEOPLE), max_size=3, unique=True)):
        body = draw(membership())
        body["roles"] = [r for r in body["roles"] if r != "front"]
        chain_members.append({"chain": "ch-1", "employee": employee, **body})
    owner = draw(st.sampled_from((None, *PEOPLE)))
    return {
        "chains": [{"id": "ch-1", "owner": owner}],
        "locations": [{"id": loc, "chain": "ch-1", "owner": draw(st.sampled_from((None, *PEOPLE)))}
                      for loc in LOCATIONS],
        "employees": [{"id": e, "active": draw(st.booleans())} for e in PEOPLE],
        "memberships": members, "chain_memberships": chain_members, "roles": CUSTOM,
    }


def recount(spec: dict[str, Any], scope: Scope, rule: str) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """DOMAIN.md's rule, plainly, with casbin enforce per right as the source of rights."""
    directory = build_directories(spec, BUNDLE)["c:ch-1"]
    enforcer = TenantEngine(BUNDLE, directory).build_casbin()  # the oracle asks casbin itself
    billable = sorted(BUNDLE.catalogue.billable(rule))
    active = {e["id"] for e in spec["employees"] if e["active"]}
    in_scope = [loc for loc in LOCATIONS if scope.kind == "chain" or loc == scope.id]
    chain_wide = {m["employee"]: m for m in spec["chain_memberships"]}
    at = {(m["employee"], m["location"]): m for m in spec["memberships"]}
    members = {e for e in PEOPLE if e in chain_wide or any((e, loc) in at for loc in in_scope)}
    serving = {e for e in members if any(at.get((e, loc), {}).get("provides_services", False) for loc in in_scope)}

    def qualifies(e: str) -> bool:  # active, owner template at every location of the scope, no services
        owner_everywhere = bool(OWNER_ROLES & set(chain_wide.get(e, {}).get("roles", ()))) or all(
            OWNER_ROLES & set(at.get((e, loc), {}).get("roles", ())) for loc in in_scope)
        return e in active and owner_everywhere and e not in serving

    chain_owner = spec["chains"][0]["owner"]
    if scope.kind == "chain":
        designated = chain_owner
    else:
        own = next(loc["owner"] for loc in spec["locations"] if loc["id"] == scope.id)
        designated = own if own is not None else chain_owner
    if designated is not None:
        exempt = designated if designated in members and qualifies(designated) else None
    else:
        holders = [e for e in members if qualifies(e)]
        exempt = holders[0] if len(holders) == 1 else None
    answer = {}
    for e in members:
        if e not in active:
            answer[e] = (False, ("inactive",))
            continue
        where = [loc for loc in in_scope if e in chain_wide or (e, loc) in at]
        serves = any(at.get((e, loc), {}).get("provides_services", False) for loc in where)
        held = [r for r in billable if any(enforcer.enforce(e, loc, *r.split(":", 1)) for loc in where)]
        if e == exempt:
            answer[e] = (False, ("owner_exempt",))
            continue
        reasons = (("provides_services",) if serves else ()) + tuple(f"right:{r}" for r in held)
        answer[e] = (bool(reasons), reasons or ("no_billable_rights",))
    return answer


@settings(max_examples=150, deadline=None)
@given(spec=directories(), rule=st.sampled_from(("announced", "writes")))
def test_seats_equal_a_recount_from_casbin_decisions(spec: dict[str, Any], rule: str) -> None:
    engine = TenantEngine(BUNDLE, build_directories(spec, BUNDLE)["c:ch-1"])
    for seats in SeatCounter(engine, rule).count_all():
        got = {s.employee: (s.paid, s.reasons) for s in seats.seats}
        assert got == recount(spec, seats.scope, rule), seats.scope
        assert seats.paid_seats == sum(paid for paid, _ in got.values())
