"""The Dockerfile's two stages, run without Docker: wheels built where a compiler exists, then
installed into a fresh venv whose PATH has no ``cc``, which starts ``sidecar serve`` for real.

This is what the image build does (``pip wheel`` in the builder, ``pip install --no-index
--only-binary=:all:`` in the runtime stage); the image itself is not built here (no Docker
engine on these machines). The builder step needs a C compiler and the package index (or
pip's cache), like the builder stage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import POLICY_DIR, free_port, wait_until

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


def get(port: int, path: str, token: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_runtime_stage_installs_only_wheels_without_a_compiler_and_serves(tmp_path: Path) -> None:
    if shutil.which("cc") is None:
        pytest.skip("the builder stage needs a C compiler")
    wheels = tmp_path / "wheels"
    build = tmp_path / "build"
    shutil.copytree(REPO, build, ignore=shutil.ignore_patterns(".venv", ".git", "var", "*.egg-info", "__pycache__",
                                                                 "bench", "tests", "docs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(build)],
                   check=True, timeout=900)

    runtime = tmp_path / "runtime"
    subprocess.run([sys._base_executable, "-m", "venv", str(runtime)], check=True, timeout=300)  # type: ignore[attr-defined]
    env = {"PATH": str(runtime / "bin"), "HOME": str(tmp_path), "PIP_NO_CACHE_DIR": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    assert shutil.which("cc", path=env["PATH"]) is None and shutil.which("gcc", path=env["PATH"]) is None
    subprocess.run([str(runtime / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--only-binary=:all:",
                    "--find-links", str(wheels), "sidecar"], env=env, check=True, timeout=600)

    port = free_port()
    data = tmp_path / "data"
    token_file = data / "bootstrap-token"
    serve_env = {**env, "SIDECAR_DATA_DIR": str(data), "SIDECAR_POLICY_DIR": str(POLICY_DIR),
                 "SIDECAR_BOOTSTRAP_TOKEN_FILE": str(token_file), "SIDECAR_LOG_FORMAT": "json"}
    with open(tmp_path / "out.log", "wb") as out, open(tmp_path / "err.log", "wb") as err:
        process = subprocess.Popen([str(runtime / "bin" / "sidecar"), "serve", "--port", str(port)], env=serve_env,
                                   cwd=tmp_path, stdout=out, stderr=err, start_new_session=True)
    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "err.log").read_text()
            return get(port, "/readyz") == 200

        wait_until(ready, 60, step_s=0.1, ignoring=(OSError,))
        assert get(port, "/readyz") == 200
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert get(port, "/v1/roles", token) == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    logs = (tmp_path / "out.log").read_text() + (tmp_path / "err.log").read_text()
    assert token not in logs  # the bootstrap token never reaches the log
    installed = json.loads(subprocess.run([str(runtime / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                                          env=env, check=True, capture_output=True, text=True).stdout)
    assert "sidecar" in {p["name"] for p in installed}
