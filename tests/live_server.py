"""A real `sidecar serve` for end-to-end tests: its own data dir, a free port, a token with every scope.

Used by the contract (schemathesis) and client tests; test_serve.py checks `serve` itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import POLICY_DIR, wait_until
from tests.nginx_harness import free_port

REPO = Path(__file__).resolve().parent.parent
SCOPES = ("check", "admin", "billing", "audit", "security", "mfa")


@dataclass(frozen=True)
class LiveServer:
    base: str
    token: str
    data: Path

    def call(self, path: str, method: str = "GET", body: object = None) -> tuple[int, object]:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return int(error.code), json.loads(error.read() or b"null")


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.HTTPError):
        return False


@contextmanager
def live_server(data: Path, **env_extra: str) -> Iterator[LiveServer]:
    env = {"PATH": os.environ.get("PATH", ""), "SIDECAR_DATA_DIR": str(data), "SIDECAR_POLICY_DIR": str(POLICY_DIR),
           "SIDECAR_LOG_FORMAT": "json", **env_extra}
    scopes = [arg for scope in SCOPES for arg in ("--scope", scope)]
    created = subprocess.run([sys.executable, "-m", "sidecar", "token", "create", "live", *scopes], env=env,
                             cwd=REPO, capture_output=True, text=True, check=True)
    token = next(word for word in created.stdout.split() if word.startswith("sct_"))
    port = free_port()
    with open(data / "stdout.log", "wb") as out, open(data / "stderr.log", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "sidecar", "serve", "--port", str(port), "--workers", "1"],
                                   env=env, stdout=out, stderr=err, cwd=REPO, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert process.poll() is None, (data / "stderr.log").read_text()
            return _ready(base)

        assert wait_until(ready, timeout_s=60, step_s=0.1), "sidecar serve did not become ready"
        yield LiveServer(base, token, data)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
