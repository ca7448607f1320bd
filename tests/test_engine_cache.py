"""EngineCache: what engines of one owner share, instead of module globals."""

from __future__ import annotations

from sidecar.policy.bundle import load_bundle
from sidecar.policy.engine import EngineCache, TenantEngine
from sidecar.policy.suites import build_directories
from tests.conftest import POLICY_DIR

BUNDLE = load_bundle(POLICY_DIR)


def _tenant(location: str) -> TenantEngine:
    spec = {"locations": [{"id": location}], "employees": [{"id": "e-1"}, {"id": "e-2"}],
            "memberships": [{"location": location, "employee": "e-1", "roles": ["viewer"]},
                            {"location": location, "employee": "e-2", "roles": ["administrator"]}]}
    return build_directories(spec, BUNDLE)[f"l:{location}"]


def test_engines_sharing_a_cache_share_rights_and_a_cap_on_live_models() -> None:
    cache = EngineCache(live_models=1)
    first = TenantEngine(BUNDLE, _tenant("l-1"), cache=cache)
    second = TenantEngine(BUNDLE, _tenant("l-2"), cache=cache)
    held = first.rights("e-1", "l-1")  # e-2 is still unanswered: the model stays alive
    assert cache.live() == 1
    assert second.rights("e-1", "l-2") is held  # one object per distinct set of rights
    assert cache.live() == 1  # the older model was let go
    assert first.rights("e-2", "l-1") == second.rights("e-2", "l-2")  # rebuilt on need
    cache.reset()
    assert cache.live() == 0


def test_an_engine_without_a_cache_gets_its_own() -> None:
    one, other = TenantEngine(BUNDLE, _tenant("l-1")), TenantEngine(BUNDLE, _tenant("l-2"))
    assert one.cache is not other.cache
    assert TenantEngine(BUNDLE, _tenant("l-1"), reuse=one).cache is one.cache
