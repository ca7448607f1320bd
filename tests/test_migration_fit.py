"""Fitting roles and overrides to legacy rights (sidecar.policy.migration), checked by the engine."""

from __future__ import annotations

import random
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.errors import BadRequest
from sidecar.policy.bundle import load_bundle
from sidecar.policy.directory import Chain, Location, TenantDirectory
from sidecar.policy.engine import TenantEngine
from sidecar.policy.migration import apply_plan, fit, legacy_rights_at, parse_users, plan_user

BUNDLE = load_bundle(Path(__file__).resolve().parent.parent / "policies")
TEMPLATES = {name: t.rights for name, t in BUNDLE.templates.items()}
RIGHTS = BUNDLE.catalogue.names()


def rights_of(*roles: str) -> frozenset[str]:
    return frozenset().union(*(TEMPLATES[r] for r in roles))


@pytest.mark.parametrize("role", sorted(TEMPLATES))
def test_a_templates_exact_rights_fit_that_template_with_no_override(role: str) -> None:
    found = fit(TEMPLATES[role], TEMPLATES)
    assert (found.allow, found.deny) == ((), ())
    assert rights_of(*found.roles) == TEMPLATES[role]


def test_one_right_less_is_one_deny() -> None:
    found = fit(TEMPLATES["administrator"] - {"deposit:topup"}, TEMPLATES)
    assert (found.roles, found.allow, found.deny) == (("administrator",), (), ("deposit:topup",))


def test_one_right_more_is_one_allow() -> None:
    found = fit(TEMPLATES["accountant"] | {"payment:process"}, TEMPLATES)
    assert (found.roles, found.allow, found.deny) == (("accountant",), ("payment:process",), ())


def test_two_templates_beat_many_overrides() -> None:
    found = fit(rights_of("administrator", "accountant"), TEMPLATES)
    assert (sorted(found.roles), found.overrides) == (["accountant", "administrator"], 0)


def test_a_tie_prefers_the_template_that_grants_nothing_extra() -> None:
    # owner minus billing:manage: owner + deny billing:manage, or manager + allow security:manage
    found = fit(TEMPLATES["owner"] - {"billing:manage"}, TEMPLATES)
    assert (found.roles, found.allow, found.deny) == (("manager",), ("security:manage",), ())


@pytest.mark.parametrize("names", [("a", "b", "c"), ("c", "b", "a"), ("b", "c", "a")])
def test_a_tie_on_every_count_goes_to_the_first_names(names: tuple[str, ...]) -> None:
    """Templates a, b, c each grant one right too many; a and b together too: the first names win."""
    first, second, third = (frozenset({"x:1", "x:2", extra}) for extra in ("x:3", "x:4", "x:5"))
    templates = dict(zip(names, (first, second, third), strict=True))
    found = fit(frozenset({"x:1", "x:2"}), templates)
    assert (found.roles, found.allow, found.deny) == (("a",), (), tuple(templates["a"] - {"x:1", "x:2"}))
    pair = fit(frozenset({"x:1", "x:2", "y:1", "y:2"}), {"a": frozenset({"x:1", "x:2", "x:9"}),
                                                        "b": frozenset({"x:1", "x:2", "x:8"}),
                                                        "c": frozenset({"y:1", "y:2", "y:9"}),
                                                        "d": frozenset({"y:1", "y:2", "y:8"})})
    assert (pair.roles, pair.deny) == (("a", "c"), ("x:9", "y:9"))


def test_a_pair_is_found_behind_a_template_that_alone_beats_each_half() -> None:
    """wide alone: 2 denies; half-1 alone: 3 allows; half-1 and half-2 together: exact."""
    target = frozenset(f"x:{i}" for i in range(6))
    templates = {"a-wide": target | {"y:1", "y:2"}, "b-half": frozenset(sorted(target)[:3]),
                 "c-half": frozenset(sorted(target)[3:])}
    found = fit(target, templates)
    assert (found.roles, found.allow, found.deny) == (("b-half", "c-half"), (), ())


def test_no_rights_is_no_role_and_no_override() -> None:
    found = fit(frozenset(), TEMPLATES)
    assert (found.roles, found.allow, found.deny) == ((), (), ())


