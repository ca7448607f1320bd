"""Decision tables: every template x every right, overrides, chain-wide scope, MFA, default deny.

These run in memory through the same engine and decision code as the server (no Redis).
"""

from __future__ import annotations

import pytest

from sidecar.policy.bundle import load_bundle
from sidecar.policy.decisions import decide
from sidecar.policy.engine import TenantEngine
from sidecar.policy.suites import build_directories
from tests.conftest import POLICY_DIR
from tests.domain_table import CATALOGUE, REQUIRES_MFA, TEMPLATES

BUNDLE = load_bundle(POLICY_DIR)


def engines(spec: dict) -> dict[str, TenantEngine]:
    tenants = build_directories(spec, BUNDLE)
    by_location = {}
    for tenant in tenants.values():
        engine = TenantEngine(BUNDLE, tenant)
        by_location.update({location: engine for location in tenant.locations})
    return by_location


def one_location(**membership) -> dict[str, TenantEngine]:
    return engines({"locations": [{"id": "l-1"}], "employees": [{"id": "e-1"}],
                    "memberships": [{"location": "l-1", "employee": "e-1", **membership}]})


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("right", CATALOGUE)
def test_template_grants_exactly_its_domain_rights(template: str, right: str) -> None:
    by_location = one_location(roles=[template])
    decision = decide(by_location["l-1"], "e-1", "l-1", right, mfa=True)
    assert decision.allowed == (right in TEMPLATES[template])
    assert decision.reason == ("granted" if right in TEMPLATES[template] else "not_granted")


def test_catalogue_matches_domain() -> None:
    assert sorted(BUNDLE.catalogue.names()) == sorted(CATALOGUE)
    assert {r.name for r in BUNDLE.catalogue.rights.values() if r.requires_mfa} == REQUIRES_MFA


@pytest.mark.parametrize("right", sorted(REQUIRES_MFA))
def test_right_requiring_mfa_is_denied_without_it(right: str) -> None:
    by_location = one_location(roles=["owner"])
    assert decide(by_location["l-1"], "e-1", "l-1", right).reason == "mfa_required"
    assert decide(by_location["l-1"], "e-1", "l-1", right, mfa=True).allowed


@pytest.mark.parametrize(
    ("membership", "right", "allowed", "reason"),
    [
        ({"roles": ["marketer"], "allow": ["payment:process"]}, "payment:process", True, "granted"),
        ({"roles": ["administrator"], "deny": ["payment:process"]}, "payment:process", False, "denied_by_override"),
        ({"roles": ["owner"], "deny": ["client:delete"]}, "client:delete", False, "denied_by_override"),
        ({"roles": [], "allow": ["client:view"], "deny": ["client:view"]}, "client:view", False, "denied_by_override"),
        ({"roles": ["administrator"], "deny": ["payment:process"]}, "appointment:create", True, "granted"),
        ({"roles": []}, "calendar:view", False, "not_granted"),
        ({"roles": [], "provides_services": True}, "appointment:create", False, "not_granted"),
    ],
)
def test_overrides(membership: dict, right: str, allowed: bool, reason: str) -> None:
    decision = decide(one_location(**membership)["l-1"], "e-1", "l-1", right)
    assert (decision.allowed, decision.reason) == (allowed, reason)


@pytest.mark.parametrize(
    ("employee", "location", "right", "reason"),
    [
        ("e-404", "l-1", "calendar:view", "unknown_employee"),
        ("e-1", "l-1", "calendar:fly", "unknown_right"),
        ("e-1", "l-1", "nonsense", "unknown_right"),
        ("e-2", "l-1", "calendar:view", "inactive_employee"),
        ("e-3", "l-1", "calendar:view", "not_a_member"),
    ],
)
def test_default_deny(employee: str, location: str, right: str, reason: str) -> None:
    by_location = engines({
        "locations": [{"id": "l-1", "chain": "ch-1"}, {"id": "l-2", "chain": "ch-1"}],
        "employees": [{"id": "e-1"}, {"id": "e-2", "active": False}, {"id": "e-3"}],
        "memberships": [{"location": "l-1", "employee": "e-1", "roles": ["owner"]},
                        {"location": "l-1", "employee": "e-2", "roles": ["owner"]},
                        {"location": "l-2", "employee": "e-3", "roles": ["owner"]}],
    })
    decision = decide(by_location[location], employee, location, right, mfa=True)
    assert (decision.allowed, decision.reason) == (False, reason)


def test_unknown_location_is_denied() -> None:
    assert decide(None, "e-1", "l-404", "calendar:view").reason == "unknown_location"


