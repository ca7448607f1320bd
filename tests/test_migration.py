"""Legacy users to employees with roles, through the API and the CLI (issue 14).

A few hundred generated legacy users in a chain and a standalone location: after ``apply``,
the engine's effective rights equal the legacy rights at every location of every membership.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from sidecar.cli import main
from sidecar.policy.directory import Employee
from sidecar.policy.engine import TenantEngine
from sidecar.policy.migration import LegacyMembership, LegacyUser, legacy_rights_at
from tests.audit_support import read_log

MIGRATE = "/v1/migrations/legacy-users"


CHAIN_LOCATIONS = ("l-1", "l-2", "l-3", "l-4")


def place(api: Any) -> None:
    for path, body in [("/v1/chains/ch-1", {}), *[(f"/v1/locations/{loc}", {"chain": "ch-1"})
                                                  for loc in CHAIN_LOCATIONS], ("/v1/locations/l-9", {"chain": None})]:
        assert api.put(path, body).status_code == 200


def generate(count: int, seed: int = 14) -> list[dict[str, Any]]:
    """Legacy users: template-like rights, some rights added or taken away, some chain-wide."""
    rng = random.Random(seed)
    from tests.domain_table import CATALOGUE, TEMPLATES  # DOMAIN.md's templates, written out by hand

    shapes = [*TEMPLATES.values(), set()]
    users = []
    for n in range(count):
        memberships: list[dict[str, Any]] = []
        if rng.random() < 0.15:
            memberships.append({"chain": "ch-1", "rights": sorted(_vary(rng, rng.choice(shapes), CATALOGUE))})
        for location in rng.sample([*CHAIN_LOCATIONS, "l-9"], rng.randint(0 if memberships else 1, 2)):
            memberships.append({"location": location, "rights": sorted(_vary(rng, rng.choice(shapes), CATALOGUE)),
                                "provides_services": rng.random() < 0.4})
        user: dict[str, Any] = {"id": f"u-{n}", "memberships": memberships}
        if rng.random() < 0.5:
            user["name"] = f"User {n}"
        if rng.random() < 0.3:
            user["email"] = f"u{n}@example.test"
        if rng.random() < 0.05:
            user["active"] = False
        users.append(user)
    return users


def _vary(rng: random.Random, rights: set[str], catalogue: list[str]) -> set[str]:
    varied = set(rights)
    for _ in range(rng.choice((0, 0, 1, 2, 3))):
        right = rng.choice(catalogue)
        varied.symmetric_difference_update({right})
    return varied


def as_legacy(user: dict[str, Any]) -> LegacyUser:
    return LegacyUser(0, Employee(user["id"]), tuple(
        LegacyMembership(m.get("location") or m["chain"], "chain" in m, frozenset(m["rights"]))
        for m in user["memberships"]))


def assert_rights_equal_legacy(api: Any, users: list[dict[str, Any]]) -> int:
    runtime = api.app.extensions["sidecar"]
    engines = {t: TenantEngine(runtime.bundle, runtime.directory.load_tenant(t)) for t in ("c:ch-1", "l:l-9")}
    checked = 0
    for user in users:
        legacy = as_legacy(user)
        for m in user["memberships"]:
            locations = CHAIN_LOCATIONS if "chain" in m else (m["location"],)
            for location in locations:
                engine = engines["l:l-9" if location == "l-9" else "c:ch-1"]
                chain = None if location == "l-9" else "ch-1"
                assert engine.rights(user["id"], location) == legacy_rights_at(legacy, location, chain), (
                    user["id"], location)
                checked += 1
    return checked


def test_applied_rights_equal_legacy_rights_for_every_membership(api: Any, app: Any) -> None:
    place(api)
    users = generate(300)
    response = api.post(MIGRATE, {"users": users, "apply": True}, scope="admin")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["applied"] is True and len(body["employees"]) == 300
    assert sorted(body["revisions"]) == ["c:ch-1", "l:l-9"]
    assert assert_rights_equal_legacy(api, users) > 300
    assert api.get("/v1/employees/u-0", scope="admin").status_code == 200


def test_the_answer_names_roles_overrides_and_seat_impact(api: Any) -> None:
    place(api)
    users = [
        {"id": "stylist", "memberships": [{"location": "l-1", "rights": ["calendar:view"], "provides_services": True}]},
        {"id": "desk", "memberships": [{"chain": "ch-1", "rights": ["calendar:view", "appointment:create",
                                                                     "appointment:edit", "client:view",
                                                                     "payroll:view"]}]},
        {"id": "solo", "memberships": [{"location": "l-9", "rights": ["report:view"]}]},
    ]
    body = api.post(MIGRATE, {"users": users}, scope="admin").get_json()
    assert body["applied"] is False and body["revisions"] == {}
    desk = body["employees"][1]
    # every template now holds login:*; legacy rights without it are reproduced exactly, so it is denied
    assert desk == {"employee": "desk", "memberships": [{"chain": "ch-1", "roles": ["service_provider"], "allow": [],
                                                         "deny": ["login:mfa", "login:password"],
                                                         "provides_services": False}]}
    stylist = body["employees"][0]["memberships"][0]
    assert (stylist["roles"], stylist["allow"], stylist["deny"]) == ([], ["calendar:view"], [])
    chain, standalone = body["seats"]
    assert chain["scope"] == {"chain": "ch-1"} and standalone["scope"] == {"location": "l-9"}
    assert (chain["legacy_paid_seats"], chain["paid_seats"]) == (1, 2)  # desk books appointments now
    assert {e["employee"]: (e["paid_legacy"], e["paid"]) for e in chain["employees"]} == {
        "desk": (False, True), "stylist": (True, True)}
    assert api.get("/v1/employees/desk", scope="admin").status_code == 404  # a dry run writes nothing


def test_apply_is_audited_as_access_by_migration_and_a_rerun_changes_nothing(api: Any, redis_url: str) -> None:
    place(api)
    users = generate(40, seed=3)
    first = api.post(MIGRATE, {"users": users, "apply": True}, scope="admin").get_json()
    placed = len(read_log(redis_url, "c:ch-1"))
    events = read_log(redis_url, "c:ch-1")[len([*CHAIN_LOCATIONS, "ch-1"]):]  # after place()'s own events
    assert events and all(e["category"] == "access" and e["employee"] == "migration" for e in events)
    assert {e["action"] for e in events} <= {"employee:create", "membership:create", "chain_membership:create"}
    membership_event = next(e for e in events if e["action"] == "membership:create")
    assert membership_event["details"]["before"] is None and "roles" in membership_event["details"]["after"]
    revision = api.get("/v1/billing/seats?chain=ch-1", scope="billing").get_json()["revision"]

    second = api.post(MIGRATE, {"users": users, "apply": True}, scope="admin").get_json()
    assert second["revisions"] == {} and second["employees"] == first["employees"]
    assert len(read_log(redis_url, "c:ch-1")) == placed
    assert api.get("/v1/billing/seats?chain=ch-1", scope="billing").get_json()["revision"] == revision


def test_apply_records_the_seat_changes(api: Any) -> None:
    place(api)
    users = [{"id": "st", "memberships": [{"location": "l-1", "rights": [], "provides_services": True}]}]
    api.post(MIGRATE, {"users": users, "apply": True}, scope="admin")
    changes = api.get("/v1/billing/seats/history?chain=ch-1", scope="billing").get_json()["changes"]
    assert [(c["employee"], c["paid"]) for c in changes] == [("st", True)]


@pytest.mark.parametrize(("users", "line", "words"), [
    ([{"id": "ok"}, {"id": "bad id"}], 2, "id"),
    ([{"id": "ok"}, {"id": "x", "memberships": [{"location": "nowhere", "rights": []}]}], 2, "nowhere does not exist"),
    ([{"id": "x", "memberships": [{"chain": "nope", "rights": []}]}], 1, "chain nope does not exist"),
    ([{"id": "ok"}, {"id": "ok2"}, {"id": "x", "memberships": [{"location": "l-1", "rights": ["bad:right"]}]}], 3,
     "unknown rights"),
])
def test_a_bad_user_is_a_400_naming_its_line_and_nothing_is_written(api: Any, users: list[Any], line: int,
                                                                      words: str) -> None:
    place(api)
    before = api.get("/v1/billing/seats?chain=ch-1", scope="billing").get_json()["revision"]
    response = api.post(MIGRATE, {"users": [*generate(5), *users], "apply": True}, scope="admin")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["line"] == line + 5 and error["message"].startswith(f"line {line + 5}: ") and words in error["message"]
    assert api.get("/v1/employees/u-0", scope="admin").status_code == 404
    assert api.get("/v1/billing/seats?chain=ch-1", scope="billing").get_json()["revision"] == before


@pytest.mark.parametrize(("body", "status"), [
    ({"users": "x"}, 400), ({"users": [], "apply": "yes"}, 400), ({"users": [], "extra": 1}, 400), ({}, 400),
])
def test_bad_bodies_are_400(api: Any, body: dict[str, Any], status: int) -> None:
    assert api.post(MIGRATE, body, scope="admin").status_code == status


@pytest.mark.parametrize(("scope", "status"), [("billing", 403), ("check", 403), (None, 401)])
def test_the_route_needs_the_admin_scope(api: Any, scope: str | None, status: int) -> None:
    assert api.post(MIGRATE, {"users": []}, scope=scope).status_code == status


def answer(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The command's answer: its last line (log lines, audit ones too, come before it)."""
    value: dict[str, Any] = json.loads(capsys.readouterr().out.splitlines()[-1])
    return value


def test_sidecar_migrate_dry_run_then_apply(api: Any, cli_env: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    place(api)
    users = generate(60, seed=5)
    file = tmp_path / "legacy.jsonl"
    file.write_text("\n".join(json.dumps(u) for u in users) + "\n\n")
    capsys.readouterr()
    assert main(["migrate", "legacy-users", str(file)]) == 0
    dry = answer(capsys)
    assert dry["applied"] is False and api.get("/v1/employees/u-0", scope="admin").status_code == 404
    assert main(["migrate", "legacy-users", str(file), "--apply"]) == 0
    applied = answer(capsys)
    assert applied["applied"] is True and applied["employees"] == dry["employees"]
    assert [s["paid_seats"] for s in applied["seats"]] == [s["paid_seats"] for s in dry["seats"]]
    assert_rights_equal_legacy(api, users)


def test_sidecar_migrate_names_a_bad_line(api: Any, cli_env: None, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    place(api)
    file = tmp_path / "legacy.jsonl"
    file.write_text('{"id": "a"}\n{"id": "b"\n')
    assert main(["migrate", "legacy-users", str(file), "--apply"]) == 1
    assert "line 2: not JSON" in capsys.readouterr().err
    assert api.get("/v1/employees/a", scope="admin").status_code == 404
