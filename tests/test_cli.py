"""The `sidecar` command: policy tests, tokens, import, check, configuration errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POLICY_DIR

pytestmark = pytest.mark.e2e  # every test runs the CLI as a real process

SIDECAR = [sys.executable, "-m", "sidecar"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "SIDECAR_POLICY_DIR": str(POLICY_DIR), "SIDECAR_LOG_FORMAT": "json"}
    return subprocess.run([*SIDECAR, *args], env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


def test_help_lists_every_command() -> None:
    out = run("--help").stdout
    for command in ("serve", "token", "check", "policy", "import"):
        assert command in out


def test_policy_suites_in_the_repository_pass() -> None:
    result = run("policy", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed, 0 failed" in result.stdout


def test_a_failing_policy_case_exits_non_zero(tmp_path: Path) -> None:
    suite = tmp_path / "wrong.yaml"
    suite.write_text("directory:\n  locations: [{id: l-1}]\n  employees: [{id: e-1}]\n"
                     "  memberships: [{location: l-1, employee: e-1, roles: [viewer]}]\n"
                     "cases:\n  - {employee: e-1, location: l-1, right: payment:process, expected: allow}\n")
    result = run("policy", "test", str(tmp_path))
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "line 6" in result.stdout


def test_a_broken_policy_file_names_file_and_line(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    roles = policies / "roles.yaml"
    lines = roles.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if "- appointment:create" in line)
    lines[number] = lines[number].replace("appointment:create", "appointment:fly")
    roles.write_text("\n".join(lines) + "\n")
    result = run("policy", "lint", env={"SIDECAR_POLICY_DIR": str(policies)})
    assert result.returncode == 2
    assert f"roles.yaml:{number + 1}:" in result.stderr and "appointment:fly" in result.stderr


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    (policies / "catalogue.yaml").write_text("rights:\n  calendar:view: {}\n  bad: [unclosed\n")
    result = run("serve", env={"SIDECAR_POLICY_DIR": str(policies), "SIDECAR_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "catalogue.yaml:" in result.stderr and "invalid YAML" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SIDECAR_REDIS_URL", "http://x"), ("SIDECAR_MAX_TENANTS", "many"), ("SIDECAR_BILLING_RULE", "free"),
     ("SIDECAR_LOG_FORMAT", "xml")],
)
def test_a_bad_setting_is_named_at_start(variable: str, value: str) -> None:
    result = run("policy", "lint", env={variable: value})
    assert result.returncode == 2
    assert variable in result.stderr and "Traceback" not in result.stderr


def test_token_create_prints_once_and_stores_only_the_hash(tmp_path: Path) -> None:
    result = run("token", "create", "svc", "--scope", "check", "--scope", "admin",
                 env={"SIDECAR_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0
    token = result.stdout.strip()
    stored = json.loads((tmp_path / "tokens.json").read_text())
    assert stored["tokens"][0]["scopes"] == ["admin", "check"]
    assert token not in (tmp_path / "tokens.json").read_text()
    assert run("token", "create", "svc", "--scope", "check", env={"SIDECAR_DATA_DIR": str(tmp_path)}).returncode == 2


def test_import_then_check_from_the_cli(tmp_path: Path, redis_url: str) -> None:
    records = [
        {"kind": "chain", "id": "ch-1"},
        {"kind": "location", "id": "l-1", "chain": "ch-1"},
        {"kind": "employee", "id": "e-1", "active": True},
        {"kind": "role", "chain": "ch-1", "role": "desk", "rights": ["payment:process"]},
        {"kind": "membership", "location": "l-1", "employee": "e-1", "roles": ["desk"], "provides_services": True},
    ]
    file = tmp_path / "dir.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    env = {"SIDECAR_REDIS_URL": redis_url, "SIDECAR_DATA_DIR": str(tmp_path)}
    result = run("import", str(file), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["membership"] == 1
    allowed = run("check", "--employee", "e-1", "--location", "l-1", "--right", "payment:process", env=env)
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["allowed"] is True
    denied = run("check", "--employee", "e-1", "--location", "l-1", "--right", "payment:refund", env=env)
    assert denied.returncode == 3 and json.loads(denied.stdout)["reason"] == "not_granted"


def test_import_with_a_bad_line_writes_nothing(tmp_path: Path, redis_url: str, redis_client) -> None:
    file = tmp_path / "dir.jsonl"
    file.write_text('{"kind": "location", "id": "l-1"}\n{"kind": "employee", "id": "bad id"}\n')
    result = run("import", str(file), env={"SIDECAR_REDIS_URL": redis_url, "SIDECAR_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1 and "line 2" in result.stderr
    assert redis_client.keys("sc:*") == []


def test_a_route_naming_an_unknown_right_fails_the_start_with_its_line(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    routes = policies / "routes.yaml"
    lines = routes.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if '"appointment:create"' in line)
    lines[number] = lines[number].replace("appointment:create", "appointment:fly")
    routes.write_text("\n".join(lines) + "\n")
    result = run("serve", env={"SIDECAR_POLICY_DIR": str(policies), "SIDECAR_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert f"routes.yaml:{number + 1}:" in result.stderr and "Traceback" not in result.stderr