CHAIN = {
    "chains": [{"id": "ch-1"}],
    "locations": [{"id": "l-1", "chain": "ch-1"}, {"id": "l-2", "chain": "ch-1"}],
    "employees": [{"id": "cc"}, {"id": "acc"}],
    "chain_memberships": [{"chain": "ch-1", "employee": "cc", "roles": ["call_center"]},
                          {"chain": "ch-1", "employee": "acc", "roles": ["accountant"],
                           "deny": ["finance:manage"]}],
    "memberships": [{"location": "l-2", "employee": "acc", "roles": [], "allow": ["payment:process"]}],
}


@pytest.mark.parametrize(
    ("employee", "location", "right", "allowed"),
    [
        ("cc", "l-1", "appointment:create", True),
        ("cc", "l-2", "appointment:create", True),
        ("cc", "l-2", "payment:process", False),
        ("acc", "l-1", "finance:view", True),
        ("acc", "l-1", "finance:manage", False),  # a chain-wide deny applies everywhere
        ("acc", "l-2", "finance:manage", False),
        ("acc", "l-2", "payment:process", True),  # location allow adds to chain-wide roles
        ("acc", "l-1", "payment:process", False),
    ],
)
def test_chain_wide_memberships(employee: str, location: str, right: str, allowed: bool) -> None:
    assert decide(engines(CHAIN)[location], employee, location, right, mfa=True).allowed == allowed


def test_chain_wide_membership_reaches_a_location_added_later() -> None:
    spec = {**CHAIN, "locations": [*CHAIN["locations"], {"id": "l-3", "chain": "ch-1"}]}
    assert decide(engines(spec)["l-3"], "cc", "l-3", "appointment:create").allowed


CUSTOM = {
    "chains": [{"id": "ch-1"}],
    "locations": [{"id": "l-1", "chain": "ch-1"}, {"id": "l-2", "chain": "ch-1"}],
    "employees": [{"id": "e-1"}, {"id": "e-2"}],
    "roles": [
        {"chain": "ch-1", "role": "junior", "rights": ["calendar:view"]},
        {"chain": "ch-1", "role": "senior", "rights": ["payment:refund"], "inherits": ["junior", "service_provider"]},
        {"location": "l-2", "role": "junior", "rights": ["inventory:view"]},
    ],
    "memberships": [{"location": "l-1", "employee": "e-1", "roles": ["senior"]},
                    {"location": "l-2", "employee": "e-2", "roles": ["junior"]}],
}


@pytest.mark.parametrize(
    ("employee", "location", "right", "allowed"),
    [
        ("e-1", "l-1", "payment:refund", True),
        ("e-1", "l-1", "calendar:view", True),  # inherited from the chain's junior
        ("e-1", "l-1", "appointment:create", True),  # inherited from a template
        ("e-1", "l-1", "inventory:view", False),
        ("e-2", "l-2", "inventory:view", True),  # the location's own junior wins there
        ("e-2", "l-2", "calendar:view", False),
    ],
)
def test_custom_roles_with_inheritance(employee: str, location: str, right: str, allowed: bool) -> None:
    assert decide(engines(CUSTOM)[location], employee, location, right).allowed == allowed


def test_explanation_names_roles_overrides_and_the_matched_rule() -> None:
    by_location = one_location(roles=["administrator"], deny=["payment:process"])
    decision = decide(by_location["l-1"], "e-1", "l-1", "payment:process", explain=True)
    assert decision.explanation is not None
    assert decision.explanation["roles"] == [{"role": "administrator", "scope": "location"}]
    assert decision.explanation["overrides"]["deny"] == ["payment:process"]
    assert decision.explanation["matched_rule"] == ["e-1", "l-1", "payment", "process", "deny"]


def test_a_location_whose_id_is_chain_explains_its_own_roles_as_location_scope() -> None:
    by_location = engines({"locations": [{"id": "chain"}], "employees": [{"id": "e-1"}],
                           "memberships": [{"location": "chain", "employee": "e-1", "roles": ["viewer"]}]})
    decision = decide(by_location["chain"], "e-1", "chain", "calendar:view", explain=True)
    assert decision.explanation is not None
    assert decision.explanation["roles"] == [{"role": "viewer", "scope": "location"}]


def test_chain_wide_roles_are_explained_as_chain_scope() -> None:
    by_location = engines({"chains": [{"id": "ch-1"}], "locations": [{"id": "l-1", "chain": "ch-1"}],
                           "employees": [{"id": "e-1"}],
                           "chain_memberships": [{"chain": "ch-1", "employee": "e-1", "roles": ["viewer"]}]})
    decision = decide(by_location["l-1"], "e-1", "l-1", "calendar:view", explain=True)
    assert decision.explanation is not None
    assert decision.explanation["roles"] == [{"role": "viewer", "scope": "chain"}]
