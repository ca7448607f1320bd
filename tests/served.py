"""A real ``sidecar serve`` for tests: its own data dir and embedded Redis, TCP or a Unix socket.

``ServedSidecar.start(tmp, server="granian"|"gunicorn", uds=False, workers=2)`` runs
``python -m sidecar serve`` in its own process group, waits for ``/readyz`` and reads the
bootstrap token; ``call`` makes one request (a new connection each), ``connect`` opens a raw
socket, ``stop`` sends SIGTERM and waits. Only 127.0.0.1 or a socket file under the temp dir.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import POLICY_DIR, free_port, wait_until

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = _unix_socket(self.path, self.timeout)


def _unix_socket(path: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class ServedSidecar:
    data: Path
    process: subprocess.Popen[bytes]
    port: int
    uds: Path | None
    server: str
    token: str = ""
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_file = self.data / "stdout.log"

    @classmethod
    def start(cls, data: Path, *, server: str = "granian", uds: bool = False, workers: int = 2,
              extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
              ready_timeout_s: float = 60) -> ServedSidecar:
        port = free_port()
        socket_path = data / "sidecar.sock" if uds else None
        argv = [sys.executable, "-m", "sidecar", "serve", "--server", server, "--workers", str(workers),
                *(["--uds", str(socket_path)] if socket_path else ["--port", str(port)]), *extra_args]
        environment = {"PATH": os.environ.get("PATH", ""), "SIDECAR_DATA_DIR": str(data),
                       "SIDECAR_POLICY_DIR": str(POLICY_DIR), "SIDECAR_LOG_FORMAT": "json", **(env or {})}
        with open(data / "stdout.log", "wb") as out, open(data / "stderr.log", "wb") as err:
            process = subprocess.Popen(argv, env=environment, stdout=out, stderr=err, cwd=REPO,
                                       start_new_session=True)
        served = cls(data, process, port, socket_path, server)
        try:
            served.wait_ready(ready_timeout_s)
            served.token = next(x for x in (data / "stderr.log").read_text().splitlines() if x.startswith("sct_"))
        except BaseException:
            served.stop()
            raise
        return served

    def wait_ready(self, timeout_s: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError((self.data / "stderr.log").read_text()[-3000:])
            return self.call("GET", "/readyz")[0] == 200

        if not wait_until(ready, timeout_s, step_s=0.1, ignoring=(OSError,)):
            raise AssertionError(f"never ready: {(self.data / 'stderr.log').read_text()[-3000:]}")

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        if self.uds is not None:
            return _UnixConnection(str(self.uds), timeout)
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def connect(self, timeout: float = 10) -> socket.socket:
        """A raw socket to the server, for requests http.client will not send."""
        if self.uds is not None:
            return _unix_socket(str(self.uds), timeout)
        return socket.create_connection((HOST, self.port), timeout=timeout)

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
             headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection: (status, headers, body)."""
        connection = self.connection(timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            sent = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            return response.status, dict(response.headers), response.read()
        finally:
            connection.close()

    def admin(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, _, answer = self.call(method, path, body, token=self.token)
        assert status in (200, 201), (status, answer)
        result: dict[str, Any] = json.loads(answer)
        return result

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM to the server (it stops its workers and Redis); its exit status."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line.startswith("{")]
