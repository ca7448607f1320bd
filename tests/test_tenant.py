"""The Tenant value: the one place that builds and parses ``c:<chain>`` / ``l:<location>``."""

from __future__ import annotations

import pytest

from sidecar.policy.directory import Location
from sidecar.policy.tenant import NO_TENANT, Tenant


def test_a_chain_tenant_round_trips() -> None:
    tenant = Tenant.parse("c:ch-1")
    assert tenant == Tenant.chain("ch-1") == "c:ch-1"
    assert (tenant.kind, tenant.id, tenant.is_chain, str(tenant)) == ("chain", "ch-1", True, "c:ch-1")
    assert tenant.where() == {"chain": "ch-1"}


def test_a_location_tenant_round_trips() -> None:
    tenant = Tenant.parse("l:chain")  # a location may be called "chain"
    assert tenant == Tenant.location("chain")
    assert (tenant.kind, tenant.id, tenant.is_chain) == ("location", "chain", False)
    assert tenant.where() == {"location": "chain"}


def test_a_location_belongs_to_its_chain_s_tenant_or_its_own() -> None:
    assert Location("l-1", chain="ch-1").tenant == Tenant.chain("ch-1")
    assert Location("l-1").tenant == Tenant.location("l-1")


@pytest.mark.parametrize("raw", [NO_TENANT, "", "c:", "x:ch-1", "ch-1", "C:ch-1"])
def test_anything_else_is_not_a_tenant(raw: str) -> None:
    with pytest.raises(ValueError, match="not a tenant"):
        Tenant.parse(raw)
