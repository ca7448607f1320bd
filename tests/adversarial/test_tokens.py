"""D15: parallel `sidecar token create` never loses a token and never prints a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.tokens import TokenFile
from tests.conftest import POLICY_DIR

PARALLEL = 20


@pytest.mark.e2e  # twenty real processes at once
def test_twenty_parallel_creates_all_work(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SIDECAR_POLICY_DIR": str(POLICY_DIR), "SIDECAR_DATA_DIR": str(tmp_path),
           "SIDECAR_LOG_FORMAT": "json"}
    processes = [subprocess.Popen([sys.executable, "-m", "sidecar", "token", "create", f"race-{i}", "--scope", "check"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(PARALLEL)]
    printed = {}
    for i, process in enumerate(processes):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "Traceback" not in err
        printed[f"race-{i}"] = out.strip()
    stored = json.loads((tmp_path / "tokens.json").read_text())
    assert sorted(t["name"] for t in stored["tokens"]) == sorted(printed)
    tokens = TokenFile(tmp_path / "tokens.json")
    for name, secret in printed.items():
        found = tokens.authenticate(secret)
        assert found is not None and found.name == name
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind


def test_parallel_creates_and_revokes_in_threads_keep_every_survivor(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "tokens.json"
    keep = {f"keep-{i}": TokenFile(path).create(f"keep-{i}", ["check"]) for i in range(5)}
    doomed = [f"doomed-{i}" for i in range(10)]
    for name in doomed:
        TokenFile(path).create(name, ["audit"])

    def work(i: int) -> tuple[str, str] | None:
        if i < len(doomed):
            TokenFile(path).revoke(doomed[i])
            return None
        name = f"new-{i}"
        return name, TokenFile(path).create(name, ["mfa"])

    with ThreadPoolExecutor(8) as pool:
        made = dict(r for r in pool.map(work, range(30)) if r is not None)
    tokens = TokenFile(path)
    assert sorted(t.name for t in tokens.all()) == sorted([*keep, *made])
    for name, secret in {**keep, **made}.items():
        found = tokens.authenticate(secret)
        assert found is not None and found.name == name