def test_full_rights_but_two_step_login_is_owner_with_one_deny() -> None:
    found = fit(TEMPLATES["owner"] - {"login:mfa"}, TEMPLATES)
    assert (found.roles, found.allow, found.deny) == (("owner",), (), ("login:mfa",))


def test_the_fit_is_minimal_against_every_single_template() -> None:
    rng = random.Random(7)
    for _ in range(200):
        target = frozenset(rng.sample(RIGHTS, rng.randint(0, 12))) | (
            TEMPLATES[rng.choice(sorted(TEMPLATES))] if rng.random() < 0.7 else frozenset())
        found = fit(target, TEMPLATES)
        granted = rights_of(*found.roles) | set(found.allow)
        assert granted - set(found.deny) == target
        for rights in [frozenset(), *TEMPLATES.values()]:
            assert found.overrides <= len(target ^ rights)


def directory_with(spec_locations: list[str], chain: str | None) -> TenantDirectory:
    tenant = f"c:{chain}" if chain else f"l:{spec_locations[0]}"
    return TenantDirectory(tenant, "1-0", Chain(chain) if chain else None,
                           {loc: Location(loc, chain) for loc in spec_locations})


def test_chain_and_location_memberships_together_reproduce_the_union_at_each_location() -> None:
    users = parse_users([(1, {"id": "u-1", "memberships": [
        {"chain": "ch-1", "rights": sorted(TEMPLATES["call_center"])},
        {"location": "l-1", "rights": sorted(TEMPLATES["accountant"] | {"schedule:edit"}), "provides_services": True},
        {"location": "l-2", "rights": ["calendar:view", "login:password"]},
    ]})], RIGHTS)
    chain_of = {"l-1": "ch-1", "l-2": "ch-1", "l-3": "ch-1"}
    planned = plan_user(users[0], chain_of, TEMPLATES)
    directory = apply_plan(directory_with(["l-1", "l-2", "l-3"], "ch-1"), [planned])
    engine = TenantEngine(BUNDLE, directory)
    for location in ("l-1", "l-2", "l-3"):
        assert engine.rights("u-1", location) == legacy_rights_at(users[0], location, "ch-1"), location
    assert directory.memberships[("u-1", "l-1")].provides_services is True


def test_a_chain_membership_never_denies_what_a_location_membership_needs() -> None:
    users = parse_users([(1, {"id": "u-1", "memberships": [
        {"chain": "ch-1", "rights": sorted(TEMPLATES["administrator"] - {"payment:process"})},
        {"location": "l-1", "rights": ["payment:process"]},
    ]})], RIGHTS)
    planned = plan_user(users[0], {"l-1": "ch-1"}, TEMPLATES)
    chain_membership = next(m for m in planned.memberships if m.chain_wide).membership
    assert "payment:process" not in chain_membership.deny
    engine = TenantEngine(BUNDLE, apply_plan(directory_with(["l-1", "l-2"], "ch-1"), [planned]))
    assert "payment:process" in engine.rights("u-1", "l-1")
    assert "payment:process" not in engine.rights("u-1", "l-2")


@pytest.mark.parametrize(("record", "words"), [
    ("not an object", "JSON object"),
    ({"memberships": []}, "id"),
    ({"id": "bad id"}, "id"),
    ({"id": "u", "extra": 1}, "unexpected"),
    ({"id": "u", "active": "yes"}, "active"),
    ({"id": "u", "email": "A <a@b.c>"}, "email"),
    ({"id": "u", "memberships": [{"rights": []}]}, "exactly one"),
    ({"id": "u", "memberships": [{"location": "l-1", "chain": "c", "rights": []}]}, "exactly one"),
    ({"id": "u", "memberships": [{"location": "l-1", "rights": ["nope:x"]}]}, "unknown rights"),
    ({"id": "u", "memberships": [{"location": "l-1", "rights": "calendar:view"}]}, "rights"),
    ({"id": "u", "memberships": [{"chain": "c", "rights": [], "provides_services": True}]}, "provides_services"),
    ({"id": "u", "memberships": [{"location": "l-1", "rights": []}, {"location": "l-1", "rights": []}]},
     "two memberships"),
])
def test_a_bad_user_names_its_line(record: Any, words: str) -> None:
    good = {"id": "ok", "memberships": []}
    with pytest.raises(BadRequest) as raised:
        parse_users([(1, good), (7, record)], RIGHTS)
    assert raised.value.message.startswith("line 7: ")
    assert words in raised.value.message


