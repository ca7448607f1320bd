"""The bulk importer validates every record with the same rules as the API (policy.rules).

Each case here is a divergence the design review found: the importer accepted what the API
refuses (another location's role, an unknown parent, an inheritance cycle) and refused what the
API wrote (a membership naming a custom role already in Redis).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from sidecar.policy.bundle import load_bundle
from sidecar.policy.directory import CHAIN_SCOPE, CustomRole, Location, Membership
from sidecar.policy.tenant import Tenant
from sidecar.store.connection import connect
from sidecar.store.directory import DirectoryStore
from sidecar.store.importer import InvalidImport, import_lines
from tests.conftest import POLICY_DIR

BUNDLE = load_bundle(POLICY_DIR)
BASE = [
    {"kind": "chain", "id": "ch-1"},
    {"kind": "location", "id": "l-1", "chain": "ch-1"},
    {"kind": "location", "id": "l-2", "chain": "ch-1"},
    {"kind": "employee", "id": "e-1", "active": True},
]


@pytest.fixture
def store(redis_url: str) -> Iterator[DirectoryStore]:
    client = connect(redis_url)
    yield DirectoryStore(client, lambda: BUNDLE)
    client.close()


def run_import(store: DirectoryStore, *records: dict[str, object]) -> dict[str, object]:
    return import_lines(store, BUNDLE, [json.dumps(r) for r in records])


def refused(store: DirectoryStore, *records: dict[str, object]) -> str:
    with pytest.raises(InvalidImport) as raised:
        run_import(store, *records)
    return str(raised.value)


def test_a_membership_naming_another_location_s_role_is_refused(store: DirectoryStore,
                                                               redis_client: redis.Redis) -> None:
    message = refused(store, *BASE,
                      {"kind": "role", "location": "l-1", "role": "desk", "rights": ["payment:process"]},
                      {"kind": "membership", "location": "l-2", "employee": "e-1", "roles": ["desk"]})
    assert "line 6" in message and "unknown roles ['desk']" in message
    assert redis_client.keys("sc:*") == []


def test_a_role_inheriting_an_unknown_role_is_refused(store: DirectoryStore) -> None:
    message = refused(store, *BASE, {"kind": "role", "chain": "ch-1", "role": "desk", "rights": [],
                                     "inherits": ["nobody"]})
    assert "line 5" in message and "inherits unknown role nobody" in message


def test_an_inheritance_cycle_is_refused(store: DirectoryStore) -> None:
    message = refused(store, *BASE,
                      {"kind": "role", "chain": "ch-1", "role": "a", "rights": [], "inherits": ["b"]},
                      {"kind": "role", "chain": "ch-1", "role": "b", "rights": [], "inherits": ["a"]})
    assert "would inherit itself" in message


def test_a_cycle_through_a_role_already_in_redis_is_refused(store: DirectoryStore) -> None:
    run_import(store, *BASE)
    chain = Tenant.chain("ch-1")
    store.put_custom_role(chain, CHAIN_SCOPE, CustomRole("b", CHAIN_SCOPE, (), ("viewer",)))
    store.put_custom_role(chain, CHAIN_SCOPE, CustomRole("a", CHAIN_SCOPE, (), ("b",)))
    message = refused(store, {"kind": "role", "chain": "ch-1", "role": "b", "rights": [], "inherits": ["a"]})
    assert "would inherit itself" in message


def test_a_membership_naming_a_custom_role_already_in_redis_is_accepted(store: DirectoryStore) -> None:
    run_import(store, *BASE)
    store.put_custom_role(Tenant.chain("ch-1"), CHAIN_SCOPE, CustomRole("apirole", CHAIN_SCOPE, ("payment:process",)))
    summary = run_import(store, {"kind": "membership", "location": "l-1", "employee": "e-1", "roles": ["apirole"]})
    assert summary["membership"] == 1
    assert store.membership("l-1", "e-1") == Membership(roles=("apirole",))


def test_a_location_role_defined_through_the_api_is_usable_at_that_location_only(store: DirectoryStore) -> None:
    run_import(store, *BASE)
    store.put_custom_role(Tenant.chain("ch-1"), "l-1", CustomRole("desk", "l-1", ("payment:process",)))
    assert run_import(store, {"kind": "membership", "location": "l-1", "employee": "e-1", "roles": ["desk"]})
    assert "unknown roles ['desk']" in refused(
        store, {"kind": "membership", "location": "l-2", "employee": "e-1", "roles": ["desk"]})


@pytest.mark.parametrize(("record", "expected"), [
    ({"kind": "role", "chain": "ch-1", "role": "viewer", "rights": []}, "role template's name"),
    ({"kind": "role", "chain": "ch-1", "role": "desk", "rights": ["payment:fly"]}, "unknown rights"),
    ({"kind": "membership", "location": "l-1", "employee": "e-1", "roles": ["viewer"], "allow": ["payment:fly"]},
     "unknown rights"),
    ({"kind": "chain_membership", "chain": "ch-1", "employee": "e-1", "roles": ["nobody"]}, "unknown roles"),
])
def test_what_the_api_refuses_the_import_refuses(store: DirectoryStore, record: dict[str, object],
                                                 expected: str) -> None:
    assert expected in refused(store, *BASE, record)


def test_imported_records_read_back_as_the_api_writes_them(store: DirectoryStore) -> None:
    run_import(store, *BASE, {"kind": "role", "chain": "ch-1", "role": "desk", "rights": ["payment:process"],
                              "inherits": ["viewer"]},
               {"kind": "membership", "location": "l-1", "employee": "e-1", "roles": ["desk"],
                "provides_services": True})
    tenant = store.load_tenant(Tenant.chain("ch-1"))
    assert tenant.locations["l-1"] == Location("l-1", "ch-1")
    assert tenant.custom_roles[(CHAIN_SCOPE, "desk")] == CustomRole("desk", CHAIN_SCOPE, ("payment:process",),
                                                                    ("viewer",))
    assert tenant.memberships[("e-1", "l-1")] == Membership(roles=("desk",), provides_services=True)
    assert store.tenants_of("e-1") == [Tenant.chain("ch-1")]
