"""Every seat change is recorded whatever caused it, and names its cause (issue 14).

Causes: ``write`` (with its revision), ``import`` (``sidecar import``), ``policy_reload`` (a
template change picked up by a reload) and ``rule_change`` (a replica started with another
``SIDECAR_BILLING_RULE``). Each is checked in the scope's history and on the global stream.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import redis

from sidecar.app import create_app
from sidecar.cli import main
from sidecar.store.seat_history import SEAT_CHANGES_STREAM
from tests.conftest import POLICY_DIR, Api, make_settings, make_tokens
from tests.test_billing_api import build


def changes(api: Any, query: str = "chain=ch-1") -> list[dict[str, Any]]:
    response = api.get(f"/v1/billing/seats/history?{query}", scope="billing")
    assert response.status_code == 200, response.get_json()
    found: list[dict[str, Any]] = response.get_json()["changes"]
    return found


def stream(client: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(SEAT_CHANGES_STREAM)]


def test_a_write_is_recorded_with_its_revision(api: Any, redis_client: redis.Redis) -> None:
    revision = build(api)
    answer = api.put("/v1/locations/l-1/employees/mkt", {"roles": ["marketer"], "allow": ["payment:refund"]})
    found = [c for c in changes(api) if c["employee"] == "mkt"]
    assert [(c["paid"], c["cause"], c["revision"]) for c in found] == [(True, "write", answer.get_json()["revision"])]
    assert {c["cause"] for c in changes(api)} == {"write"} and revision
    assert {e["cause"] for e in stream(redis_client)} == {"write"}


def test_a_policy_reload_that_changes_a_template_is_recorded(tmp_path: Path, redis_url: str,
                                                             redis_client: redis.Redis) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    settings = make_settings(tmp_path, policy_dir=policies)
    app = create_app(settings, redis_url=redis_url)
    try:
        api = Api(app, make_tokens(settings))
        build(api)
        revision = api.get("/v1/billing/seats?chain=ch-1", scope="billing").get_json()["revision"]
        roles = policies / "roles.yaml"  # call_center loses appointment:create: cc becomes free
        text = roles.read_text()
        start = text.index("  call_center:")
        cut = text.index("      - appointment:create\n", start)
        roles.write_text(text[:cut] + text[cut + len("      - appointment:create\n"):])
        assert api.post("/v1/policies/reload", scope="admin").status_code == 200
        app.extensions["sidecar"].seat_recorder.wait()
        found = [c for c in changes(api) if c["cause"] == "policy_reload"]
        assert [(c["employee"], c["paid"], c["revision"]) for c in found] == [("cc", False, revision)]
        assert ("cc", "0", "policy_reload") in {(e["employee"], e["paid"], e["cause"]) for e in stream(redis_client)}
        for location in ("l-1", "l-2"):  # every scope of the tenant, not only the chain
            assert [c["employee"] for c in changes(api, f"location={location}") if c["cause"] == "policy_reload"] == [
                "cc"]
        assert api.post("/v1/policies/reload", scope="admin").status_code == 200  # nothing changed: nothing new
        app.extensions["sidecar"].seat_recorder.wait()
        assert len([c for c in changes(api) if c["cause"] == "policy_reload"]) == 1
    finally:
        app.extensions["sidecar"].stop()


def test_a_change_of_the_billing_rule_is_recorded(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> None:
    first = create_app(make_settings(tmp_path / "a"), redis_url=redis_url)
    try:
        build(Api(first, make_tokens(make_settings(tmp_path / "a"))))
    finally:
        first.extensions["sidecar"].stop()
    settings = make_settings(tmp_path / "b", billing_rule="writes")
    second = create_app(settings, redis_url=redis_url)  # starts under another rule: recounts every tenant
    try:
        second.extensions["sidecar"].seat_recorder.wait()
        api = Api(second, make_tokens(settings))
        found = [c for c in changes(api) if c["cause"] == "rule_change"]
        assert [(c["employee"], c["paid"]) for c in found] == [("mkt", True)]  # marketing:send writes
        assert ("mkt", "1", "rule_change") in {(e["employee"], e["paid"], e["cause"]) for e in stream(redis_client)}
    finally:
        second.extensions["sidecar"].stop()


IMPORT = [
    {"kind": "chain", "id": "ch-1"},
    {"kind": "location", "id": "l-1", "chain": "ch-1"},
    {"kind": "employee", "id": "st", "active": True},
    {"kind": "employee", "id": "adm", "active": True},
    {"kind": "membership", "location": "l-1", "employee": "st", "roles": [], "provides_services": True},
    {"kind": "membership", "location": "l-1", "employee": "adm", "roles": ["administrator"]},
]


def test_a_bulk_import_is_recorded_as_import(api: Any, cli_env: None, tmp_path: Path, redis_client: redis.Redis,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "dir.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in IMPORT))
    assert main(["import", str(file)]) == 0
    assert "touched" not in json.loads(capsys.readouterr().out.splitlines()[-1])
    found = changes(api)
    assert sorted((c["employee"], c["paid"], c["cause"]) for c in found) == [("adm", True, "import"),
                                                                          ("st", True, "import")]
    assert {e["cause"] for e in stream(redis_client)} == {"import"}


def test_an_import_dry_run_prints_the_seat_impact_and_writes_nothing(api: Any, cli_env: None, tmp_path: Path,
                                                                     redis_client: redis.Redis,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    build(api)
    keys = sorted(redis_client.keys("sc:*"))
    file = tmp_path / "more.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in [
        {"kind": "employee", "id": "new", "active": True},
        {"kind": "membership", "location": "l-2", "employee": "new", "roles": ["service_provider"]},
        {"kind": "membership", "location": "l-1", "employee": "mkt", "roles": ["marketer"],
         "allow": ["payment:process"]},
        {"kind": "location", "id": "solo"},
        {"kind": "membership", "location": "solo", "employee": "new", "roles": [], "provides_services": True},
    ]))
    capsys.readouterr()
    assert main(["import", str(file), "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["dry_run"] is True
    chain, solo = report["seats"]
    assert chain == {"scope": {"chain": "ch-1"}, "paid_seats_before": 4, "paid_seats_after": 6,
                     "changed": [{"employee": "mkt", "paid_before": False, "paid_after": True},
                                 {"employee": "new", "paid_before": False, "paid_after": True}]}
    assert solo["scope"] == {"location": "solo"} and solo["paid_seats_after"] == 1
    assert sorted(redis_client.keys("sc:*")) == keys


def test_an_import_dry_run_names_a_bad_line(api: Any, cli_env: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text('{"kind": "chain", "id": "ch-1"}\n{"kind": "wizard"}\n')
    assert main(["import", str(file), "--dry-run"]) == 1
    assert "line 2" in capsys.readouterr().err
