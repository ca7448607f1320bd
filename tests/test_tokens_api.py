"""Service tokens over HTTP and the CLI: created once, listed without secrets, revoked -> 401, audited."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.api.context import runtime_of
from sidecar.app import create_app
from sidecar.audit import tokens as token_audit
from sidecar.audit.query import Query, search
from tests.conftest import POLICY_DIR


def test_create_use_list_revoke(api) -> None:
    made = api.post("/v1/tokens", {"name": "billing-svc", "scopes": ["billing", "check"]}, scope="admin")
    assert made.status_code == 201
    body = made.get_json()
    assert body["name"] == "billing-svc" and body["scopes"] == ["billing", "check"]
    secret = body["token"]
    assert secret.startswith("sct_")
    auth = {"Authorization": f"Bearer {secret}"}
    assert api.get("/v1/billing/seats?location=nowhere", headers=auth).status_code == 404  # authenticated

    listed = api.get("/v1/tokens", scope="admin").get_json()["tokens"]
    assert {"name": "billing-svc", "scopes": ["billing", "check"]} in listed
    assert secret not in json.dumps(listed) and "sha256" not in json.dumps(listed)

    revoked = api.delete("/v1/tokens/billing-svc", scope="admin")
    assert revoked.status_code == 200 and revoked.get_json()["revoked"] is True
    answer = api.get("/v1/billing/seats?location=nowhere", headers=auth)
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "unauthorized"
    assert api.delete("/v1/tokens/billing-svc", scope="admin").status_code == 404

    events = api.get("/v1/tokens/events", scope="admin").get_json()["events"]
    assert [(e["action"], e["category"], e["details"]["name"]) for e in events] == [
        ("token:revoke", "security", "billing-svc"), ("token:create", "security", "billing-svc")]
    assert events[0]["details"]["by"] == "only-admin"
    assert secret not in json.dumps(events)


def test_refusals(api) -> None:
    assert api.post("/v1/tokens", {"name": "x", "scopes": ["check"]}, scope="check").status_code == 403
    assert api.post("/v1/tokens", {"name": "x", "scopes": ["check"]}).status_code == 401
    assert api.post("/v1/tokens", {"name": "x", "scopes": ["root"]}, scope="admin").status_code == 400
    assert api.post("/v1/tokens", {"name": "x", "scopes": []}, scope="admin").status_code == 400
    assert api.post("/v1/tokens", {"name": "x y", "scopes": ["check"]}, scope="admin").status_code == 400
    assert api.post("/v1/tokens", {"name": "x", "scopes": "check"}, scope="admin").status_code == 400
    assert api.post("/v1/tokens", {"name": "x", "scopes": ["check"], "token": "mine"},
                    scope="admin").status_code == 400
    duplicate = api.post("/v1/tokens", {"name": "only-check", "scopes": ["check"]}, scope="admin")
    assert duplicate.status_code == 409
    assert api.delete("/v1/tokens/bad%20name", scope="admin").status_code == 400


def test_the_last_admin_token_is_kept(api) -> None:
    assert api.delete("/v1/tokens/all", scope="admin").status_code == 200
    last = api.delete("/v1/tokens/only-admin", scope="admin")
    assert last.status_code == 409 and last.get_json()["error"]["reason"] == "last_admin_token"


def test_a_revoke_in_one_worker_counts_in_another_at_once(api, settings, redis_url) -> None:
    other = create_app(settings, redis_url=redis_url)  # a second worker: its own runtime, same tokens file
    try:
        secret = api.post("/v1/tokens", {"name": "svc", "scopes": ["admin"]}, scope="admin").get_json()["token"]
        client = other.test_client()
        auth = {"Authorization": f"Bearer {secret}"}
        assert client.get("/v1/tokens", headers=auth).status_code == 200
        assert api.delete("/v1/tokens/svc", scope="admin").status_code == 200
        assert client.get("/v1/tokens", headers=auth).status_code == 401
    finally:
        runtime_of(other).stop()


def _cli(tmp_path: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "SIDECAR_POLICY_DIR": str(POLICY_DIR), "SIDECAR_DATA_DIR": str(tmp_path),
           "SIDECAR_REDIS_URL": redis_url, "SIDECAR_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "sidecar", "token", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.e2e  # runs the CLI as a real process
def test_cli_create_list_revoke_are_audited(tmp_path: Path, redis_url: str, settings) -> None:
    made = _cli(tmp_path, redis_url, "create", "ops", "--scope", "admin")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    listed = _cli(tmp_path, redis_url, "list")
    assert listed.stdout.splitlines() == ["ops\tadmin"] and secret not in listed.stdout
    assert _cli(tmp_path, redis_url, "revoke", "ops").returncode == 0
    missing = _cli(tmp_path, redis_url, "revoke", "ops")
    assert missing.returncode == 2 and "no token named" in missing.stderr and "Traceback" not in missing.stderr

    app = create_app(settings, redis_url=redis_url)
    try:
        events = list(search(runtime_of(app).audit_log, token_audit.LOG, Query(), scan_budget=None))
        assert [(e["action"], e["details"]["source"]) for e in events] == [("token:revoke", "cli"),
                                                                           ("token:create", "cli")]
    finally:
        runtime_of(app).stop()


@pytest.mark.e2e  # runs the CLI as a real process
def test_cli_without_redis_says_the_change_is_not_audited(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SIDECAR_POLICY_DIR": str(POLICY_DIR), "SIDECAR_DATA_DIR": str(tmp_path)}
    made = subprocess.run([sys.executable, "-m", "sidecar", "token", "create", "a", "--scope", "check"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0 and "not in the audit log" in made.stderr