def test_the_same_user_twice_is_refused() -> None:
    with pytest.raises(BadRequest, match="line 2: user u appears twice"):
        parse_users([(1, {"id": "u"}), (2, {"id": "u"})], RIGHTS)


def exhaustive_fit(target: frozenset[str], have: frozenset[str] = frozenset(),
                   keep: frozenset[str] = frozenset()) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The rule written plainly: every combination of useful templates, least (overrides, denies, roles, names)."""
    missing = target - have
    useful = sorted(n for n, r in TEMPLATES.items() if r & missing and not ((r - target) & keep))
    best: tuple[tuple[int, int, int, tuple[str, ...]], tuple[str, ...], frozenset[str]] | None = None
    for size in range(len(useful) + 1):
        for names in combinations(useful, size):
            granted = have.union(*(TEMPLATES[n] for n in names))
            key = (len(target ^ granted), len(granted - target), size, names)
            if best is None or key < best[0]:
                best = (key, names, granted)
    assert best is not None
    _, names, granted = best
    return names, tuple(sorted(target - granted)), tuple(sorted(granted - target))


def test_the_fit_is_the_exhaustive_searchs_answer() -> None:
    """Random targets, with a chain-wide grant already held and rights to keep: the same roles and overrides."""
    rng = random.Random(14)
    for _ in range(500):
        base = rights_of(*rng.sample(sorted(TEMPLATES), rng.choice((0, 1, 1, 1, 2, 2, 3))))
        target = frozenset(base ^ set(rng.sample(RIGHTS, rng.randint(0, 4))))
        have = frozenset(rng.sample(sorted(target), min(len(target), rng.randint(0, 3)))) if rng.random() < 0.3 \
            else frozenset()
        keep = frozenset(rng.sample(RIGHTS, rng.randint(0, 3))) if rng.random() < 0.3 else frozenset()
        found = fit(target, TEMPLATES, have=have, keep=keep)
        assert (found.roles, found.allow, found.deny) == exhaustive_fit(target, have, keep), (target, have, keep)


legacy_rights = st.one_of(
    st.frozensets(st.sampled_from(RIGHTS), max_size=8),
    st.builds(lambda role, flip: TEMPLATES[role] ^ flip, st.sampled_from(sorted(TEMPLATES)),
              st.frozensets(st.sampled_from(RIGHTS), max_size=3)))


@settings(max_examples=60, deadline=None)
@given(chain_wide=st.lists(legacy_rights, max_size=6),
       local=st.lists(st.lists(st.tuples(st.sampled_from(["l-1", "l-2", "l-3", "solo"]), legacy_rights),
                               min_size=1, max_size=3, unique_by=lambda m: m[0]), min_size=1, max_size=6))
def test_planned_rights_equal_legacy_rights_at_every_location(chain_wide: list[frozenset[str]],
                                                              local: list[list[tuple[str, frozenset[str]]]]) -> None:
    """Random legacy users, chain-wide or not, in a chain and a standalone location: the engine agrees everywhere."""
    records = []
    for n, memberships in enumerate(local):
        listed: list[dict[str, Any]] = [{"location": loc, "rights": sorted(r)} for loc, r in memberships]
        if n < len(chain_wide):
            listed.append({"chain": "ch-1", "rights": sorted(chain_wide[n])})
        records.append((n + 1, {"id": f"u-{n}", "memberships": listed}))
    users = parse_users(records, RIGHTS)
    chain_of: dict[str, str | None] = {"l-1": "ch-1", "l-2": "ch-1", "l-3": "ch-1", "solo": None}
    planned = [plan_user(user, chain_of, TEMPLATES) for user in users]
    chain = TenantEngine(BUNDLE, apply_plan(directory_with(["l-1", "l-2", "l-3"], "ch-1"), planned))
    solo = TenantEngine(BUNDLE, apply_plan(directory_with(["solo"], None), planned))
    for user in users:
        for location, engine in [("l-1", chain), ("l-2", chain), ("l-3", chain), ("solo", solo)]:
            legacy = legacy_rights_at(user, location, chain_of[location])
            if engine.directory.is_member(user.employee.id, location):
                assert engine.rights(user.employee.id, location) == legacy, (user.employee.id, location)
            else:
                assert not legacy
