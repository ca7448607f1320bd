"""Property: casbin's answer equals the plain set algebra of DOMAIN.md on random memberships.

effective = rights of the roles held here and chain-wide + allows, minus denies (deny wins).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.policy.decisions import decide
from tests.domain_table import CATALOGUE, TEMPLATES
from tests.test_decisions import engines

pytestmark = pytest.mark.e2e  # real processes / many generated examples: `pytest -m 'not e2e'` skips it

roles = st.lists(st.sampled_from(sorted(TEMPLATES)), max_size=3, unique=True)
rights = st.lists(st.sampled_from(CATALOGUE), max_size=4, unique=True)


@settings(max_examples=60, deadline=None)
@given(here=roles, chain_roles=roles, allow=rights, deny=rights, chain_deny=rights)
def test_effective_rights_follow_the_domain_rule(here, chain_roles, allow, deny, chain_deny) -> None:
    by_location = engines({
        "chains": [{"id": "ch-1"}],
        "locations": [{"id": "l-1", "chain": "ch-1"}],
        "employees": [{"id": "e-1"}],
        "memberships": [{"location": "l-1", "employee": "e-1", "roles": here, "allow": allow, "deny": deny}],
        "chain_memberships": [{"chain": "ch-1", "employee": "e-1", "roles": chain_roles, "deny": chain_deny}],
    })
    expected = set().union(*(TEMPLATES[r] for r in [*here, *chain_roles])) | set(allow)
    expected -= set(deny) | set(chain_deny)
    held = {r for r in CATALOGUE if decide(by_location["l-1"], "e-1", "l-1", r, mfa=True).allowed}
    assert held == expected


membership = st.fixed_dictionaries({"roles": roles, "allow": rights, "deny": rights})


@settings(max_examples=40, deadline=None)
@given(people=st.lists(st.tuples(st.sampled_from(["l-1", "l-2"]), membership), min_size=1, max_size=8),
       chain_wide=st.lists(membership, max_size=3))
def test_shared_shapes_answer_exactly_as_casbin_per_employee(people, chain_wide) -> None:
    """Rights are computed once per shape; each member still gets casbin's own answer."""
    spec = {
        "chains": [{"id": "ch-1"}],
        "locations": [{"id": "l-1", "chain": "ch-1"}, {"id": "l-2", "chain": "ch-1"}],
        "employees": [{"id": f"e-{i}"} for i in range(len(people) + len(chain_wide))],
        "memberships": [{"location": loc, "employee": f"e-{i}", **m} for i, (loc, m) in enumerate(people)],
        "chain_memberships": [{"chain": "ch-1", "employee": f"e-{len(people) + i}", **m}
                              for i, m in enumerate(chain_wide)],
    }
    engine = engines(spec)["l-1"]
    oracle = engine.build_casbin()  # a fresh, complete casbin model of the tenant
    for employee in engine.directory.members():
        for location in ("l-1", "l-2"):
            if engine.directory.is_member(employee, location):
                expected = {r for r in CATALOGUE if oracle.enforce(employee, location, *r.split(":", 1))}
                assert engine.rights(employee, location) == expected


custom_rights = st.lists(st.sampled_from([*CATALOGUE, "login:*", "client:*"]), max_size=4, unique=True)
role_names = ["front", "desk", "lead"]


@settings(max_examples=40, deadline=None)
@given(chain_roles=st.lists(st.tuples(custom_rights, st.lists(st.sampled_from(sorted(TEMPLATES)), max_size=2)),
                            min_size=3, max_size=3),
       local_roles=st.lists(st.tuples(custom_rights, st.lists(st.sampled_from([*role_names, "viewer"]), max_size=2)),
                            min_size=3, max_size=3),
       people=st.lists(st.tuples(st.sampled_from(["l-1", "l-2"]),
                                 st.fixed_dictionaries({"roles": st.lists(st.sampled_from([*role_names, "owner",
                                                                                            "accountant"]),
                                                                          max_size=3, unique=True),
                                                        "allow": custom_rights, "deny": custom_rights})),
                       min_size=1, max_size=6),
       chain_wide=st.lists(st.fixed_dictionaries({"roles": st.lists(st.sampled_from([*role_names, "marketer"]),
                                                                    max_size=2, unique=True),
                                                  "allow": custom_rights, "deny": custom_rights}), max_size=3))
def test_custom_roles_inheritance_and_wildcards_answer_exactly_as_casbin(chain_roles, local_roles, people,
                                                                           chain_wide) -> None:
    """Chain roles inherit templates; l-1's roles shadow them and inherit each other (no cycle: only later ones)."""
    roles = [{"chain": "ch-1", "role": name, "rights": rights, "inherits": parents}
             for name, (rights, parents) in zip(role_names, chain_roles, strict=True)]
    for i, (name, (rights, parents)) in enumerate(zip(role_names, local_roles, strict=True)):
        later = [p for p in parents if p not in role_names[: i + 1]]  # a chain role, a later l-1 role, a template
        roles.append({"location": "l-1", "role": name, "rights": rights, "inherits": later})
    spec = {
        "chains": [{"id": "ch-1"}],
        "locations": [{"id": "l-1", "chain": "ch-1"}, {"id": "l-2", "chain": "ch-1"}],
        "employees": [{"id": f"e-{i}"} for i in range(len(people) + len(chain_wide))],
        "roles": roles,
        "memberships": [{"location": loc, "employee": f"e-{i}", **m} for i, (loc, m) in enumerate(people)],
        "chain_memberships": [{"chain": "ch-1", "employee": f"e-{len(people) + i}", **m}
                              for i, m in enumerate(chain_wide)],
    }
    engine = engines(spec)["l-1"]
    oracle = engine.build_casbin()
    for employee in engine.directory.members():
        alone = engine.build_casbin(employee)  # what explain asks: the same answers, lines of the whole model
        for location in ("l-1", "l-2"):
            if engine.directory.is_member(employee, location):
                expected = {r for r in CATALOGUE if oracle.enforce(employee, location, *r.split(":", 1))}
                assert engine.rights(employee, location) == expected, (employee, location)
                implicit = oracle.get_implicit_roles_for_user(employee, location)
                assert sorted(alone.get_implicit_roles_for_user(employee, location)) == sorted(implicit)
                for right in CATALOGUE:
                    obj, act = right.split(":", 1)
                    allowed, rule = alone.enforce_ex(employee, location, obj, act)
                    assert allowed == (right in expected), (employee, location, right)
                    # several lines may match; casbin names one of them, in its set's order
                    assert not rule or (rule in oracle.get_policy() and rule[0] in {employee, *implicit}
                                        and rule[1] in ("*", location) and rule[2:4] == [obj, act])


def test_an_inheritance_deeper_than_casbins_limit_answers_as_casbin() -> None:
    """casbin follows at most 10 links from the one asking: the role's holder is one link away, as a member is."""
    depth = 12
    roles = [{"location": "l-1", "role": f"r{i}", "rights": [CATALOGUE[i]],
              "inherits": [f"r{i + 1}"] if i + 1 < depth else ["owner"]} for i in range(depth)]
    spec = {"locations": [{"id": "l-1"}], "employees": [{"id": "e-1"}], "roles": roles,
            "memberships": [{"location": "l-1", "employee": "e-1", "roles": ["r0"]}]}
    engine = engines(spec)["l-1"]
    oracle = engine.build_casbin()
    expected = {r for r in CATALOGUE if oracle.enforce("e-1", "l-1", *r.split(":", 1))}
    assert engine.rights("e-1", "l-1") == expected
    assert CATALOGUE[0] in expected and expected != set(CATALOGUE)  # the limit cuts the tail off
